"""Quality metrics: PSNR/SSIM for denoising, and scores of generated digits by the course classifier.

Two kinds of question, two kinds of metric:

- *How close is a denoised image to the clean one?* :func:`psnr` and :func:`ssim` compare an
  image with its reference, pixel by pixel (PSNR) or by local structure (SSIM, Wang et al. 2004).
  They take images in [0, 1], the course's metric scale; :func:`denoising_table` scores many
  methods at many noise levels at once.
- *Do generated digits look like MNIST, and like the digit we asked for?* No reference image
  exists, so a classifier the course trains itself (> 99% test accuracy) judges them.
  :func:`probabilities`, :func:`classify` and :func:`features` run it;
  :func:`conditional_accuracy` is the fraction it labels as requested; :func:`mnist_fd` is the
  Frechet distance (the FID recipe of Heusel et al. 2017, with this small classifier in place of
  Inception) between Gaussians fitted to its penultimate-layer features of generated and real test
  digits. Lower is better; real test digits against themselves give 0. For unconditional models,
  :func:`confident_fraction` counts the samples it reads as *some* digit with high probability
  (blind to noise, so read it with the FD), and :func:`digit_quality` reports all of these at once.

The classifier itself (network, recipe, training through the course's one loop, its checkpoint
``data/checkpoints/mnist-classifier.safetensors`` with its JSON record, hash-checked loading)
lives in :mod:`course_utils.classifier`; its names (:class:`MnistClassifier`,
:func:`load_classifier`, :func:`train_classifier`, :func:`save_classifier`, :data:`CLASSIFIER_FILE`,
:data:`CLASSIFIER_SHA256`, ...) stay importable from here, and :data:`CLASSIFIER_RECIPE` is a dict
of its recipe's hyper-parameters. :class:`CheckpointError` here is
:class:`course_utils.errors.CheckpointError`.

The classifier reads images in [-1, 1], the scale the diffusion models produce, so samples go in
as they come out of a sampler; pass ``scale="unit"`` for images in [0, 1]. FD values from this
classifier are comparable within the course only, not with published FID numbers.
"""

from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from . import classifier, data, predictions
from .classifier import (  # noqa: F401  (the classifier lived here; its names stay importable)
    CLASSIFIER_FILE,
    CLASSIFIER_SHA256,
    MnistClassifier,
    evaluate,
    load_classifier,
    random_shift,
    save_classifier,
    train_classifier,
)
from .errors import (
    BadRequest,
    CheckpointError,  # noqa: F401  (the one class; metrics.CheckpointError is errors.CheckpointError)
)

# The classifier's hyper-parameters as a dict (the recipe itself is classifier.RECIPE).
CLASSIFIER_RECIPE = {
    "epochs": classifier.RECIPE.epochs,
    "batch_size": classifier.RECIPE.batch_size,
    "lr": classifier.RECIPE.lr,
    "weight_decay": classifier.RECIPE.weight_decay,
    "max_shift": classifier.RECIPE.extra["max_shift"],
    "seed": classifier.RECIPE.seed,
}


# ----------------------------------------------------------------------------------------------
# PSNR and SSIM (images in [0, 1])


def _as_batch(x) -> np.ndarray:
    """Images -> float64 array (B, H, W, C).

    Tensors are (H, W), (C, H, W) or (B, C, H, W) (torch's layout); arrays are (H, W),
    (H, W, C) or (B, H, W, C) (the layout of :func:`course_utils.data.load_image`).
    """
    if torch.is_tensor(x):
        x = x.detach().cpu().double()
        if x.dim() == 2:
            x = x[None]
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4:
            raise BadRequest(f"expected a tensor (H, W), (C, H, W) or (B, C, H, W), got {tuple(x.shape)}")
        return x.permute(0, 2, 3, 1).numpy()
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest(f"expected images as a tensor or an array of numbers, got {type(x).__name__}") from None
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise BadRequest(f"expected an array (H, W), (H, W, C) or (B, H, W, C), got {x.shape}")
    return x


def _pair(a, b, data_range: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real) or not 0 < data_range < np.inf:
        raise BadRequest(f"data_range must be a positive finite number (1.0 for images in [0, 1]), got {data_range!r}")
    a, b = _as_batch(a), _as_batch(b)
    if a.shape != b.shape:
        raise BadRequest(f"images differ in shape: {a.shape} vs {b.shape} (as (B, H, W, C))")
    if a.size == 0:
        raise BadRequest("no images to compare")
    for name, x in (("a", a), ("b", b)):
        if not np.isfinite(x).all():
            raise BadRequest(f"{name} holds NaN or infinite values")
    return a, b


def psnr(a, b, data_range: float = 1.0, *, reduce: bool = True) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``, per image.

    ``a`` and ``b`` are images in [0, 1] (single or batched, tensors or arrays). Returns the mean
    over images (a float; ``inf`` for identical images), or one value per image with
    ``reduce=False``. +1 dB is about 21% less squared error.
    """
    a, b = _pair(a, b, data_range)
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))  # (B,)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(data_range**2 / mse)
    return float(values.mean()) if reduce else values


def ssim(a, b, data_range: float = 1.0, *, reduce: bool = True) -> float | np.ndarray:
    """Structural similarity (Wang et al. 2004) by ``skimage.metrics.structural_similarity``.

    Local means, variances and covariance in 7x7 windows, averaged over the image (and over
    channels); 1 means identical. Same inputs and ``reduce`` as :func:`psnr`.
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b, data_range)
    values = np.array([structural_similarity(x, y, data_range=data_range, channel_axis=-1) for x, y in zip(a, b)])
    return float(values.mean()) if reduce else values


def denoising_table(clean, outputs: Mapping[tuple[str, float], object]) -> list[dict]:
    """Score denoisers: ``outputs[(method, noise_level)] = images`` -> rows of PSNR and SSIM.

    ``clean`` and every output are images in [0, 1] of the same shape. Rows come back in the
    order given, as ``{"method", "noise", "psnr", "ssim"}``; print them with :func:`format_table`.
    """
    return [
        {"method": method, "noise": noise, "psnr": psnr(out, clean), "ssim": ssim(out, clean)}
        for (method, noise), out in outputs.items()
    ]


def format_table(rows: Sequence[dict]) -> str:
    """Rows of :func:`denoising_table` as a plain-text table."""
    lines = [f"{'method':<24} {'noise':>6} {'PSNR (dB)':>10} {'SSIM':>6}"]
    for r in rows:
        lines.append(f"{r['method']:<24} {r['noise']:>6.3g} {r['psnr']:>10.2f} {r['ssim']:>6.3f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Scoring digits with the classifier (:mod:`course_utils.classifier`)


def _prepare(images: Tensor, scale: str) -> Tensor:
    if scale not in ("signed", "unit"):
        raise BadRequest(f"scale must be 'signed' ([-1, 1]) or 'unit' ([0, 1]), not {scale!r}")
    if not torch.is_tensor(images):
        raise BadRequest(f"images must be a tensor (B, 1, 28, 28), got {type(images).__name__}")
    x = images.detach().float()
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (B, 28, 28) -> (B, 1, 28, 28)
    if x.shape[1:] != (1, 28, 28):
        raise BadRequest(f"expected MNIST-sized images (B, 1, 28, 28), got {tuple(images.shape)}")
    if not torch.isfinite(x).all():
        raise BadRequest("images hold NaN or infinite values (a diverged sampler?); the classifier cannot score them")
    if scale == "unit":
        x = data.to_signed(x)
    return x.clamp(-1.0, 1.0)


@torch.no_grad()
def _run(images: Tensor, scale: str, what: str, batch_size: int = 128) -> Tensor:
    x = _prepare(images, scale)  # checked before the classifier loads
    model = load_classifier()
    device = predictions.device_of(model)
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(device)
        outs.append((model.features(xb) if what == "features" else model(xb)).cpu())
    return torch.cat(outs) if outs else torch.empty(0, 10 if what == "logits" else model.n_features)


def probabilities(images: Tensor, *, scale: str = "signed") -> Tensor:
    """Class probabilities (N, 10) for digits (N, 1, 28, 28) in [-1, 1] (or [0, 1] with ``scale="unit"``)."""
    return _run(images, scale, "logits").softmax(dim=1)


def classify(images: Tensor, *, scale: str = "signed") -> Tensor:
    """Predicted digit (N,) int64 for each image."""
    return _run(images, scale, "logits").argmax(dim=1)


def features(images: Tensor, *, scale: str = "signed") -> Tensor:
    """Penultimate-layer activations (N, 128) float32, the space :func:`mnist_fd` measures in."""
    return _run(images, scale, "features")


def conditional_accuracy(images: Tensor, labels: Tensor | Sequence[int], *, scale: str = "signed") -> float:
    """Fraction of ``images`` the classifier labels as the digit requested in ``labels``."""
    labels = _check_labels(labels, len(images))
    return (classify(images, scale=scale) == labels).float().mean().item()


def _check_labels(labels, n: int) -> Tensor:
    """n class ids in 0..9 as an int64 tensor, or BadRequest saying what is wrong with ``labels``."""
    try:
        labels = torch.as_tensor(labels).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise BadRequest(f"labels must be a 1-D sequence of class ids in 0..9, got {labels!r}") from None
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
        raise BadRequest(f"labels must be a 1-D sequence of class ids in 0..9, got {labels.dtype} {list(labels.shape)}")
    if len(labels) != n:
        raise BadRequest(f"{n} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise BadRequest(f"labels must be class ids in 0..9, got {labels.min().item()} .. {labels.max().item()}")
    return labels.long()


def confident_fraction(images: Tensor, threshold: float = 0.9, *, scale: str = "signed") -> float:
    """Fraction of ``images`` the classifier reads as some digit with probability >= ``threshold``.

    For unconditional samples this stands in for "recognisable": real test digits score about 0.97,
    three digits drawn on top of each other about 0.4. Read it next to :func:`mnist_fd`: like most
    classifiers this one is confident on inputs unlike anything it saw, and reads uniform noise as
    some digit every time, while the noise's Frechet distance is enormous.
    """
    if not 0.0 < threshold < 1.0:
        raise BadRequest(f"threshold must lie in (0, 1), got {threshold}")
    if len(images) == 0:
        raise BadRequest("no images to score")
    return (probabilities(images, scale=scale).max(dim=1).values >= threshold).float().mean().item()


def digit_quality(
    images: Tensor, labels: Tensor | Sequence[int] | None = None, *, scale: str = "signed", threshold: float = 0.9
) -> dict:
    """One summary of generated digits, as the course reports it.

    ``fd``: :func:`mnist_fd` against the test digits; ``confident``: :func:`confident_fraction`;
    ``counts``: how many images the classifier reads as each digit 0-9 (a collapsed model piles
    them up on a few); ``accuracy``: :func:`conditional_accuracy`, only when ``labels`` are given.
    """
    _at_least_two(images)
    if labels is not None:
        _check_labels(labels, len(images))
    if not 0.0 < threshold < 1.0:
        raise BadRequest(f"threshold must lie in (0, 1), got {threshold}")
    predicted = classify(images, scale=scale)
    report = dict(
        n=len(images),
        fd=mnist_fd(images, scale=scale),
        confident=confident_fraction(images, threshold, scale=scale),
        counts=torch.bincount(predicted, minlength=10).tolist(),
    )
    if labels is not None:
        report["accuracy"] = conditional_accuracy(images, labels, scale=scale)
    return report


def format_quality(report: dict) -> str:
    """``digit_quality``'s report on one line."""
    text = f"n={report['n']}  FD={report['fd']:.2f}  confident={100 * report['confident']:.1f}%"
    if "accuracy" in report:
        text += f"  accuracy={100 * report['accuracy']:.1f}%"
    return text + f"  read as 0-9: {report['counts']}"


# ----------------------------------------------------------------------------------------------
# Frechet distance


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_gaussians(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))`` (Dowson and Landau
    1982). The trace of the product's square root equals that of the symmetric PSD matrix
    ``(s1^(1/2) sigma2 s1^(1/2))^(1/2)``, computed by eigendecomposition in float64: no complex
    parts to discard, and singular covariances (fewer samples than dimensions) are fine.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[-1] if mu1.ndim else 1
    if mu2.shape != mu1.shape or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise BadRequest(
            f"the two Gaussians live in different spaces: means {mu1.shape} and {mu2.shape}, "
            f"covariances {sigma1.shape} and {sigma2.shape}"
        )
    for name, v in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(v).all():
            raise BadRequest(f"{name} holds NaN or infinite values")
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    value = ((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    return float(max(value, 0.0))


def gaussian_fit(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) (unbiased, float64) of features (N, d)."""
    x = feats.detach().cpu().double().numpy() if torch.is_tensor(feats) else np.asarray(feats, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise BadRequest(f"need features (N >= 2, d), got {x.shape}")
    if not np.isfinite(x).all():
        raise BadRequest("features hold NaN or infinite values")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, d) and (M, d)."""
    return frechet_distance_gaussians(*gaussian_fit(feats_a), *gaussian_fit(feats_b))


def _float64(feats) -> np.ndarray:
    return feats.detach().cpu().double().numpy() if torch.is_tensor(feats) else np.asarray(feats, np.float64)


def _centred_bootstrap(statistic, n: int, *, resamples: int, level: float, seed: int) -> tuple[float, float, float]:
    """``(value, low, high)``: ``statistic(indices)`` on all n images, and the central ``level``
    spread of its bootstrap resamples (indices drawn with replacement) centred on that value."""
    if not 0.0 < level < 1.0:
        raise BadRequest(f"level must lie in (0, 1), got {level}")
    if int(resamples) < 2:
        raise BadRequest(f"resamples must be at least 2, got {resamples}")
    value = float(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    boot = [statistic(rng.integers(0, n, n)) for _ in range(int(resamples))]
    q_low, median, q_high = np.quantile(boot, [(1.0 - level) / 2, 0.5, (1.0 + level) / 2])
    return value, float(value - (median - q_low)), float(value + (q_high - median))


def frechet_distance_interval(
    feats, mu_ref, sigma_ref, *, resamples: int = 200, level: float = 0.9, seed: int = 0
) -> tuple[float, float, float]:
    """``(fd, low, high)``: the Frechet distance of features (N, d) to the reference Gaussian, and
    an interval for it from ``resamples`` bootstrap resamples of the N images (drawn with
    replacement): the central ``level`` spread of the resampled distances, centred on ``fd``.

    Centred, because a resample repeats images, which shrinks the fitted covariance's rank and
    raises the distance (by more than the spread itself with N = 100 in 128 dimensions): the
    bootstrap measures the spread well and the level badly. ``low = fd - (median - q_low)``,
    ``high = fd + (q_high - median)``. Two settings measured on the same number of images whose
    intervals do not overlap are ordered clear of the noise of using N images.
    """
    x = _float64(feats)
    return _centred_bootstrap(
        lambda idx: frechet_distance_gaussians(*gaussian_fit(x[idx]), mu_ref, sigma_ref),
        len(x),
        resamples=resamples,
        level=level,
        seed=seed,
    )


def frechet_difference_interval(
    feats_a, feats_b, mu_ref, sigma_ref, *, resamples: int = 200, level: float = 0.9, seed: int = 0
) -> tuple[float, float, float]:
    """``(diff, low, high)``: FD(a) - FD(b) to the same reference, with a *paired* bootstrap
    interval, for two settings drawn from the same starting noises (image k of ``a`` and image k
    of ``b`` began as the same noise).

    Every resample draws one set of indices and uses it for both: the part of the two distances'
    noise that comes from which noises were drawn cancels, so the interval on the difference can be
    much narrower than the two separate intervals suggest. Centred on ``diff`` as
    :func:`frechet_distance_interval` is. An interval above 0 says b is better clear of that noise.
    """
    a, b = _float64(feats_a), _float64(feats_b)
    if a.shape != b.shape:
        raise BadRequest(f"a paired difference needs the same images and features in both, got {a.shape} and {b.shape}")

    def diff(idx):
        return frechet_distance_gaussians(*gaussian_fit(a[idx]), mu_ref, sigma_ref) - frechet_distance_gaussians(
            *gaussian_fit(b[idx]), mu_ref, sigma_ref
        )

    return _centred_bootstrap(diff, len(a), resamples=resamples, level=level, seed=seed)


_REFERENCE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _at_least_two(images, name: str = "images") -> None:
    """A Frechet distance fits a covariance: it needs two images or more (checked before the classifier loads)."""
    if len(images) < 2:
        raise BadRequest(f"{name}: the Frechet distance needs at least 2 images (better thousands), got {len(images)}")


def reference_statistics(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the classifier's features of MNIST test digits (cached in memory)."""
    model = load_classifier()
    key = (id(model), limit)
    if key not in _REFERENCE:
        x, _ = data.load_mnist("test", scale="signed", limit=limit)
        _REFERENCE[key] = gaussian_fit(features(x))
    return _REFERENCE[key]


def mnist_fd(generated: Tensor, reference: Tensor | None = None, *, scale: str = "signed") -> float:
    """Frechet distance of generated digits to real ones, in the classifier's feature space.

    ``reference`` defaults to the 10,000 MNIST test digits (statistics cached in memory). Both
    sets use ``scale``. Use a few thousand generated images: with few, the fitted covariance is
    noisy and the distance is biased upwards.
    """
    _at_least_two(generated)
    if reference is not None:
        _at_least_two(reference, "reference")
    mu_g, sigma_g = gaussian_fit(features(generated, scale=scale))
    if reference is None:
        mu_r, sigma_r = reference_statistics()
    else:
        mu_r, sigma_r = gaussian_fit(features(reference, scale=scale))
    return frechet_distance_gaussians(mu_g, sigma_g, mu_r, sigma_r)
