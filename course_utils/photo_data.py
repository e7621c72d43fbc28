"""Photos for the feature-conditioned model: crops at the model size with the features of exactly
those pixels, augmentation, mini-batches (also split over DDP ranks) and condition checks.

::

    ps = load_photos(size=64)              # (N, 3, 64, 64) uint8 crops and their (N, 32) features
    for x0, feats in PhotoBatches(ps, 16, augment=Augment(), seed=0):
        ...                                # x0 in [-1, 1]; feats measured again after augmentation

Condition and pixels must agree: the features of a training pair are those of the image the model
sees, centre-cropped and resized to the model size, and recomputed after every augmentation (flip,
colour jitter). The crops are cached as PNG files under ``<cache>/photos/`` and their features in
that folder's ``features.npz``; both are keyed by content, never by modification time: the folder's
``crops.json`` maps each photo to the SHA-256 of its bytes, the crop size and the SHA-256 of its
crop, and a crop is made again when any of them differs. The model itself (sampling, training,
loading) is in :mod:`course_utils.photos`, which re-exports every name defined here.
"""

from __future__ import annotations

import hashlib
import json
import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from . import config, data, features, training
from .errors import BadRequest
from .files import atomic_path, atomic_write, lock, sha256_file
from .samplers import check_count

__all__ = [
    "centre_crop_resize",
    "PhotoSet",
    "load_photos",
    "Augment",
    "DEFAULT_AUGMENT",
    "augment",
    "PhotoBatches",
    "check_features",
]


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


CROP_INDEX = "crops.json"  # in each prepared folder: photo -> hash of its bytes, crop size, hash of its crop


def _write_png(path: Path, img: np.ndarray) -> str:
    """Write the crop atomically; return the SHA-256 of the PNG's bytes."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path}")
    payload = encoded.tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def _read_crop_index(path: Path) -> dict[str, dict]:
    """{photo's path relative to its folder: {"sha256", "size", "crop_sha256"}}; unreadable: empty
    (every crop is then made again)."""
    try:
        crops = json.loads(path.read_text())["crops"]
        return crops if isinstance(crops, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _crop_is_current(entry: dict | None, key: str, size: int, target: Path) -> bool:
    if not isinstance(entry, dict) or entry.get("sha256") != key or entry.get("size") != size:
        return False
    return target.is_file() and sha256_file(target) == entry.get("crop_sha256")


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

    The crops are cached as PNG files under ``<cache>/photos/`` (made again when the photo's bytes
    change: ``crops.json`` keeps the hash of each photo and of its crop), and their features by
    :func:`features.extract_folder` in that folder's ``features.npz``, so a second call reads both
    back. While it adds crops it holds the folder's lock (:func:`course_utils.files.lock`; under
    torchrun rank 0 alone, which should fill the cache before the other ranks read it). Corrupt
    files are skipped and listed in ``failures``.
    """
    if check_count(size, "size") < 8:
        raise BadRequest(f"size: photos need a size of at least 8 pixels, got {size}")
    if limit is not None:
        check_count(limit, "limit")
    if workers is not None:
        check_count(workers, "workers")
    folder = Path(folder) if folder is not None else data.resolve("flower_photos")
    sources = data.list_images(folder)[:limit]
    if not sources:
        raise ValueError(f"no images found below {folder}")
    prepared = _prepared_folder(folder, size)
    failures: list[tuple[Path, str]] = []
    targets: list[tuple[Path, Path]] = []
    from tqdm.auto import tqdm

    index = _read_crop_index(prepared / CROP_INDEX)
    made: dict[str, dict] = {}
    with ExitStack() as held:
        for src in tqdm(sources, desc=f"photos {size}px", unit="img", disable=not progress, leave=False):
            name = src.relative_to(folder).as_posix()
            target = prepared / f"{name}.png"  # a.jpg -> a.jpg.png: a.jpg and a.png stay apart
            try:
                key = sha256_file(src)
            except OSError as err:
                failures.append((src, str(err)))
                continue
            if not _crop_is_current(index.get(name), key, size, target):
                try:
                    img = centre_crop_resize(data.load_image(src), size)
                except ValueError as err:
                    failures.append((src, str(err)))
                    continue
                if not made and training.rank_and_world()[0] == 0:  # the first crop to write: own the folder
                    prepared.mkdir(parents=True, exist_ok=True)
                    held.enter_context(lock(prepared, what="photo cache"))
                crop_key = _write_png(target, np.round(img * 255).astype(np.uint8))
                made[name] = {"sha256": key, "size": size, "crop_sha256": crop_key}
            targets.append((src, target))
        if made:  # entries written meanwhile by another rank or an earlier run are kept
            crops = {**_read_crop_index(prepared / CROP_INDEX), **made}
            atomic_write(prepared / CROP_INDEX, json.dumps({"version": 1, "crops": crops}, indent=0, sort_keys=True))
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


DEFAULT_AUGMENT = Augment()  # what training uses unless told otherwise


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
    :func:`course_utils.photos.train_photo_model` does so when it resumes). With ``world_size > 1`` (PyTorch DDP) rank r
    takes every world_size-th photo of the shuffled order, so the ranks split each epoch.
    """

    def __init__(
        self,
        photos: PhotoSet,
        batch_size: int,
        *,
        augment: Augment | None = DEFAULT_AUGMENT,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1 or not 0 <= rank < world_size:
            raise BadRequest(
                f"need batch_size >= 1 and 0 <= rank < world_size, got batch_size={batch_size}, "
                f"rank={rank}, world_size={world_size}"
            )
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

    Raises :class:`~course_utils.errors.BadRequest` (a ``ValueError``) for the wrong length, NaN or
    infinite values, or values outside [0, 1] (every feature is normalised to [0, 1]; see
    ``features.FEATURE_NAMES`` for their order). ``n`` (a whole number >= 1) repeats a single
    vector n times.
    """
    if n is not None:
        check_count(n, "n")
    f = torch.as_tensor(np.asarray(values, dtype=np.float32) if not torch.is_tensor(values) else values)
    f = f.detach().float().cpu()
    if f.dim() == 1:
        f = f[None]
    if f.dim() != 2 or f.shape[1] != features.NUM_FEATURES:
        raise BadRequest(
            f"a feature vector has {features.NUM_FEATURES} values (COLOR 8, LIGHTING 6, MATERIAL 5, SHAPE 7, "
            f"TOPOLOGY 6), got shape {tuple(f.shape)}"
        )
    if not torch.isfinite(f).all():
        bad = sorted({features.FEATURE_NAMES[j] for j in torch.nonzero(~torch.isfinite(f))[:, 1].tolist()})
        raise BadRequest(f"feature values must be finite numbers; NaN or infinite in: {', '.join(bad)}")
    outside = (f < 0) | (f > 1)
    if outside.any():
        bad = sorted({features.FEATURE_NAMES[j] for j in torch.nonzero(outside)[:, 1].tolist()})
        raise BadRequest(
            f"features lie in [0, 1]; out of range: {', '.join(bad)} "
            f"(min {f.min().item():.3g}, max {f.max().item():.3g})"
        )
    if n is not None:
        if f.shape[0] == 1:
            f = f.expand(n, -1)
        elif f.shape[0] != n:
            raise BadRequest(f"asked for {n} images but gave {f.shape[0]} feature vectors")
    return f.contiguous()
