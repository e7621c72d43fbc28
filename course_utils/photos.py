"""The feature-conditioned photo model: sampling, feature fidelity, training, export and loading.

The model is an epsilon-predicting DDPM (Ho et al. 2020) on the cosine schedule with T = 1000
steps (Nichol & Dhariwal 2021), conditioned on the 32 visual features of
:mod:`course_utils.features` and sampled with DDIM (Song et al. 2021) in 50 steps under
classifier-free guidance (Ho & Salimans 2022)::

    photos = load_photos(size=64)                      # centre-cropped, features of what the model sees
    model, result = train_photo_model(photos, epochs=20, run_dir="runs/photo-64")
    x = generate(model, photos.features[:4], guidance_scale=2.0, seed=0)   # (4, 3, 64, 64) in [-1, 1]
    row = feature_sweep(model, photos.features[0], "dominant_hue")        # one feature moved, rest kept

The photos themselves (crops, their features, augmentation, mini-batches, condition checks) live in
:mod:`course_utils.photo_data`; every name defined there stays importable from here
(``photos.load_photos``, ``photos.Augment``, ``photos.augment``, ...). Conditions enter the model
as raw features in [0, 1]; the model standardises them with the training set's per-feature mean
and standard deviation, which it stores as buffers and which the checkpoint's recipe
(:class:`course_utils.recipes.Recipe`, photo settings in ``extra``) keeps exactly.

Randomness: image i of a request made with ``seed`` draws its start noise and then its step noise
from its own stream (:class:`course_utils.noise.PerSample`), so an image never depends on the
batch it is drawn in.

From the command line: ``python -m course_utils train photo --data DIR --size 32 --epochs 10``
(the parser lives in :mod:`course_utils.__main__`; ``python -m course_utils.photos`` still works).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import checkpoints, config, data, features, guidance, losses, predictions, samplers, schedules, training
from .errors import BadRequest
from .noise import Generator, PerSample, check_streams, image_seed, randn

# the photo data moved to photo_data.py; these names stay importable from here
from .photo_data import (  # noqa: F401
    DEFAULT_AUGMENT,
    Augment,
    PhotoBatches,
    PhotoSet,
    augment,
    centre_crop_resize,
    check_features,
    load_photos,
)
from .recipes import Recipe
from .unet import UNetConfig, build_unet

T_STEPS = 1000  # DDPM steps of the cosine schedule the photo model is trained on
GROUPS = ("COLOR", "LIGHTING", "MATERIAL", "SHAPE", "TOPOLOGY")
PREDICTION = "eps"  # what the photo network predicts (predictions.PREDICTIONS)


def schedule() -> schedules.DiscreteSchedule:
    """The photo model's noise schedule: cosine, T = 1000 (Nichol & Dhariwal 2021, eq. 17)."""
    return schedules.cosine_schedule(T_STEPS)


# ---------------------------------------------------------------------------------------------
# Sampling: DDIM 50 steps with classifier-free guidance on the features


def ddim_times(steps: int = 50) -> Tensor:
    """``steps`` DDIM steps from t = 1 to 0, snapped onto the T = 1000 integer steps
    (:func:`schedules.step_times`)."""
    return schedules.step_times(steps, T_STEPS)


def _check_request(
    *, n=None, steps: int = 50, guidance_scale: float = 2.0, eta: float = 1.0, seed: int = 0, **_
) -> None:
    """The sampling arguments of :func:`generate` (the others pass through): BadRequest naming the bad one."""
    if n is not None:
        samplers.check_count(n, "n")
    samplers.check_steps(steps, maximum=T_STEPS, why=f"the photo model's schedule has T = {T_STEPS} steps")
    samplers.check_scale(guidance_scale, "guidance_scale")
    samplers.check_scale(eta, "eta", minimum=0.0)
    samplers.check_seed(seed)


def feature_names_of(only) -> list[str]:
    """The feature names that ``only`` asks for: a group name (``"LIGHTING"``), a feature name
    (``"roughness"``) or a list of either. Unknown names raise BadRequest listing the known ones."""
    items = [only] if isinstance(only, str) else only
    try:
        items = list(items)
    except TypeError:
        raise BadRequest(f"only must be a group or feature name or a list of them, got {only!r}") from None
    names: list[str] = []
    unknown = []
    for item in items:
        if isinstance(item, str) and item in features.FEATURE_GROUPS:
            names += features.FEATURE_GROUPS[item]
        elif isinstance(item, str) and item in features.FEATURE_NAMES:
            names.append(item)
        else:
            unknown.append(item)
    if unknown or not names:
        what = f"unknown name(s) {', '.join(map(repr, unknown))}" if unknown else "no names given"
        raise BadRequest(
            f"only: {what}; known groups: {', '.join(features.FEATURE_GROUPS)}; "
            f"known features: {', '.join(features.FEATURE_NAMES)}"
        )
    return names


@torch.no_grad()
def generate(
    model: nn.Module,
    feats,
    *,
    n: int | None = None,
    steps: int = 50,
    guidance_scale: float = 2.0,
    eta: float = 1.0,
    generator: Generator | None = None,
    seed: int = 0,
    noise: Tensor | None = None,
    progress: bool = False,
    then=None,
    switch_after: int | None = None,
) -> Tensor:
    """Images (B, 3, S, S) in [-1, 1], on the CPU, with the requested features (32,) or (B, 32) in [0, 1].

    DDIM (Song et al. 2021) over ``steps`` steps, classifier-free guidance with scale
    w = ``guidance_scale`` (w = 1: the plain conditional model; w = 0: unconditional). ``eta = 0``
    is deterministic; the default ``eta = 1`` adds DDPM's posterior noise at each step, which
    hides the error a briefly trained model still makes at small t (with eta = 0 that error stays
    in the image as fine coloured noise).

    Randomness: ``generator`` (a :class:`~course_utils.noise.PerSample` with one stream per image,
    or a ``torch.Generator`` for the whole batch); without one, ``PerSample.from_seed(seed, B)``:
    image i draws from its own seed, so it is the same whether drawn alone or with others. Each
    stream's first draw is the start noise, the later ones the step noise. ``noise`` (B, 3, S, S)
    replaces the start noise (the first draw is still made, so the step noise stays the same):
    the same seed with other features shows what the features change.

    A latent model (:class:`course_utils.latent.LatentDiffusion`, which carries an ``autoencoder``)
    is sampled on its latents (B, C, 32, 32), x0 clipped to its own bound, and the result decoded to
    (B, 3, 256, 256); ``noise`` then has the latent's shape.

    A request changed on the way: with ``then`` (features like ``feats``) and ``switch_after`` = k,
    the first k steps follow ``feats`` and the other ``steps - k`` follow ``then``, from the same
    noise (k = 0 draws ``then``, k = ``steps`` draws ``feats``): which steps decide which features.

    Every argument is checked before any compute (:class:`~course_utils.errors.BadRequest` names
    it): ``n`` >= 1, ``steps`` in 1..1000, ``guidance_scale`` finite, ``eta`` finite and >= 0,
    ``seed`` in 0..2**32 - 1, features finite in [0, 1], ``then`` as many as ``feats`` and
    ``switch_after`` in 0..steps, each given with the other.
    """
    _check_request(n=n, steps=steps, guidance_scale=guidance_scale, eta=eta, seed=seed)
    cond = check_features(feats, n)
    later = _check_switch(then, switch_after, steps=steps, n=n, like=cond)
    B, cfg = cond.shape[0], model.cfg
    shape = (B, cfg.in_channels, cfg.image_size, cfg.image_size)
    times = ddim_times(steps)
    guided = guidance.cfg(model, guidance_scale)
    if later is not None:  # the model is called at times[0 .. steps - 1]: from times[k] on, the other request
        t_switch = float(times[switch_after]) if switch_after < steps else float("-inf")
        guided = _switched(guided, later.to(predictions.device_of(model)), t_switch)
    if generator is None:
        generator = PerSample.from_seed(seed, B)
    check_streams(generator, B)
    if noise is not None and tuple(noise.shape) != shape:
        raise BadRequest(f"noise must have shape {shape}, got {tuple(noise.shape)}")
    device = predictions.device_of(model)
    decoder = getattr(model, "autoencoder", None)  # a latent model: sample latents, then decode them
    start = randn(shape, generator)  # the first draw of each stream: the start noise
    if noise is not None:
        start = noise
    was_training = model.training
    model.eval()
    try:
        x = samplers.ddim(
            guided,
            start.to(device),
            times,
            schedule=schedule(),
            eta=eta,
            cond=cond.to(device),
            generator=generator,
            clip_x0=True if decoder is None else model.x0_clip,  # pixels: [-1, 1]; latents: the model's bound
            progress=progress,
        )
        if decoder is not None:
            x = torch.cat([decoder.decode(x[i : i + 16]) for i in range(0, B, 16)])
    finally:
        model.train(was_training)
    return x.clamp(-1.0, 1.0).cpu()


def _check_switch(then, switch_after, *, steps: int, n: int | None, like: Tensor) -> Tensor | None:
    """``generate``'s second request, checked: None when neither is given."""
    if then is None and switch_after is None:
        return None
    if then is None or switch_after is None:
        raise BadRequest("then and switch_after go together: the features to switch to, and after how many steps")
    if isinstance(switch_after, bool) or not isinstance(switch_after, int) or not 0 <= switch_after <= steps:
        raise BadRequest(f"switch_after must be a whole number of steps in 0..{steps}, got {switch_after!r}")
    later = check_features(then, n)
    if later.shape[0] == 1:  # one vector for every image
        later = later.expand(like.shape[0], -1)
    if later.shape != like.shape:
        raise BadRequest(f"then must hold as many feature rows as the request ({like.shape[0]}), got {later.shape[0]}")
    return later


def _switched(guided, later: Tensor, t_switch: float):
    """``guided`` told ``later`` instead of its request at every t <= ``t_switch``."""

    def switched(x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is not None and float(t.flatten()[0]) <= t_switch:
            cond = later
        return guided(x, t, cond)

    return predictions.wraps(switched, guided)


def features_of(image) -> Tensor:
    """The 32 features (32,) of an image: a path, an array (H, W, 3) in [0, 1] or a tensor in [-1, 1]."""
    if isinstance(image, (str, Path)):
        return torch.from_numpy(features.extract_features(data.load_image(image), value_range=(0.0, 1.0)))
    return torch.from_numpy(features.extract_features(image))


def generate_like(model: nn.Module, image, *, n: int = 4, **kw) -> tuple[Tensor, Tensor]:
    """ "Make me something lit like this": n images with the features of ``image``; returns
    ``(images, features (32,))``. ``only`` (a group name or a list of names) keeps the other
    features at the training mean, so only, say, the LIGHTING of the image is asked for. Unknown
    names, like the other arguments, raise BadRequest before the image is read."""
    only = kw.pop("only", None)
    names = feature_names_of(only) if only is not None else None
    _check_request(n=n, **kw)
    target = features_of(image)
    if names is not None:
        keep = torch.tensor([name in names for name in features.FEATURE_NAMES])
        target = torch.where(keep, target, model.cond_mean.detach().cpu().clamp(0, 1))
    return generate(model, target, n=n, **kw), target


def feature_sweep(
    model: nn.Module, base, name: str, values: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), **kw
) -> Tensor:
    """A row of images (len(values), 3, S, S): ``base`` features with feature ``name`` set to each
    of ``values`` and everything else kept fixed, the noise included.

    The row is one batched :func:`generate` call in which every image draws from the same seed,
    ``image_seed(seed, 0)`` (start noise and step noise alike), so the images differ only through
    the feature, and each is what ``generate(model, its features, seed=seed)`` draws alone.
    ``kw`` goes to :func:`generate` (``steps``, ``guidance_scale``, ``eta``, ``seed``, ...).
    """
    if name not in features.FEATURE_NAMES:
        raise BadRequest(f"unknown feature {name!r}; known: {', '.join(features.FEATURE_NAMES)}")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise BadRequest(f"values must be numbers in [0, 1] for {name}, got {values!r}") from None
    if not values:
        raise BadRequest("values: feature_sweep needs at least one value")
    bad = [v for v in values if not 0.0 <= v <= 1.0]  # NaN fails both comparisons
    if bad:
        raise BadRequest(f"values for {name} must be finite numbers in [0, 1] (features are normalised), got {bad}")
    if "n" in kw:
        raise BadRequest("feature_sweep draws one image per value: pass values, not n")
    _check_request(**kw)
    rows = check_features(base, len(values)).clone()
    rows[:, features.index(name)] = torch.as_tensor(values, dtype=torch.float32)
    rows = check_features(rows)
    seed = samplers.check_seed(kw.pop("seed", 0))
    if kw.get("generator") is None:
        kw["generator"] = PerSample([image_seed(seed, 0)] * len(values))  # shared noise: one stream, copied
    return generate(model, rows, **kw)


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
    req, meas, shuffled, corr, corr_sh = _fidelity_arrays(requested, measured, seed)
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


def feature_fidelity_by_feature(requested, measured, *, seed: int = 0) -> dict[str, dict]:
    """:func:`feature_fidelity` one feature at a time, to trace a group's number to its features:
    ``{name: {"group", "mae", "corr", "mae_shuffled", "corr_shuffled"}}`` (corr NaN where a feature
    never varies). A group's MAE is the mean of its features' MAEs, its correlation the mean of the
    finite ones."""
    req, meas, shuffled, corr, corr_sh = _fidelity_arrays(requested, measured, seed)
    return {
        info.name: dict(
            group=info.group,
            mae=float(np.abs(req[:, info.index] - meas[:, info.index]).mean()),
            corr=float(corr[info.index]),
            mae_shuffled=float(np.abs(shuffled[:, info.index] - meas[:, info.index]).mean()),
            corr_shuffled=float(corr_sh[info.index]),
        )
        for info in features.FEATURES
    }


def hue_errors(requested, measured) -> dict[str, float]:
    """``dominant_hue`` is an angle (in turns, red at both ends of [0, 1]; 0 for a grey image). Its
    mean error the linear way, as :func:`feature_fidelity` counts it (``"mae"``), the short way
    round the circle (``"circular_mae"``), and the share of images whose linear error exceeds half
    a turn, where the other way round is shorter (``"share_past_half_a_turn"``)."""
    req, meas = check_features(requested).double(), check_features(measured).double()
    if req.shape != meas.shape:
        raise BadRequest(f"need the same (N, 32) shapes, got {tuple(req.shape)} and {tuple(meas.shape)}")
    i = features.index("dominant_hue")
    d = (req[:, i] - meas[:, i]).abs()
    return dict(
        mae=float(d.mean()),
        circular_mae=float(torch.minimum(d, 1 - d).mean()),
        share_past_half_a_turn=float((d > 0.5).double().mean()),
    )


def _fidelity_arrays(requested, measured, seed: int):
    """(requested, measured, shuffled requests, per-feature corr, per-feature shuffled corr) as float64."""
    req = check_features(requested).numpy().astype(np.float64)
    meas = check_features(measured).numpy().astype(np.float64)
    if req.shape != meas.shape or req.shape[0] < 2:
        raise BadRequest(f"need the same (N >= 2, 32) shapes, got {req.shape} and {meas.shape}")
    N = req.shape[0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(N)
    perm = np.empty(N, dtype=int)
    perm[order] = np.roll(order, 1)  # a random derangement: image i is compared with another request
    shuffled = req[perm]
    return req, meas, shuffled, _pearson(req, meas), _pearson(shuffled, meas)


def _mean_finite(values: np.ndarray) -> float:
    """Mean of the finite entries (a feature that never varies has no correlation), NaN if none."""
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def measure_fidelity(
    model: nn.Module, requested, *, batch: int = 32, seed: int = 0, **kw
) -> tuple[dict, Tensor, Tensor]:
    """Generate one image per requested feature vector, measure its features, score them with
    :func:`feature_fidelity`; returns ``(scores, images, measured)``.

    Image i draws from its own seed (``PerSample.from_seed(seed, N)``), so the result does not
    depend on ``batch`` (how many images one sampler call draws). ``kw`` goes to :func:`generate`.
    """
    req = check_features(requested)
    samplers.check_count(batch, "batch")
    samplers.check_seed(seed)
    if kw.pop("generator", None) is not None:
        raise BadRequest("measure_fidelity gives image i its own seed; pass seed=, not a generator")
    if "n" in kw:
        raise BadRequest("measure_fidelity draws one image per requested feature vector: pass no n")
    _check_request(**kw)
    chunks = []
    for start in range(0, req.shape[0], batch):
        part = req[start : start + batch]
        chunks.append(generate(model, part, generator=PerSample.from_seed(seed, part.shape[0], start=start), **kw))
    images = torch.cat(chunks)
    measured = features.extract_batch(images).cpu()
    return feature_fidelity(req, measured), images, measured


def format_fidelity(scores: dict[str, dict[str, float]]) -> str:
    """The fidelity numbers as a small text table."""
    lines = [f"{'group':10s} {'MAE':>7s} {'MAE shuf':>9s} {'corr':>7s} {'corr shuf':>10s}"]
    for group, s in scores.items():
        lines.append(
            f"{group:10s} {s['mae']:7.3f} {s['mae_shuffled']:9.3f} {s['corr']:7.3f} {s['corr_shuffled']:10.3f}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The recipe, training, export and loading


def model_config(size: int, kind: str = "full") -> UNetConfig:
    """``"full"``: the reference plan (``photo256``) at ``size`` px, attention at size/8 and size/16
    (5 levels: size divisible by 16); ``"small"``: ``photo_small(size)`` (3 levels: divisible by 4).
    Sizes below 8 px are refused."""
    if kind not in ("full", "small"):
        raise BadRequest(f"model kind must be 'full' or 'small', not {kind!r}")
    if size < 8:
        raise BadRequest(f"the photo model needs a size of at least 8 pixels, got {size}")
    if kind == "small":
        if size % 4:
            raise BadRequest(f"the small photo UNet has 3 levels: the size must be divisible by 4, got {size}")
        return UNetConfig.photo_small(size)
    if size % 16:
        raise BadRequest(f"the full photo UNet has 5 levels: the size must be divisible by 16, got {size}")
    return UNetConfig.photo256(image_size=size, attn_resolutions=(size // 8, size // 16))


# train_photo_model's defaults, also assumed for an old record that did not store them
DEFAULTS = dict(epochs=10, batch_size=4, lr=1e-4, p_uncond=0.1, ema_decay=0.999, seed=0)
_RECIPE_FIELDS = {f.name for f in dataclasses.fields(Recipe)} - {"unet", "extra"}
_EXTRA_ORDER = ("feature_names", "feature_version", "feature_mean", "feature_std", "augment", "data", "n_photos")


def _photo_recipe(cfg: UNetConfig, extra: dict, **settings) -> Recipe:
    values = dict(
        name=f"photo-{cfg.image_size}",
        about=f"feature-conditioned DDPM (eps, cosine T = {T_STEPS}) at {cfg.image_size} px, DDIM 50 steps with CFG",
        objective="ddpm",
        schedule="cosine",
        T=T_STEPS,
        lr_schedule="constant",
        optimizer="adamw",
        weight_decay=0.0,
        sample_steps=50,
        **DEFAULTS,
    )
    values.update(settings)
    ordered = {k: extra[k] for k in _EXTRA_ORDER if k in extra}
    ordered.update({k: v for k, v in extra.items() if k not in ordered})
    return Recipe(unet=cfg, extra=ordered, **values)


def recipe_of(photos: PhotoSet, cfg: UNetConfig, **extra) -> Recipe:
    """The :class:`~course_utils.recipes.Recipe` of a photo model trained on ``photos`` with ``cfg``.

    Name ``photo-<size>``, DDPM (epsilon) on the cosine schedule with T = 1000, AdamW at a constant
    learning rate. Keywords that are Recipe fields (``p_uncond``, ``epochs``, ``batch_size``, ``lr``,
    ``ema_decay``, ``seed``, ...) set them (default: :data:`DEFAULTS`); the others (``augment``,
    ``world_size``, ...) go into ``extra`` beside what the checkpoint must remember: the feature
    names and version, the training set's feature mean and standard deviation, the data folder and
    the number of photos.
    """
    mean, std = photos.stats()
    settings = {k: extra.pop(k) for k in list(extra) if k in _RECIPE_FIELDS}
    facts = dict(
        feature_names=list(features.FEATURE_NAMES),
        feature_version=features.FEATURE_VERSION,
        feature_mean=[round(float(v), 6) for v in mean],
        feature_std=[round(float(v), 6) for v in std],
        augment=extra.pop("augment", None),
        data=str(photos.folder),
        n_photos=len(photos),
    )
    return _photo_recipe(cfg, dict(facts, **extra), **settings)


def recipe_from_record(record: dict) -> Recipe:
    """The recipe of a photo checkpoint's record: the current layout (``Recipe.to_dict()``, photo
    settings in ``extra``) or the older flat one (feature names and statistics beside the schedule,
    no training settings: those are taken as :data:`DEFAULTS` and ``trained`` says so)."""
    saved = record.get("recipe") or {}
    unet = record.get("model_config") or saved.get("unet")
    if unet is None:
        raise BadRequest("the record holds no model configuration")
    cfg = UNetConfig.from_dict(unet)
    if "extra" in saved and "name" in saved:
        recipe = Recipe.from_dict(saved)
        return recipe if recipe.unet == cfg else recipe.replace(unet=cfg)
    flat = {k: v for k, v in saved.items() if k != "image_size"}
    settings = {k: flat.pop(k) for k in ("objective", "schedule", "T", "p_uncond") if k in flat}
    epochs = record.get("epochs")
    if epochs is not None:
        settings["epochs"] = epochs
    note = (
        "older record layout: batch size, learning rate, EMA decay and seed were not recorded (the defaults are shown)"
    )
    return _photo_recipe(cfg, flat, trained=note, **settings)


def train_photo_model(
    photos: PhotoSet,
    *,
    cfg: UNetConfig | None = None,
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    p_uncond: float = DEFAULTS["p_uncond"],
    ema_decay: float = DEFAULTS["ema_decay"],
    augment_with: Augment | None = DEFAULT_AUGMENT,
    seed: int = DEFAULTS["seed"],
    run_dir: str | Path | None = None,
    sample_every: int | None = 1,
    amp: bool = True,
    progress: bool = True,
    device: torch.device | None = None,
) -> tuple[nn.Module, training.TrainResult]:
    """Train the feature-conditioned UNet on ``photos`` with :func:`training.train` (EMA,
    checkpoints, resume); returns ``(EMA model, result)``.

    DDPM epsilon loss on the cosine schedule with condition dropout ``p_uncond`` (for CFG), AdamW.
    With ``run_dir``, every ``sample_every`` epochs the model draws the features of 10 training
    photos, saved under them as ``run_dir/samples_epoch_NNNN.png``
    (:func:`plotting.sample_grid_saver`). Under ``torchrun`` (PyTorch DDP) every process trains on
    its share of each epoch and the gradients are averaged; rank 0 writes the checkpoints.
    ``amp``: mixed precision on CUDA.
    """
    cfg = cfg or model_config(photos.size)
    if cfg.image_size != photos.size:
        raise BadRequest(f"the model is for {cfg.image_size} px photos, these are {photos.size} px")
    rank, world = training.rank_and_world()
    device = device or config.device()
    torch.manual_seed(seed)
    model = predictions.with_prediction(build_unet(cfg), PREDICTION)
    model.set_condition_stats(*photos.stats())
    model.to(device)
    batches = PhotoBatches(photos, batch_size, augment=augment_with, seed=seed, rank=rank, world_size=world)
    save_samples = None
    if run_dir is not None:
        last = training.last_checkpoint(run_dir)
        if last is not None:
            batches.set_epoch(training.read_record(last)["epoch"])  # the data order continues too
        from .plotting import sample_grid_saver  # photos plots its samples; the training loop never does

        save_samples = sample_grid_saver(run_dir)
    probe = torch.linspace(0, len(photos) - 1, min(10, len(photos))).long()  # 10 photos spread over the set

    def sample_fn(m: nn.Module, epoch: int) -> Tensor:
        x = generate(m, photos.features[probe], steps=50, guidance_scale=2.0, seed=1234)
        return torch.cat([photos.signed(probe).to(x.device), x])  # top row: the photos whose features were asked for

    loss_fn = functools.partial(losses.ddpm_loss, schedule=schedule(), p_uncond=p_uncond)
    recipe = recipe_of(
        photos,
        cfg,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        p_uncond=p_uncond,
        ema_decay=ema_decay,
        seed=seed,
        augment=asdict(augment_with) if augment_with else None,
        world_size=world,
    )
    result = training.train(
        model,
        loss_fn,
        batches,
        **recipe.train_kwargs(),
        run_dir=run_dir,
        sample_fn=sample_fn,
        sample_every=sample_every,
        save_samples=save_samples,
        progress=progress and rank == 0,
        recipe=recipe.to_dict(),
        amp=amp,
    )
    return result.final_model.eval(), result


def export(
    model: nn.Module, path: str | Path, result: training.TrainResult, recipe: Recipe | dict, *, half: bool = True
) -> Path:
    """Save the EMA weights (float16) and a record (``recipe=Recipe.to_dict()``, losses, timings,
    machine) as a course checkpoint. ``recipe``: from :func:`recipe_of` (an older flat dict is
    converted)."""
    if not isinstance(recipe, Recipe):
        recipe = recipe_from_record(dict(recipe=recipe, model_config=model.cfg.to_dict(), epochs=result.epoch))
    record = dict(
        model_config=model.cfg.to_dict(),
        recipe=recipe.to_dict(),
        epochs=result.epoch,
        steps=result.step,
        epoch_losses=result.epoch_losses,
        epoch_seconds=[round(s, 1) for s in result.epoch_seconds],
        machine=checkpoints.machine_description(predictions.device_of(model)),
    )
    return checkpoints.export_weights(model, path, record, half=half)


def load_photo_model(
    path: str | Path,
    *,
    image_size: int | None = None,
    feature_names: Sequence[str] = features.FEATURE_NAMES,
    device: torch.device | None = None,
) -> tuple[nn.Module, dict]:
    """Load a photo checkpoint (hash checked) as ``(EMA model in eval mode, record)``.

    Reads the current record layout and the older flat one (a checkpoint trained before the
    recipes were unified); the returned record's ``"recipe"`` is always the current layout
    (``Recipe.to_dict()``, see :func:`recipe_from_record`). Refuses, with a ``ValueError`` that
    says what differs, a checkpoint trained on other features (names or order) or, when
    ``image_size`` is given, at another image size. The model records ``prediction = "eps"``.
    A file named in the checkpoint folder but not there (``config.checkpoint_dir() / "photo-32.safetensors"``)
    is looked for among the shipped checkpoints (:func:`course_utils.config.find_checkpoint`).
    """
    if not Path(path).is_file():
        path = config.find_checkpoint(path)
    record = checkpoints.read_record(path)
    saved = record.get("recipe") or {}
    saved_names = (saved.get("extra") or {}).get("feature_names", saved.get("feature_names"))
    if saved_names is None:
        raise BadRequest(f"{path} records no feature names: it is not a feature-conditioned photo model")
    if list(saved_names) != list(feature_names):
        diff = [f"{i}: {a} != {b}" for i, (a, b) in enumerate(zip(saved_names, feature_names)) if a != b]
        raise BadRequest(
            f"{path} was trained on a different feature set ({len(saved_names)} features"
            f"{'; differs at ' + ', '.join(diff[:4]) if diff else ''}) than requested ({len(feature_names)})"
        )
    recipe = recipe_from_record(record)
    if recipe.prediction != PREDICTION:
        raise BadRequest(f"{path} is a {recipe.objective!r} model; the photo model is a DDPM predicting eps")
    cfg = recipe.unet
    if image_size is not None and cfg.image_size != image_size:
        raise BadRequest(f"{path} generates {cfg.image_size}x{cfg.image_size} images, not {image_size}x{image_size}")
    model = build_unet(cfg)
    checkpoints.load_weights(model, path)
    extra = recipe.extra
    if "feature_mean" in extra:  # the exported weights are float16; the recipe keeps the statistics exact
        model.set_condition_stats(torch.tensor(extra["feature_mean"]), torch.tensor(extra["feature_std"]))
    predictions.with_prediction(model, PREDICTION)
    return model.to(device or config.device()).eval(), dict(record, recipe=recipe.to_dict())


# ---------------------------------------------------------------------------------------------
# Command line: python -m course_utils train photo --data DIR --size 64 ... (see course_utils.__main__)


def build_parser(prog: str = "python -m course_utils train photo"):
    """The ``train photo`` argument parser (:func:`course_utils.__main__.build_photo_parser`)."""
    from .__main__ import build_photo_parser

    return build_photo_parser(prog)


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils train photo``: :func:`course_utils.__main__.train_photo_main`."""
    from .__main__ import train_photo_main

    return train_photo_main(argv)


if __name__ == "__main__":
    sys.exit(main())
