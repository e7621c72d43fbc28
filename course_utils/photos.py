"""The feature-conditioned photo model: photos with their 32 features, training, sampling, fidelity.

The model is an epsilon-predicting DDPM (Ho et al. 2020) on the cosine schedule with T = 1000
steps (Nichol & Dhariwal 2021), conditioned on the 32 visual features of
:mod:`course_utils.features` and sampled with DDIM (Song et al. 2021) in 50 steps under
classifier-free guidance (Ho & Salimans 2022)::

    photos = load_photos(size=64)                      # centre-cropped, features of what the model sees
    model, result = train_photo_model(photos, epochs=20, run_dir="runs/photo-64")
    x = generate(model, photos.features[:4], guidance=2.0)           # (4, 3, 64, 64) in [-1, 1]
    row = feature_sweep(model, photos.features[0], "dominant_hue")   # one feature moved, rest kept

Condition and pixels must agree: the features of a training pair are those of the image the model
sees, centre-cropped and resized to the model size, and recomputed after every augmentation
(flip, colour jitter). Conditions enter the model as raw features in [0, 1]; the model
standardises them with the training set's per-feature mean and standard deviation, which it
stores as buffers, so they travel inside every checkpoint.

From the command line: ``python -m course_utils.photos --data DIR --size 32 --epochs 10``.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from . import config, data, features, guidance, losses, samplers, schedules, training
from .files import atomic_path
from .unet import UNetConfig, build_unet

T_STEPS = 1000  # DDPM steps of the cosine schedule the photo model is trained on
GROUPS = ("COLOR", "LIGHTING", "MATERIAL", "SHAPE", "TOPOLOGY")


def schedule() -> schedules.DiscreteSchedule:
    """The photo model's noise schedule: cosine, T = 1000 (Nichol & Dhariwal 2021, eq. 17)."""
    return schedules.cosine_schedule(T_STEPS)


# ---------------------------------------------------------------------------------------------
# Photos at the model size, with the features of exactly those pixels


def centre_crop_resize(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> the central square resized to (size, size, 3) float32."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(img[top : top + side, left : left + side], dtype=np.float32)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.clip(cv2.resize(square, (size, size), interpolation=interp), 0.0, 1.0)


@dataclass
class PhotoSet:
    """Photos at one size with their features: ``images`` (N, 3, S, S) uint8, ``features`` (N, 32)."""

    images: Tensor
    features: Tensor
    paths: list[Path]
    failures: list[tuple[Path, str]] = field(default_factory=list)
    folder: Path | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def signed(self, index=slice(None)) -> Tensor:
        """Images as float (n, 3, S, S) in [-1, 1], the model's scale."""
        return data.to_signed(self.images[index].float() / 255.0)

    def stats(self) -> tuple[Tensor, Tensor]:
        """Per-feature mean and standard deviation (32,), the model's condition normalisation."""
        return self.features.mean(0), self.features.std(0)


def _prepared_folder(folder: Path, size: int) -> Path:
    tag = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
    return config.cache_dir() / "photos" / f"{folder.name}-{tag}-{size}px"


def _write_png(path: Path, img: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


def load_photos(
    folder: str | Path | None = None,
    *,
    size: int = 64,
    limit: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> PhotoSet:
    """Every photo below ``folder`` (default: the flower photos) centre-cropped to ``size`` px, with
    the 32 features of those pixels.

    The crops are cached as PNG files under ``<cache>/photos/`` (remade when the photo is newer),
    and their features by :func:`features.extract_folder` in that folder's ``features.npz``, so a
    second call reads both back. Corrupt files are skipped and listed in ``failures``.
    """
    if size < 8:
        raise ValueError("photos need a size of at least 8 pixels")
    folder = Path(folder) if folder is not None else data.resolve("flower_photos")
    sources = data.list_images(folder)[:limit]
    if not sources:
        raise ValueError(f"no images found below {folder}")
    prepared = _prepared_folder(folder, size)
    failures: list[tuple[Path, str]] = []
    targets: list[tuple[Path, Path]] = []
    from tqdm.auto import tqdm

    for src in tqdm(sources, desc=f"photos {size}px", unit="img", disable=not progress, leave=False):
        target = prepared / f"{src.relative_to(folder)}.png"  # a.jpg -> a.jpg.png: a.jpg and a.png stay apart
        if not target.is_file() or target.stat().st_mtime < src.stat().st_mtime:
            try:
                img = centre_crop_resize(data.load_image(src), size)
            except ValueError as err:
                failures.append((src, str(err)))
                continue
            _write_png(target, np.round(img * 255).astype(np.uint8))
        targets.append((src, target))
    table = features.extract_folder(prepared, workers=workers, cache=prepared / "features.npz", progress=progress)
    by_path = {Path(p): f for p, f in zip(table.paths, table.features)}
    images, rows, paths = [], [], []
    for src, target in targets:
        if target not in by_path:
            failures.append((src, "features could not be computed"))
            continue
        bgr = cv2.imread(str(target), cv2.IMREAD_COLOR)
        images.append(torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1))  # (3, S, S)
        rows.append(by_path[target])
        paths.append(src)
    if not images:
        raise ValueError(f"none of the {len(sources)} images below {folder} could be read")
    return PhotoSet(torch.stack(images), torch.from_numpy(np.stack(rows)).float(), paths, failures, folder)


# ---------------------------------------------------------------------------------------------
# Augmentation without torchvision; the features are measured again afterwards


@dataclass(frozen=True)
class Augment:
    """Horizontal flip with probability ``flip``; colour jitter by factors drawn uniformly from
    [1 - a, 1 + a] (brightness, contrast, saturation) and a hue turn in [-hue, hue] (of 360 deg)."""

    flip: float = 0.5
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.15
    hue: float = 0.03


# RGB <-> YIQ: Y is the luminance, (I, Q) the chroma plane in which a hue change is a rotation
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_RGB = torch.linalg.inv(_YIQ)


def augment(x: Tensor, aug: Augment, generator: torch.Generator) -> Tensor:
    """Flip and colour-jitter a batch (B, 3, H, W) in [0, 1]; every image draws its own amounts."""
    B = x.shape[0]

    def factors(amount: float) -> Tensor:
        return 1.0 + amount * (2.0 * torch.rand(B, generator=generator) - 1.0)  # (B,) in [1 - a, 1 + a]

    flip = torch.rand(B, generator=generator) < aug.flip
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    x = x * factors(aug.brightness)[:, None, None, None]
    gray = (_YIQ[0] @ x.flatten(2)).unsqueeze(1)  # (B, 1, H*W) luminance
    mean = gray.mean(dim=2, keepdim=True).unsqueeze(-1)  # (B, 1, 1, 1)
    x = (x - mean) * factors(aug.contrast)[:, None, None, None] + mean
    yiq = torch.einsum("ij,bjhw->bihw", _YIQ, x)  # (B, 3, H, W)
    angle = 2 * math.pi * aug.hue * (2.0 * torch.rand(B, generator=generator) - 1.0)
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    sat = factors(aug.saturation)[:, None, None]
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], sat * (cos * i - sin * q), sat * (sin * i + cos * q)], dim=1)
    return torch.einsum("ij,bjhw->bihw", _RGB, yiq).clamp(0.0, 1.0)


class PhotoBatches:
    """Mini-batches ``(x0, features)`` for :func:`training.train`: x0 (b, 3, S, S) in [-1, 1],
    features (b, 32) of exactly those pixels (measured again after augmentation).

    The order of epoch e is a pure function of (seed, e), and so are the augmentations, so a resumed
    run sees the same batches. Each pass over the object is the next epoch (``set_epoch`` sets it;
    :func:`train_photo_model` does so when it resumes). With ``world_size > 1`` (PyTorch DDP) rank r
    takes every world_size-th photo of the shuffled order, so the ranks split each epoch.
    """

    def __init__(self, photos: PhotoSet, batch_size: int, *, augment: Augment | None = Augment(), seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError("need batch_size >= 1 and 0 <= rank < world_size")
        self.photos, self.batch_size, self.augment = photos, batch_size, augment
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self, epoch: int) -> Tensor:
        order = torch.randperm(len(self.photos), generator=training.epoch_generator(self.seed, epoch))
        usable = order.numel() - order.numel() % self.world_size  # every rank gets as many batches
        return order[self.rank : usable : self.world_size]

    def __len__(self) -> int:
        return math.ceil((len(self.photos) // self.world_size) / self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        idx = self._indices(epoch)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 1009 + self.rank)
        for start in range(0, idx.numel(), self.batch_size):
            part = idx[start : start + self.batch_size]
            x = self.photos.images[part].float() / 255.0  # (b, 3, S, S) in [0, 1]
            if self.augment is None:
                yield data.to_signed(x), self.photos.features[part]
                continue
            x = data.to_signed(augment(x, self.augment, g))
            yield x, features.extract_batch(x)  # the condition describes the augmented pixels


# ---------------------------------------------------------------------------------------------
# Conditions: checked before they reach a model


def check_features(values, n: int | None = None) -> Tensor:
    """A feature vector (32,) or a batch (B, 32) in [0, 1] -> float tensor (B, 32).

    Raises ``ValueError`` for the wrong length, NaN or infinite values, or values outside [0, 1]
    (every feature is normalised to [0, 1]; see ``features.FEATURE_NAMES`` for their order).
    ``n`` repeats a single vector n times.
    """
    f = torch.as_tensor(np.asarray(values, dtype=np.float32) if not torch.is_tensor(values) else values)
    f = f.detach().float().cpu()
    if f.dim() == 1:
        f = f[None]
    if f.dim() != 2 or f.shape[1] != features.NUM_FEATURES:
        raise ValueError(
            f"a feature vector has {features.NUM_FEATURES} values (COLOR 8, LIGHTING 6, MATERIAL 5, SHAPE 7, "
            f"TOPOLOGY 6), got shape {tuple(f.shape)}"
        )
    if not torch.isfinite(f).all():
        bad = sorted({features.FEATURE_NAMES[j] for j in torch.nonzero(~torch.isfinite(f))[:, 1].tolist()})
        raise ValueError(f"feature values must be finite numbers; NaN or infinite in: {', '.join(bad)}")
    outside = (f < 0) | (f > 1)
    if outside.any():
        bad = sorted({features.FEATURE_NAMES[j] for j in torch.nonzero(outside)[:, 1].tolist()})
        raise ValueError(f"features lie in [0, 1]; out of range: {', '.join(bad)} "
                         f"(min {f.min().item():.3g}, max {f.max().item():.3g})")
    if n is not None:
        if f.shape[0] == 1:
            f = f.expand(n, -1)
        elif f.shape[0] != n:
            raise ValueError(f"asked for {n} images but gave {f.shape[0]} feature vectors")
    return f.contiguous()


# ---------------------------------------------------------------------------------------------
# Sampling: DDIM 50 steps with classifier-free guidance on the features


def ddim_times(steps: int = 50) -> Tensor:
    """``steps`` DDIM steps from t = 1 to 0, rounded onto the T = 1000 integer steps."""
    return torch.round(schedules.time_grid(steps) * T_STEPS) / T_STEPS


@torch.no_grad()
def generate(
    model: nn.Module,
    feats,
    *,
    n: int | None = None,
    steps: int = 50,
    guidance_scale: float = 2.0,
    eta: float = 1.0,
    seed: int = 0,
    noise: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Images (B, 3, S, S) in [-1, 1] with the requested features (32,) or (B, 32) in [0, 1].

    DDIM (Song et al. 2021) over ``steps`` steps, classifier-free guidance with scale
    w = ``guidance_scale`` (w = 1: the plain conditional model; w = 0: unconditional). ``eta = 0``
    is deterministic; the default ``eta = 1`` adds DDPM's posterior noise at each of the 50 steps,
    which hides the error a briefly trained model still makes at small t (with eta = 0 that error
    stays in the image as fine coloured noise). The starting noise comes from ``seed`` (or is given
    as ``noise``) and the per-step noise from ``seed + 1``, so the same seed with other features
    shows what the features change.
    """
    cond = check_features(feats, n)
    B, cfg = cond.shape[0], model.cfg
    device = next(model.parameters()).device
    if noise is None:
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(B, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    g = torch.Generator().manual_seed(seed + 1)
    was_training = model.training
    model.eval()
    x = samplers.ddim(guidance.cfg(model, guidance_scale), noise.to(device), ddim_times(steps), schedule=schedule(),
                      eta=eta, cond=cond.to(device), generator=g, clip_x0=True, progress=progress)
    model.train(was_training)
    return x.clamp(-1.0, 1.0)


def features_of(image) -> Tensor:
    """The 32 features (32,) of an image: a path, an array (H, W, 3) in [0, 1] or a tensor in [-1, 1]."""
    if isinstance(image, (str, Path)):
        return torch.from_numpy(features.extract_features(data.load_image(image), value_range=(0.0, 1.0)))
    return torch.from_numpy(features.extract_features(image))


def generate_like(model: nn.Module, image, *, n: int = 4, **kw) -> tuple[Tensor, Tensor]:
    """"Make me something lit like this": n images with the features of ``image``; returns
    ``(images, features (32,))``. ``only`` (a group name or a list of names) keeps the other
    features at the training mean, so only, say, the LIGHTING of the image is asked for."""
    only = kw.pop("only", None)
    target = features_of(image)
    if only is not None:
        names = features.FEATURE_GROUPS.get(only, only) if isinstance(only, str) else only
        keep = torch.tensor([name in names for name in features.FEATURE_NAMES])
        target = torch.where(keep, target, model.cond_mean.detach().cpu().clamp(0, 1))
    return generate(model, target, n=n, **kw), target


def feature_sweep(model: nn.Module, base, name: str, values: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                  **kw) -> Tensor:
    """A row of images (len(values), 3, S, S): ``base`` features with feature ``name`` set to each
    of ``values`` and everything else (the seed, so all the noise, included) kept fixed."""
    if name not in features.FEATURE_NAMES:
        raise ValueError(f"unknown feature {name!r}; known: {', '.join(features.FEATURE_NAMES)}")
    rows = check_features(base, len(values)).clone()
    rows[:, features.index(name)] = torch.as_tensor(list(values), dtype=torch.float32)
    rows = check_features(rows)
    # one image per call: with eta > 0 each image of a batch would draw its own step noise
    return torch.cat([generate(model, row, **kw) for row in rows])


# ---------------------------------------------------------------------------------------------
# Feature fidelity: do generated images have the features they were asked for?


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column Pearson correlation of two (N, k) arrays; NaN where a column is constant."""
    a, b = a - a.mean(0), b - b.mean(0)
    denom = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 1e-12, (a * b).sum(0) / np.where(denom > 0, denom, 1.0), np.nan)


def feature_fidelity(requested, measured, *, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per group: mean absolute error and mean per-feature correlation (over the images) between the
    requested features and those measured on the generated images, and the same two numbers for a
    shuffled-condition baseline (the requests permuted so no image keeps its own).

    The baseline is what a model that ignored its condition but drew realistic images would score:
    a conditioned model should have a lower error and a higher correlation than it. Returns
    ``{group: {"mae", "corr", "mae_shuffled", "corr_shuffled"}}`` with an ``"ALL"`` entry.
    """
    req = check_features(requested).numpy().astype(np.float64)
    meas = check_features(measured).numpy().astype(np.float64)
    if req.shape != meas.shape or req.shape[0] < 2:
        raise ValueError(f"need the same (N >= 2, 32) shapes, got {req.shape} and {meas.shape}")
    N = req.shape[0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(N)
    perm = np.empty(N, dtype=int)
    perm[order] = np.roll(order, 1)  # a random derangement: image i is compared with another request
    shuffled = req[perm]
    corr, corr_sh = _pearson(req, meas), _pearson(shuffled, meas)
    out: dict[str, dict[str, float]] = {}
    groups = dict(features.FEATURE_GROUPS, ALL=list(features.FEATURE_NAMES))
    for group, names in groups.items():
        cols = [features.index(name) for name in names]
        out[group] = dict(
            mae=float(np.abs(req[:, cols] - meas[:, cols]).mean()),
            corr=_mean_finite(corr[cols]),
            mae_shuffled=float(np.abs(shuffled[:, cols] - meas[:, cols]).mean()),
            corr_shuffled=_mean_finite(corr_sh[cols]),
        )
    return out


def _mean_finite(values: np.ndarray) -> float:
    """Mean of the finite entries (a feature that never varies has no correlation), NaN if none."""
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def measure_fidelity(model: nn.Module, requested, *, batch: int = 32, **kw) -> tuple[dict, Tensor, Tensor]:
    """Generate one image per requested feature vector, measure its features, score them with
    :func:`feature_fidelity`; returns ``(scores, images, measured)``."""
    req = check_features(requested)
    seed = kw.pop("seed", 0)
    images = torch.cat([generate(model, req[i : i + batch], seed=seed + i, **kw)
                        for i in range(0, req.shape[0], batch)])
    measured = features.extract_batch(images).cpu()
    return feature_fidelity(req, measured), images, measured


def format_fidelity(scores: dict[str, dict[str, float]]) -> str:
    """The fidelity numbers as a small text table."""
    lines = [f"{'group':10s} {'MAE':>7s} {'MAE shuf':>9s} {'corr':>7s} {'corr shuf':>10s}"]
    for group, s in scores.items():
        lines.append(f"{group:10s} {s['mae']:7.3f} {s['mae_shuffled']:9.3f} {s['corr']:7.3f} {s['corr_shuffled']:10.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Training and loading


def model_config(size: int, kind: str = "full") -> UNetConfig:
    """``"full"``: the reference plan (``photo256``) at ``size`` px, attention at size/8 and size/16;
    ``"small"``: ``photo_small(size)``."""
    if kind == "small":
        return UNetConfig.photo_small(size)
    if kind == "full":
        if size % 16:
            raise ValueError("the full photo UNet has 5 levels: the size must be divisible by 16")
        return UNetConfig.photo256(image_size=size, attn_resolutions=(size // 8, size // 16))
    raise ValueError(f"model kind must be 'full' or 'small', not {kind!r}")


def recipe_of(photos: PhotoSet, cfg: UNetConfig, **extra) -> dict:
    """What the checkpoint must remember besides the weights: features, size, data, statistics."""
    mean, std = photos.stats()
    return dict(
        feature_names=list(features.FEATURE_NAMES), feature_version=features.FEATURE_VERSION, image_size=cfg.image_size,
        objective="ddpm", schedule="cosine", T=T_STEPS, data=str(photos.folder), n_photos=len(photos),
        feature_mean=[round(float(v), 6) for v in mean], feature_std=[round(float(v), 6) for v in std], **extra,
    )


def train_photo_model(
    photos: PhotoSet,
    *,
    cfg: UNetConfig | None = None,
    epochs: int = 10,
    batch_size: int = 4,
    lr: float = 1e-4,
    p_uncond: float = 0.1,
    ema_decay: float = 0.999,
    augment_with: Augment | None = Augment(),
    seed: int = 0,
    run_dir: str | Path | None = None,
    sample_every: int | None = 1,
    amp: bool = True,
    progress: bool = True,
    device: torch.device | None = None,
) -> tuple[nn.Module, training.TrainResult]:
    """Train the feature-conditioned UNet on ``photos`` with :func:`training.train` (EMA,
    checkpoints, resume, sample grids); returns ``(EMA model, result)``.

    DDPM epsilon loss on the cosine schedule with condition dropout ``p_uncond`` (for CFG), AdamW.
    Under ``torchrun`` (PyTorch DDP) every process trains on its share of each epoch and the
    gradients are averaged; rank 0 writes the checkpoints. ``amp``: mixed precision on CUDA.
    """
    import torch.distributed as dist

    cfg = cfg or model_config(photos.size)
    if cfg.image_size != photos.size:
        raise ValueError(f"the model is for {cfg.image_size} px photos, these are {photos.size} px")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = device or config.device()
    torch.manual_seed(seed)
    model = build_unet(cfg)
    model.set_condition_stats(*photos.stats())
    model.to(device)
    batches = PhotoBatches(photos, batch_size, augment=augment_with, seed=seed, rank=rank, world_size=world)
    if run_dir is not None:
        last = training.last_checkpoint(run_dir)
        if last is not None:
            batches.set_epoch(training.read_record(last)["epoch"])  # the data order continues too
    probe = torch.linspace(0, len(photos) - 1, min(10, len(photos))).long()  # 10 photos spread over the set

    def sample_fn(m: nn.Module, epoch: int) -> Tensor:
        x = generate(m, photos.features[probe], steps=50, guidance_scale=2.0, seed=1234)
        return torch.cat([photos.signed(probe).to(x.device), x])  # top row: the photos whose features were asked for

    loss_fn = functools.partial(losses.ddpm_loss, schedule=schedule(), p_uncond=p_uncond)
    recipe = recipe_of(photos, cfg, p_uncond=p_uncond, augment=asdict(augment_with) if augment_with else None,
                       world_size=world)
    result = training.train(
        model, loss_fn, batches, epochs=epochs, batch_size=batch_size, lr=lr, optimizer="adamw",
        weight_decay=0.0, ema_decay=ema_decay, seed=seed, run_dir=run_dir, sample_fn=sample_fn,
        sample_every=sample_every, progress=progress and rank == 0, recipe=recipe, amp=amp,
    )
    return result.final_model.eval(), result


def export(model: nn.Module, path: str | Path, result: training.TrainResult, recipe: dict, *, half: bool = True) -> Path:
    """Save the EMA weights (float16) and a record (recipe, losses, timings) as a course checkpoint."""
    record = dict(
        model_config=model.cfg.to_dict(), recipe=recipe, epochs=result.epoch, steps=result.step,
        epoch_losses=result.epoch_losses, epoch_seconds=[round(s, 1) for s in result.epoch_seconds],
        machine=training.machine_description(next(model.parameters()).device),
    )
    return training.export_weights(model, path, record, half=half)


def load_photo_model(path: str | Path, *, image_size: int | None = None,
                     feature_names: Sequence[str] = features.FEATURE_NAMES,
                     device: torch.device | None = None) -> tuple[nn.Module, dict]:
    """Load a photo checkpoint (hash checked) as ``(EMA model in eval mode, record)``.

    Refuses, with a ``ValueError`` that says what differs, a checkpoint trained on other features
    (names or order) or, when ``image_size`` is given, at another image size.
    """
    record = training.read_record(path)
    recipe = record.get("recipe") or {}
    saved_names = recipe.get("feature_names")
    if saved_names is None:
        raise ValueError(f"{path} records no feature names: it is not a feature-conditioned photo model")
    if list(saved_names) != list(feature_names):
        diff = [f"{i}: {a} != {b}" for i, (a, b) in enumerate(zip(saved_names, feature_names)) if a != b]
        raise ValueError(
            f"{path} was trained on a different feature set ({len(saved_names)} features"
            f"{'; differs at ' + ', '.join(diff[:4]) if diff else ''}) than requested ({len(feature_names)})"
        )
    cfg = UNetConfig.from_dict(record["model_config"])
    if image_size is not None and cfg.image_size != image_size:
        raise ValueError(f"{path} generates {cfg.image_size}x{cfg.image_size} images, not {image_size}x{image_size}")
    model = build_unet(cfg)
    training.load_weights(model, path)
    if "feature_mean" in recipe:  # the exported weights are float16; the record keeps the statistics exact
        model.set_condition_stats(torch.tensor(recipe["feature_mean"]), torch.tensor(recipe["feature_std"]))
    return model.to(device or config.device()).eval(), record


# ---------------------------------------------------------------------------------------------
# Command line: python -m course_utils train photo --data DIR --size 64 ...


def build_parser(prog: str = "python -m course_utils train photo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train the feature-conditioned photo model.")
    p.add_argument("--data", type=Path, default=None, help="folder of photos (default: the flower photos)")
    p.add_argument("--size", type=int, default=None, help="image size in px (default 256; 32 in fast mode)")
    p.add_argument("--model", choices=("full", "small"), default=None,
                   help="full: the 64-128-256-512-512 plan; small: 32-64-64 (default: small below 64 px)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=4, help="per process")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--limit", type=int, default=None, help="use the first N photos only")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--p-uncond", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay")
    p.add_argument("--sample-every", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=None, help="default runs/photo-<size>")
    p.add_argument("--out", type=Path, default=None, help="exported weights (default <checkpoints>/photo-<size>.safetensors)")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--fidelity", type=int, default=64, help="measure feature fidelity on N photos' features at the end (0: skip)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Train (resuming ``--run-dir``), export, and report the feature fidelity. Under ``torchrun``
    each process joins the process group first (NCCL on GPUs, gloo on CPUs)."""
    args = build_parser().parse_args(argv)
    import os

    import torch.distributed as dist

    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    device = None
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
    rank = dist.get_rank() if distributed else 0
    size = args.size or config.pick(256, 32)
    kind = args.model or ("small" if size < 64 else "full")
    epochs = args.epochs or config.pick(100, 1)
    started = time.perf_counter()
    if distributed and rank != 0:
        dist.barrier()  # rank 0 fills the crop and feature caches first; the others then read them
    photos = load_photos(args.data, size=size, limit=args.limit, progress=not args.no_progress and rank == 0)
    if distributed and rank == 0:
        dist.barrier()
    if rank == 0:
        print(f"{len(photos)} photos at {size} px from {photos.folder} ({len(photos.failures)} unreadable) "
              f"in {time.perf_counter() - started:.0f} s")
    cfg = model_config(size, kind)
    run_dir = args.run_dir or config.repo_root() / "runs" / f"photo-{size}"
    aug = None if args.no_augment else Augment()
    model, result = train_photo_model(
        photos, cfg=cfg, epochs=epochs, batch_size=args.batch_size, lr=args.lr, p_uncond=args.p_uncond,
        ema_decay=args.ema, augment_with=aug, seed=args.seed, run_dir=run_dir, sample_every=args.sample_every, amp=not args.no_amp,
        progress=not args.no_progress, device=device,
    )
    if rank == 0:
        seen = result.step * args.batch_size * (dist.get_world_size() if distributed else 1)
        train_s = sum(result.epoch_seconds)
        print(f"trained {result.epoch} epochs, {result.step} steps, {train_s:.0f} s of training, "
              f"{seen / max(train_s, 1e-9):.1f} img/s, last epoch loss {result.epoch_losses[-1]:.4f}")
        recipe = recipe_of(photos, cfg, p_uncond=args.p_uncond, augment=asdict(aug) if aug else None)
        out = args.out or config.checkpoint_dir() / f"photo-{size}.safetensors"
        export(model, out, result, recipe)
        print(f"saved {out}")
        if args.fidelity:
            pick_rows = torch.randperm(len(photos), generator=torch.Generator().manual_seed(99))[: args.fidelity]
            scores, _, _ = measure_fidelity(model, photos.features[pick_rows], guidance_scale=2.0)
            print(format_fidelity(scores))
            (run_dir / "fidelity.json").write_text(json.dumps(scores, indent=1))
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
