"""Latent diffusion for the photos: the held-out split, the autoencoder's training, the latent cache
and the feature-conditioned model that runs on latents and draws 256x256 photos.

::

    ps = photo_data.load_photos(size=256)               # 256 px crops and their 32 features
    train_idx, held_idx = split_indices(ps.paths, ps.folder)   # 90% / 10%, fixed by a seed
    ae, _ = train_autoencoder(ps.images[train_idx], run_dir="runs/ae")
    measure_latent_stats(ae, ps.images[train_idx])       # the per-channel standardisation of the latent
    cache = latent_cache(ae, ps.images[train_idx])       # latents of a few augmented variants, each with its features
    unet, _, recipe = train_latent_model(cache, run_dir="runs/latent")
    model = LatentDiffusion(unet, ae)
    images = photos.generate(model, ps.features[held_idx[:4]], seed=0)   # (4, 3, 256, 256) in [-1, 1]

The shipped pair is ``load_latent_model("photo-latent")``; ``build_autoencoder`` and
``build_latent_model`` (``python -m course_utils train photo-ae | photo-latent``) rebuild it.

The held-out photos are chosen by a hash of each photo's path inside its folder and the seed, so
the split does not depend on the order photos are listed in, nor on which other photos exist: a
photo added later never moves an old one from one side to the other.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import photo_data, training
from .autoencoder import AEConfig, Autoencoder, ae_loss, measure_latent_stats, pca_init
from .errors import BadRequest
from .recipes import Recipe

HELD_OUT = 0.1  # share of the photos kept out of every training run
SPLIT_SEED = 0
X0_CLIP = 3.0  # the latent model's bound on x0_hat (LatentDiffusion): benchmarks/latent_photo_eval.py --clip-sweep
# the latent model's guidance scale (generate photo, notebooks 10-11, the protocol), chosen on 256 training
# requests: benchmarks/latent_photo_eval.py --guidance-sweep 2,3,4 --n 256
GUIDANCE = 3.0


# ---------------------------------------------------------------------------------------------
# The held-out split


def is_held_out(name: str, *, fraction: float = HELD_OUT, seed: int = SPLIT_SEED) -> bool:
    """Whether the photo ``name`` (its path inside the photo folder, with /) is held out: a hash of
    (seed, name) falls in the first ``fraction`` of its range."""
    if not 0.0 <= fraction < 1.0:
        raise BadRequest(f"fraction must be in [0, 1), got {fraction}")
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def split_indices(
    paths: Sequence[Path], folder: Path | None = None, *, fraction: float = HELD_OUT, seed: int = SPLIT_SEED
) -> tuple[Tensor, Tensor]:
    """``(train, held_out)`` index tensors into ``paths`` (see :func:`is_held_out`)."""
    names = [Path(p).relative_to(folder).as_posix() if folder is not None else Path(p).name for p in paths]
    held = torch.tensor([is_held_out(n, fraction=fraction, seed=seed) for n in names], dtype=torch.bool)
    idx = torch.arange(len(names))
    return idx[~held], idx[held]


# ---------------------------------------------------------------------------------------------
# The autoencoder: trained on random crops (it is convolutional, so crops teach it full images)


class CropBatches:
    """Mini-batches of random ``crop`` x ``crop`` crops (flipped at random) of uint8 images
    (N, 3, H, W), in [-1, 1]. Epoch e's order, crops and flips are a pure function of (seed, e), so
    a resumed run sees the same batches; each pass over the object is the next epoch."""

    def __init__(self, images: Tensor, batch_size: int, *, crop: int = 128, seed: int = 0):
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise BadRequest(f"CropBatches takes uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if not 1 <= crop <= min(images.shape[-2:]):
            raise BadRequest(f"crop must be between 1 and the image size {min(images.shape[-2:])}, got {crop}")
        self.images, self.batch_size, self.crop, self.seed, self.epoch = images, batch_size, crop, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.images.shape[0] / self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        g = training.epoch_generator(self.seed, epoch)
        N, _, H, W = self.images.shape
        order = torch.randperm(N, generator=g)
        tops = torch.randint(0, H - self.crop + 1, (N,), generator=g)
        lefts = torch.randint(0, W - self.crop + 1, (N,), generator=g)
        flips = torch.rand(N, generator=g) < 0.5
        c = self.crop
        for start in range(0, N, self.batch_size):
            part = order[start : start + self.batch_size]
            crops = [self.images[i, :, tops[i] : tops[i] + c, lefts[i] : lefts[i] + c] for i in part.tolist()]
            x = torch.stack(crops).float() / 127.5 - 1.0
            x = torch.where(flips[part][:, None, None, None], x.flip(-1), x)
            yield x


AE_DEFAULTS = dict(epochs=10, batch_size=16, lr=1e-3, crop=128, kl_weight=1e-4, grad_weight=0.0, seed=0)


def autoencoder_recipe(cfg: AEConfig, **settings) -> Recipe:
    """The autoencoder's :class:`~course_utils.recipes.Recipe` (objective ``"autoencode"``): the
    training settings of :data:`AE_DEFAULTS` (overridden by ``settings``), the configuration in ``extra``."""
    values = dict(AE_DEFAULTS, **settings)
    extra = dict(
        autoencoder=cfg.to_dict(),
        crop=values.pop("crop"),
        kl_weight=values.pop("kl_weight"),
        grad_weight=values.pop("grad_weight"),
        **values.pop("extra", {}),
    )
    return Recipe(
        name="photo-autoencoder",
        about=f"KL autoencoder 256x256x3 <-> {256 // cfg.factor}x{256 // cfg.factor}x{cfg.latent_channels}, "
        "trained from scratch on random crops of the flower photos (training split)",
        objective="autoencode",
        unet=None,
        lr_schedule="cosine",
        optimizer="adamw",
        ema_decay=0.999,
        extra=extra,
        **values,
    )


def train_autoencoder(
    images: Tensor,
    *,
    cfg: AEConfig | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    device: torch.device | None = None,
    **settings,
) -> tuple[Autoencoder, training.TrainResult]:
    """Train the autoencoder on uint8 photos (N, 3, H, W) with :func:`training.train` (EMA,
    checkpoints, resume): random crops, L1 (+ L1 on the image gradients when ``grad_weight`` > 0) + KL
    (:func:`autoencoder.ae_loss`), starting from PCA of the patches (:func:`autoencoder.pca_init`), AdamW
    with a cosine learning rate. Returns ``(EMA model, result)``; the latent statistics are not yet
    measured (:func:`autoencoder.measure_latent_stats`). ``device``: where it trains (default
    :func:`config.device`: a GPU when there is one, ``COURSE_DEVICE`` to choose)."""
    from . import config

    cfg = cfg or AEConfig()
    recipe = autoencoder_recipe(cfg, **settings)
    extra = recipe.extra
    torch.manual_seed(recipe.seed)
    model = Autoencoder(cfg)
    pca_init(model, images[:: max(1, images.shape[0] // 400)], seed=recipe.seed)  # start from the best linear code
    model.to(device or config.device())
    batches = CropBatches(images, recipe.batch_size, crop=extra["crop"], seed=recipe.seed)
    if run_dir is not None:
        last = training.last_checkpoint(run_dir)
        if last is not None:
            batches.set_epoch(training.read_record(last)["epoch"])

    def loss_fn(m, batch, generator=None):
        return ae_loss(m, batch, generator=generator, kl_weight=extra["kl_weight"], grad_weight=extra["grad_weight"])

    result = training.train(
        model,
        loss_fn,
        batches,
        **recipe.train_kwargs(),
        run_dir=run_dir,
        progress=progress,
        recipe=recipe.to_dict(),
    )
    return result.final_model.eval(), result


def load_autoencoder(path: str | Path = "photo-ae", *, device: torch.device | None = None) -> tuple[Autoencoder, dict]:
    """A shipped or trained autoencoder (hash checked) as ``(model in eval mode, record)``; a bare
    name is looked for among the checkpoints (:func:`course_utils.config.find_checkpoint`)."""
    from . import checkpoints, config

    path = _checkpoint_file(path)
    record = checkpoints.read_record(path)
    extra = (record.get("recipe") or {}).get("extra") or {}
    if "autoencoder" not in extra:
        raise BadRequest(f"{path} is not a photo autoencoder (its record has no autoencoder configuration)")
    model = Autoencoder(AEConfig.from_dict(extra["autoencoder"]))
    checkpoints.load_weights(model, path)
    return model.to(device or config.device()).eval().requires_grad_(False), record


def _checkpoint_file(path: str | Path) -> Path:
    from . import config

    path = Path(path)
    if path.is_file():
        return path
    name = path.name if path.suffix == ".safetensors" else f"{path.name}.safetensors"
    found = config.find_checkpoint(name)
    if not found.is_file():
        stem = name.removesuffix(".safetensors")
        how = f"; train it with: python -m course_utils train {stem}" if stem in ("photo-ae", "photo-latent") else ""
        raise FileNotFoundError(f"no checkpoint {name} in {', '.join(map(str, config.checkpoint_dirs()))}{how}")
    return found


# ---------------------------------------------------------------------------------------------
# Latents, cached once: a few augmented variants per photo, each with the features of its own pixels


@dataclass
class LatentSet:
    """Cached latents ``(M, C, h, w)`` (float16, standardised) with the 32 features ``(M, 32)`` measured
    on the 256 px pixels each latent was encoded from; ``photo`` and ``variant`` say which."""

    latents: Tensor
    features: Tensor
    photo: Tensor
    variant: Tensor

    def __len__(self) -> int:
        return self.latents.shape[0]

    def stats(self) -> tuple[Tensor, Tensor]:
        return self.features.mean(0), self.features.std(0)


CROP_FROM = 4  # variants from here on are zoomed crops
CROP_SIDE = (0.6, 0.9)  # a crop's side as a fraction of the photo's


def variant_pixels(image: Tensor, variant: int, key: str, *, seed: int = 0) -> Tensor:
    """Variant ``variant`` of one uint8 photo (3, H, W) as float (3, H, W) in [0, 1]: 0 as it is,
    1 flipped left-right, 2 and 3 the course's colour jitter (and a coin-flip), 4 and up a zoomed
    crop (a square of side ``CROP_SIDE`` of the photo's, at a random place, coin-flipped, resized
    back to H x W), so outlines and holes change with the features measured on them. The random
    draws come from (seed, the photo's content ``key``, variant): a variant never depends on the others."""
    x = image.float()[None] / 255.0
    if variant == 0:
        return x[0]
    if variant == 1:
        return x[0].flip(-1)
    g = torch.Generator().manual_seed(
        int.from_bytes(hashlib.sha256(f"{seed}:{key}:{variant}".encode()).digest()[:8], "big")
    )
    if variant < CROP_FROM:
        return photo_data.augment(x, photo_data.DEFAULT_AUGMENT, g)[0]
    H, W = x.shape[-2:]
    lo, hi = CROP_SIDE
    side = lo + (hi - lo) * torch.rand((), generator=g).item()
    h, w = max(1, round(side * H)), max(1, round(side * W))
    top = int(torch.randint(0, H - h + 1, (), generator=g))
    left = int(torch.randint(0, W - w + 1, (), generator=g))
    crop = x[..., top : top + h, left : left + w]
    if torch.rand((), generator=g).item() < 0.5:
        crop = crop.flip(-1)
    return F.interpolate(crop, size=(H, W), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def _chunk_key(ae_digest: str, keys: Sequence[str], variants: int, seed: int) -> str:
    crops = f":crops {CROP_SIDE}" if variants > CROP_FROM else ""  # chunks of up to 4 variants never hold crops
    h = hashlib.sha256(f"latents-v1:{ae_digest}:{variants}:{seed}:{photo_data.DEFAULT_AUGMENT}{crops}".encode())
    for k in keys:
        h.update(k.encode())
    return h.hexdigest()[:24]


@torch.no_grad()
def latent_cache(
    ae: Autoencoder,
    images: Tensor,
    *,
    variants: int = 4,
    seed: int = 0,
    folder: str | Path | None = None,
    chunk: int = 128,
    progress: bool = True,
) -> LatentSet:
    """Encode ``variants`` variants (:func:`variant_pixels`) of every uint8 photo (N, 3, H, W) and
    measure each variant's 32 features on its own pixels.

    Cached under ``folder`` (default ``<cache>/latents``) in chunks of ``chunk`` photos, each one
    file written atomically under the folder's lock and named by a hash of the autoencoder's
    weights, the photos' contents (SHA-256 of their pixels), the variants and the seed: a retrained
    autoencoder or a changed photo makes new chunks, and an interrupted run keeps the finished ones.
    """
    from . import checkpoints, config, features, files, predictions
    from .fewstep import weights_digest

    if int(variants) < 1 or images.dim() != 4 or images.dtype != torch.uint8:
        raise BadRequest(
            f"need variants >= 1 and uint8 photos (N, 3, H, W), got {variants} and {images.dtype} {tuple(images.shape)}"
        )
    folder = Path(folder) if folder is not None else config.cache_dir() / "latents"
    folder.mkdir(parents=True, exist_ok=True)
    digest = weights_digest(ae)
    device = predictions.device_of(ae)
    keys = [hashlib.sha256(img.numpy().tobytes()).hexdigest() for img in images]
    parts = []
    from tqdm.auto import tqdm

    with (
        files.lock(folder, what="latent cache"),
        tqdm(total=len(keys), desc="latents", unit="photo", disable=not progress) as bar,
    ):
        for start in range(0, len(keys), chunk):
            idx = range(start, min(start + chunk, len(keys)))
            path = folder / f"{_chunk_key(digest, [keys[i] for i in idx], variants, seed)}.safetensors"
            if path.is_file():
                try:
                    tensors, _ = checkpoints.load_checkpoint(path)
                    parts.append(
                        (tensors["latents"], tensors["features"], tensors["photo"] + start, tensors["variant"])
                    )
                    bar.update(len(idx))
                    continue
                except (checkpoints.CheckpointError, KeyError, OSError):
                    pass  # damaged: made again
            lat, feats, photo, variant = [], [], [], []
            for v in range(variants):
                x = torch.stack([variant_pixels(images[i], v, keys[i], seed=seed) for i in idx]) * 2.0 - 1.0
                feats.append(features.extract_batch(x))
                lat.append(torch.cat([ae.encode(x[j : j + 16].to(device)).cpu() for j in range(0, len(idx), 16)]))
                photo.append(torch.arange(len(idx)))
                variant.append(torch.full((len(idx),), v))
            tensors = dict(
                latents=torch.cat(lat).half(),
                features=torch.cat(feats).float(),
                photo=torch.cat(photo),
                variant=torch.cat(variant),
            )
            checkpoints.save_checkpoint(
                path, tensors, dict(autoencoder=digest, variants=variants, seed=seed, photos=len(idx))
            )
            parts.append((tensors["latents"], tensors["features"], tensors["photo"] + start, tensors["variant"]))
            bar.update(len(idx))
    return LatentSet(*(torch.cat(p) for p in zip(*parts)))


# ---------------------------------------------------------------------------------------------
# The latent model: the feature-conditioned UNet on latents, with the autoencoder to decode


class LatentDiffusion(nn.Module):
    """The feature-conditioned UNet on latents and the autoencoder, as one photo model.

    ``model(x, t, cond)`` is the UNet on latents (B, C, 32, 32), so the course's samplers and
    guidance run on it unchanged; :func:`course_utils.photos.generate` sees ``autoencoder`` and
    decodes what it sampled, so every photo function (``generate_like``, ``feature_sweep``,
    ``measure_fidelity``, the explorer) draws 256x256 photos from it.

    ``x0_clip``: the sampler clips its estimate of the clean latent to [-x0_clip, x0_clip] at every
    step, as pixel models clip to [-1, 1]. On the cosine schedule alpha is nearly 0 at t = 1, so the
    first steps divide the network's small errors by a tiny alpha; without a bound the latents blow
    up (to a standard deviation in the thousands), with one they stay near the data's scale."""

    def __init__(self, unet: nn.Module, autoencoder: Autoencoder, *, x0_clip: float = X0_CLIP):
        super().__init__()
        self.unet = unet
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.cfg = unet.cfg
        self.prediction = getattr(unet, "prediction", "eps")
        self.x0_clip = float(x0_clip)  # DDIM clips x0_hat to [-x0_clip, x0_clip] (see X0_CLIP)

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        return self.unet(x, t, cond)

    @property
    def cond_mean(self) -> Tensor:
        return self.unet.cond_mean

    @property
    def cond_std(self) -> Tensor:
        return self.unet.cond_std

    @property
    def image_size(self) -> int:
        """Side of the images it draws: the latent's side times the autoencoder's factor."""
        return self.cfg.image_size * self.autoencoder.cfg.factor


def latent_model_config(latent_channels: int, latent_size: int = 32, **kw):
    """The latent UNet: the course's photo UNet (:meth:`UNetConfig.photo_small`) on C channels."""
    from .unet import UNetConfig

    return UNetConfig.photo_small(latent_size, in_channels=latent_channels, **kw)


LATENT_DEFAULTS = dict(epochs=5, batch_size=32, lr=3e-4, p_uncond=0.1, ema_decay=0.998, seed=0)


def train_latent_model(
    cache: LatentSet,
    *,
    autoencoder_record: dict | None = None,
    cfg=None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    extra: dict | None = None,
    snr_gamma: float | None = None,
    device: torch.device | None = None,
    **settings,
) -> tuple[nn.Module, training.TrainResult, Recipe]:
    """Train the latent UNet on ``cache`` (DDPM epsilon loss, cosine T = 1000, condition dropout for
    CFG) with the course's one loop (:func:`training.train`: EMA, checkpoints, resume). Returns
    ``(EMA UNet, result, recipe)``; wrap the UNet with :class:`LatentDiffusion` to draw photos.
    ``snr_gamma``: Min-SNR weighting of the loss (:func:`losses.ddpm_loss`), kept in the record.
    ``device``: where it trains (default :func:`config.device`: a GPU when there is one,
    ``COURSE_DEVICE`` to choose); the cached latents stay on the CPU, a batch at a time moves."""
    import functools

    from . import config, features, losses, photos, predictions
    from .unet import build_unet

    values = dict(LATENT_DEFAULTS, **settings)
    cfg = cfg or latent_model_config(cache.latents.shape[1], cache.latents.shape[-1])
    mean, std = cache.stats()
    ae_rec = autoencoder_record or {}
    recipe = Recipe(
        name="photo-latent",
        about="feature-conditioned latent diffusion (eps, cosine T = 1000) on the autoencoder's "
        f"{cfg.image_size}x{cfg.image_size}x{cfg.in_channels} latents of 256 px photos; DDIM 50 steps with CFG",
        objective="ddpm",
        unet=cfg,
        schedule="cosine",
        T=photos.T_STEPS,
        lr_schedule="cosine",
        optimizer="adamw",
        sample_steps=50,
        extra=dict(
            feature_names=list(features.FEATURE_NAMES),
            feature_version=features.FEATURE_VERSION,
            feature_mean=[round(float(v), 6) for v in mean],
            feature_std=[round(float(v), 6) for v in std],
            autoencoder=ae_rec.get("file", "photo-ae.safetensors"),
            autoencoder_sha256=ae_rec.get("sha256"),
            latents=len(cache),
            **({"snr_gamma": snr_gamma} if snr_gamma is not None else {}),
            **(extra or {}),
        ),
        **values,
    )
    torch.manual_seed(recipe.seed)
    unet = predictions.with_prediction(build_unet(cfg), photos.PREDICTION)
    unet.set_condition_stats(mean, std)
    unet.to(device or config.device())
    loss_fn = functools.partial(
        losses.ddpm_loss, schedule=photos.schedule(), p_uncond=recipe.p_uncond, snr_gamma=snr_gamma
    )
    result = training.train(
        unet,
        loss_fn,
        (cache.latents.float(), cache.features),
        **recipe.train_kwargs(),
        run_dir=run_dir,
        progress=progress,
        recipe=recipe.to_dict(),
    )
    return result.final_model.eval(), result, recipe


def load_latent_model(
    path: str | Path = "photo-latent", *, autoencoder: str | Path | None = None, device: torch.device | None = None
) -> tuple[LatentDiffusion, dict]:
    """The latent photo model and its autoencoder as one :class:`LatentDiffusion` (both hash
    checked), with the UNet's record. The autoencoder named in the record is used unless
    ``autoencoder`` names another; a mismatch with the recorded SHA-256 is refused."""
    from . import photos

    path = _checkpoint_file(path)
    unet, record = photos.load_photo_model(path, device=device)
    extra = record["recipe"]["extra"]
    ae_path = _checkpoint_file(autoencoder or extra.get("autoencoder", "photo-ae.safetensors"))
    ae, ae_record = load_autoencoder(ae_path, device=device)
    want = extra.get("autoencoder_sha256")
    if want and ae_record.get("sha256") != want:
        raise BadRequest(
            f"{path.name} was trained on the latents of the autoencoder with SHA-256 {want[:12]}..., "
            f"but {ae_path.name} has {str(ae_record.get('sha256'))[:12]}...: retrain the latent model "
            "(python -m course_utils train photo-latent) or use the autoencoder it was trained with"
        )
    return LatentDiffusion(unet, ae, x0_clip=extra.get("x0_clip", X0_CLIP)).eval(), record


# ---------------------------------------------------------------------------------------------
# The shipped pair: built by one command each (python -m course_utils train photo-ae | photo-latent)

AE_CONFIG = AEConfig(latent_channels=8)  # the shipped autoencoder's layout
AE_SETTINGS = dict(epochs=8)  # and its training settings beyond AE_DEFAULTS
VARIANTS = 4  # cached variants per training photo: as is, flipped, two colour jitters (--variants 8 adds 4 crops)
LATENT_SETTINGS = dict(epochs=8)  # the latent UNet's settings beyond LATENT_DEFAULTS
LATENT_WIDTH = 48  # the latent UNet's first-level channels (32: 1.6M parameters, 48: 3.7M)
LATENT_SNR_GAMMA = 5.0  # Min-SNR weighting of its loss (benchmarks/latent_min_snr.py; None: the simple loss)
LATENT_HUE_AS_ANGLE = False  # dominant_hue into the network as (cos, sin) (benchmarks/latent_hue_angle.py)
LATENT_SCALE_SHIFT = False  # the embedding scales the ResBlocks' GroupNorm too (benchmarks/latent_scale_shift.py)


def _photos_and_split(progress: bool):
    ps = photo_data.load_photos(size=256, progress=progress)
    train_idx, held_idx = split_indices(ps.paths, ps.folder)
    return ps, train_idx, held_idx


def bicubic_from(images: Tensor, small: int = 32) -> Tensor:
    """The trivial baseline: uint8 photos (N, 3, S, S) shrunk to ``small`` px (area average) and
    enlarged back with bicubic interpolation, as float (N, 3, S, S) in [-1, 1]."""
    import cv2
    import numpy as np

    out = []
    for img in images.permute(0, 2, 3, 1).numpy():
        S = img.shape[0]
        thumb = cv2.resize(img.astype(np.float32) / 255.0, (small, small), interpolation=cv2.INTER_AREA)
        out.append(np.clip(cv2.resize(thumb, (S, S), interpolation=cv2.INTER_CUBIC), 0.0, 1.0))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2) * 2.0 - 1.0


@torch.no_grad()
def reconstruct(ae: Autoencoder, images: Tensor, *, batch: int = 16) -> Tensor:
    """Encode (the mean of q(z | x)) and decode uint8 or [-1, 1] images; returns [-1, 1] floats."""
    out = []
    for start in range(0, images.shape[0], batch):
        x = images[start : start + batch]
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x
        out.append(ae.decode(ae.encode(x)))
    return torch.cat(out)


def autoencoder_scores(ae: Autoencoder, images: Tensor, feats: Tensor) -> dict:
    """Held-out numbers of an autoencoder on uint8 photos (N, 3, 256, 256) with their features:
    PSNR / SSIM of the reconstructions and of bicubic-from-32, and per group the feature MAE and
    correlation, reconstruction against original (the ceiling of the latent model's feature
    fidelity) and bicubic-from-32 against original (what a 32 px image keeps of the features)."""
    from . import features, metrics, photos

    x = (images.float() / 255.0).clamp(0, 1)
    rec = (reconstruct(ae, images) + 1) / 2
    bic = (bicubic_from(images) + 1) / 2
    kept = {  # the original's features as the "request", the copy's as the "measured"
        name: photos.feature_fidelity(feats, features.extract_batch(copy * 2 - 1))
        for name, copy in (("", rec), ("_bicubic_from_32", bic))
    }
    return dict(
        photos=int(images.shape[0]),
        psnr=round(float(metrics.psnr(rec, x)), 2),
        ssim=round(float(metrics.ssim(rec, x)), 3),
        psnr_bicubic_from_32=round(float(metrics.psnr(bic, x)), 2),
        ssim_bicubic_from_32=round(float(metrics.ssim(bic, x)), 3),
        **{
            f"feature_{score}{name}": {group: round(s[score], 4) for group, s in fidelity.items()}
            for name, fidelity in kept.items()
            for score in ("mae", "corr")
        },
    )


def build_autoencoder(
    *,
    out: str | Path | None = None,
    run_dir: str | Path | None = None,
    epochs: int | None = None,
    progress: bool = True,
) -> Path:
    """Train the shipped autoencoder's recipe on the training split (resuming ``run_dir``), measure
    its latent statistics and its held-out scores, export it (float16) with its record."""
    import time

    from . import checkpoints, config

    ps, train_idx, held_idx = _photos_and_split(progress)
    settings = dict(AE_SETTINGS, **({"epochs": epochs} if epochs else {}))
    run_dir = Path(run_dir) if run_dir is not None else config.runs_dir() / "photo-ae"
    t0 = time.time()
    ae, result = train_autoencoder(ps.images[train_idx], cfg=AE_CONFIG, run_dir=run_dir, progress=progress, **settings)
    shift, scale = measure_latent_stats(ae, ps.images[train_idx])
    scores = autoencoder_scores(ae, ps.images[held_idx], ps.features[held_idx])
    recipe = autoencoder_recipe(AE_CONFIG, **settings)
    seconds = sum(result.epoch_seconds)
    machine = checkpoints.machine_description(ae.latent_scale.device)
    recipe = recipe.replace(
        trained=f"{result.epoch} epochs, {result.step} steps, {seconds:.0f} s of training on {machine}",
        extra=dict(
            recipe.extra,
            latent_shift=[round(float(v), 5) for v in shift],
            latent_scale=[round(float(v), 5) for v in scale],
        ),
    )
    record = dict(
        recipe=recipe.to_dict(),
        epochs=result.epoch,
        steps=result.step,
        epoch_losses=result.epoch_losses,
        epoch_seconds=[round(s, 1) for s in result.epoch_seconds],
        machine=machine,
        split=dict(fraction=HELD_OUT, seed=SPLIT_SEED, train=len(train_idx), held_out=len(held_idx)),
        scores=scores,
        wall_seconds=round(time.time() - t0, 1),
    )
    out = Path(out) if out is not None else config.checkpoint_dir() / "photo-ae.safetensors"
    return checkpoints.export_weights(ae, out, record)


def build_latent_model(
    *,
    out: str | Path | None = None,
    run_dir: str | Path | None = None,
    epochs: int | None = None,
    variants: int | None = None,
    autoencoder: str | Path = "photo-ae",
    progress: bool = True,
    snr_gamma: float | None = LATENT_SNR_GAMMA,
    hue_as_angle: bool = LATENT_HUE_AS_ANGLE,
    scale_shift: bool = LATENT_SCALE_SHIFT,
    seed: int | None = None,
) -> Path:
    """Train the shipped latent UNet's recipe on the cached latents of the training split (resuming
    ``run_dir``) and export it (float16) with its record, which names the autoencoder's SHA-256.
    ``variants``: cached variants per photo (default ``VARIANTS``; see :func:`variant_pixels`);
    ``snr_gamma``: Min-SNR weighting of the loss (default ``LATENT_SNR_GAMMA``; None: the simple loss);
    ``hue_as_angle``: the network sees ``dominant_hue`` as its cosine and sine (``UNetConfig.cond_angles``);
    ``scale_shift``: the time and the features scale and shift every ResBlock's GroupNorm (``UNetConfig.scale_shift``);
    ``seed``: the training seed (the weights' start, the data's order, the loss's times and noise;
    default ``LATENT_DEFAULTS["seed"]``), kept in the recipe."""
    import time

    from . import checkpoints, config, features, photos

    ae, ae_record = load_autoencoder(autoencoder, device=torch.device("cpu"))
    ps, train_idx, held_idx = _photos_and_split(progress)
    t0 = time.time()
    variants = int(variants or VARIANTS)
    cache = latent_cache(ae, ps.images[train_idx], variants=variants, progress=progress)
    cache_seconds = time.time() - t0
    settings = dict(LATENT_SETTINGS, **({"epochs": epochs} if epochs else {}))
    if seed is not None:
        settings["seed"] = int(seed)
    run_dir = Path(run_dir) if run_dir is not None else config.runs_dir() / "photo-latent"
    unet, result, recipe = train_latent_model(
        cache,
        cfg=latent_model_config(
            cache.latents.shape[1],
            cache.latents.shape[-1],
            base_channels=LATENT_WIDTH,
            cond_angles=(features.index("dominant_hue"),) if hue_as_angle else (),
            scale_shift=scale_shift,
        ),
        autoencoder_record=dict(ae_record, file=Path(_checkpoint_file(autoencoder)).name),
        run_dir=run_dir,
        progress=progress,
        extra=dict(variants=variants, split=dict(fraction=HELD_OUT, seed=SPLIT_SEED, train=len(train_idx))),
        snr_gamma=snr_gamma,
        **settings,
    )
    seconds = sum(result.epoch_seconds)
    machine = checkpoints.machine_description(next(unet.parameters()).device)
    recipe = recipe.replace(
        extra=dict(recipe.extra, x0_clip=X0_CLIP),
        trained=f"{result.epoch} epochs over {len(cache)} cached latents ({variants} variants of {len(train_idx)} "
        f"photos, cached in {cache_seconds:.0f} s), {result.step} steps, {seconds:.0f} s of training on {machine}",
    )
    out = Path(out) if out is not None else config.checkpoint_dir() / "photo-latent.safetensors"
    return photos.export(unet, out, result, recipe)  # the photo model's record: config, recipe, losses, machine


def train_main(name: str, argv: list[str] | None = None) -> int:
    """``python -m course_utils train photo-ae | photo-latent [--epochs N] [--out FILE] [--run-dir DIR]``:
    rebuild a shipped half of the latent photo model from its recipe (resuming the run folder);
    ``photo-latent`` also takes ``--variants N``, the cached variants per photo, ``--simple-loss``
    (no Min-SNR weighting: the model shipped before it) and ``--seed S``, the training seed."""
    from .__main__ import _OneLineParser, _positive_int, _seed, _unwritable

    p = _OneLineParser(
        prog=f"python -m course_utils train {name}",
        description=(build_autoencoder if name == "photo-ae" else build_latent_model).__doc__,
    )
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the recipe's epochs")
    if name == "photo-latent":
        p.add_argument(
            "--variants",
            type=_positive_int,
            default=None,
            help=f"cached variants per photo (default {VARIANTS}; 5 and up add zoomed crops)",
        )
        p.add_argument(
            "--simple-loss",
            action="store_true",
            help=f"train on the simple epsilon loss, without the Min-SNR weighting (gamma {LATENT_SNR_GAMMA:g})",
        )
        p.add_argument(
            "--seed",
            type=_seed,
            default=None,
            help=f"training seed: the weights' start, the data's order, the loss's noise (default "
            f"{LATENT_DEFAULTS['seed']}, the shipped model's)",
        )
    p.add_argument(
        "--out", type=Path, default=None, help=f"checkpoint to write (default: the course's {name}.safetensors)"
    )
    p.add_argument("--run-dir", type=Path, default=None, help=f"training run folder, resumed (default: runs/{name})")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for option, folder in (("--out", args.out.parent if args.out else None), ("--run-dir", args.run_dir)):
        problem = _unwritable(folder) if folder is not None else None
        if problem:
            p.error(f"argument {option}: cannot write there ({problem})")
    build = build_autoencoder if name == "photo-ae" else build_latent_model
    more = {}
    if name == "photo-latent":
        more = dict(variants=args.variants, snr_gamma=None if args.simple_loss else LATENT_SNR_GAMMA, seed=args.seed)
    path = build(out=args.out, run_dir=args.run_dir, epochs=args.epochs, progress=not args.no_progress, **more)
    print(f"saved {path}")
    return 0
