"""Data sets: one resolver for all of them, MNIST from its IDX files, photos from any folder.

Where data is looked for, in order (:func:`resolve`):

1. ``$COURSE_DATA_DIR/<name>/`` (CI points this at the offline copy in ``../shared/data``);
2. ``<repo>/data/<name>/``;
3. a download from the data set's mirrors into ``<repo>/data/<name>/``, each file checked
   against its published MD5 before it is kept (written atomically).

Offline with nothing found, :class:`DataNotFoundError` says which files to put where. A file that
is there but truncated or corrupt (an interrupted copy of an MNIST ``.gz``, a broken photo) raises
:class:`UnreadableFile`, a :class:`~course_utils.errors.BadFile` naming the file and the fix; images
that claim more than :data:`MAX_PIXELS` pixels are refused from their header, before decoding.

Pixel scales: the diffusion code works on images in [-1, 1] ("signed"), the scale the
schedules assume (unit-ish variance, zero-centred); plots and metrics use [0, 1] ("unit").
:func:`to_signed` and :func:`to_unit` convert.
"""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import config
from .errors import BadFile, BadRequest
from .files import atomic_write, md5_bytes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Images claiming more pixels than this (in their header) are refused before decoding: 50 million
# covers a 48-megapixel camera, and decoded as float32 RGB it is already 600 MB.
MAX_PIXELS = 50_000_000


class DataNotFoundError(BadFile, FileNotFoundError):
    """A data set is neither on disk nor downloadable; the message says what to put where."""


class UnreadableFile(BadFile, ValueError):
    """A data or image file that is there but cannot be read: truncated, corrupt, not what its name
    says, or an image too large to decode. A :class:`~course_utils.errors.BadFile` that is also a
    ``ValueError``, as these errors were before, so ``except ValueError`` keeps working."""


class MissingFolder(BadFile, NotADirectoryError):
    """A folder of images that does not exist (or is a file)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A data set the resolver knows: its folder name, files (with MD5 of the raw bytes) and mirrors.

    A file may be stored gzip-compressed (``name.gz``); its checksum is that of the
    decompressed bytes, which is the same whatever the mirror did to the compression.
    """

    name: str
    files: dict[str, str]
    mirrors: tuple[str, ...] = ()
    about: str = ""
    compressed: bool = True  # mirrors serve "<file>.gz"


MNIST = DatasetSpec(
    name="mnist",
    files={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    about="MNIST handwritten digits (LeCun, Cortes, Burges): 60k train + 10k test, 28x28",
)

FLOWERS = DatasetSpec(
    name="flower_photos",
    files={},
    about="3,670 flower photographs in five class folders (the TensorFlow 'flower_photos' set), "
    "or any folder of your own photos",
)

DATASETS = {spec.name: spec for spec in (MNIST, FLOWERS)}


def search_roots() -> list[Path]:
    """The folders searched for data sets, in order."""
    roots = [config.data_dir(), config.project_data_dir()]
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def _find_file(folder: Path, filename: str) -> Path | None:
    for candidate in (folder / filename, folder / f"{filename}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path, spec: DatasetSpec) -> bool:
    if not folder.is_dir():
        return False
    if not spec.files:  # a folder data set: present if it holds any image
        return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*"))
    return all(_find_file(folder, f) is not None for f in spec.files)


def resolve(name: str, *, download: bool = True) -> Path:
    """Return the folder that holds data set ``name``, downloading it (verified) if needed."""
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    spec = DATASETS[name]
    for root in search_roots():
        if _complete(root / name, spec):
            return root / name
    target = config.project_data_dir() / name
    errors: list[str] = []
    if download and spec.mirrors:
        try:
            _download(spec, target)
            return target
        except (OSError, urllib.error.URLError, ValueError) as err:
            errors.append(str(err))
    raise DataNotFoundError(_missing_message(spec, errors))


def _missing_message(spec: DatasetSpec, errors: list[str]) -> str:
    places = "\n".join(f"  - {root / spec.name}/" for root in search_roots())
    wanted = (
        "\n".join(f"  - {f}.gz (or {f})" for f in spec.files)
        if spec.files
        else "  - image files (jpg/png), in sub-folders if you like"
    )
    why = f"\nDownload failed: {'; '.join(errors)}" if errors else ""
    return (
        f"Data set '{spec.name}' ({spec.about}) was not found.\n"
        f"Put these files:\n{wanted}\ninto one of:\n{places}\n"
        "or set COURSE_DATA_DIR to a folder that has a "
        f"'{spec.name}/' sub-folder (CI uses ../shared/data).{why}"
    )


def _download(spec: DatasetSpec, target: Path, timeout: float = 30.0) -> None:
    for filename, md5 in spec.files.items():
        if _find_file(target, filename) is not None:
            continue
        last_error: Exception | None = None
        for mirror in spec.mirrors:
            url = f"{mirror}{filename}.gz" if spec.compressed else f"{mirror}{filename}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
                try:
                    raw = gzip.decompress(payload) if spec.compressed else payload
                except (OSError, EOFError, zlib.error) as err:
                    raise ValueError(f"{url} did not arrive whole ({err})") from err
                if md5_bytes(raw) != md5:
                    raise ValueError(f"checksum mismatch for {url}")
                atomic_write(target / (f"{filename}.gz" if spec.compressed else filename), payload)
                last_error = None
                break
            except (OSError, urllib.error.URLError, ValueError) as err:
                last_error = err
        if last_error is not None:
            raise last_error


def verify(name: str) -> dict[str, bool]:
    """Check every file of a resolved data set against its MD5: ``{filename: ok}`` (a truncated or
    unreadable file is not ok)."""
    spec = DATASETS[name]
    folder = resolve(name, download=False)
    result = {}
    for f, md5 in spec.files.items():
        try:
            result[f] = md5_bytes(_read_bytes(_find_file(folder, f))) == md5
        except BadFile:
            result[f] = False
    return result


def _damaged(path: Path, what: str) -> UnreadableFile:
    """The error for a data file that is there but unreadable: it names the file and the fix."""
    return UnreadableFile(
        f"{path} {what}: delete it so that it is downloaded again, or check COURSE_DATA_DIR "
        f"(now {config.data_dir()}) points at a complete copy"
    )


def _read_bytes(path: Path | None) -> bytes:
    if path is None:
        raise DataNotFoundError("missing file")
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise _damaged(path, f"is truncated or not a valid gzip file ({err})") from err
    except OSError as err:
        raise _damaged(path, f"cannot be read ({err})") from err


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (MNIST's format): a magic number with the dtype and rank, then dims.

    A truncated, corrupt or non-IDX file (compressed or not) raises :class:`UnreadableFile`, a
    :class:`~course_utils.errors.BadFile` naming it."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise _damaged(path, "is not an IDX file (its first bytes are not an IDX magic number)")
    dtype, rank = _IDX_DTYPES[raw[2]], raw[3]
    if len(raw) < 4 + 4 * rank:
        raise _damaged(path, f"is truncated: {len(raw)} bytes, shorter than its own header")
    dims = np.frombuffer(raw, dtype=">u4", count=rank, offset=4).astype(np.int64)
    expected = int(np.prod(dims)) * np.dtype(dtype).itemsize
    found = len(raw) - 4 - 4 * rank
    if found != expected:
        raise _damaged(path, f"is truncated or corrupt: its header promises {expected} bytes of values, found {found}")
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * rank)
    return data.reshape(tuple(int(d) for d in dims))


@lru_cache(maxsize=4)
def _mnist_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    folder = resolve("mnist")
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(_find_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_file(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.shape[0] != labels.shape[0]:
        raise _damaged(
            _find_file(folder, f"{prefix}-labels-idx1-ubyte"),
            f"holds {labels.shape[0]} labels for {images.shape[0]} images (one of the two files is damaged)",
        )
    return images, labels


def load_mnist(split: str = "train", *, scale: str = "signed", limit: int | None = None) -> tuple[Tensor, Tensor]:
    """MNIST digits as ``(images, labels)``: images (N, 1, 28, 28) float32, labels (N,) int64.

    ``scale="signed"`` maps pixels to [-1, 1] (what the diffusion schedules expect);
    ``scale="unit"`` keeps [0, 1] (the single-step denoiser of notebook 03, plots, metrics).
    ``limit`` keeps the first N examples (fast mode; a whole number >= 1). A truncated or corrupt
    file raises :class:`UnreadableFile` naming it.
    """
    if split not in ("train", "test"):
        raise BadRequest(f"split must be 'train' or 'test', not {split!r}")
    if scale not in ("signed", "unit"):
        raise BadRequest(f"scale must be 'signed' or 'unit', not {scale!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise BadRequest(f"limit must be a whole number >= 1 (or None for all), got {limit!r}")
    images, labels = _mnist_arrays(split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)  # (N, 1, 28, 28)
    if scale == "signed":
        x = to_signed(x)
    return x, torch.from_numpy(labels.astype(np.int64))


def to_signed(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (clamped, ready to plot or score)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def list_images(folder: str | Path) -> list[Path]:
    """Every image file below ``folder`` (by suffix), sorted, so runs see the same order.

    Only names are listed (nothing is decoded): a broken file is reported by whoever reads it
    (:func:`load_image`), and folder readers skip it. A missing folder raises :class:`MissingFolder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFolder(f"{folder} is not a folder{' (it is a file)' if folder.is_file() else ''}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _sixteen_bit_colour(img) -> bool:
    """True for a 16-bit-per-channel colour image, which Pillow would cut to 8 bits."""
    if img.mode not in ("RGB", "RGBA"):
        return False
    return any("16" in str(getattr(tile, "args", tile[-1] if isinstance(tile, tuple) else "")) for tile in img.tile)


def _read_sixteen_bit_colour(path: Path) -> np.ndarray | None:
    """A 16-bit colour file at full depth, RGB float32 in [0, 1] (alpha on white); None if OpenCV cannot."""
    import cv2

    arr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    x = arr.astype(np.float32) / 65535.0
    rgb = x[..., 2::-1]  # BGR(A) -> RGB
    if x.shape[2] == 4:
        alpha = x[..., 3:]
        rgb = rgb * alpha + (1.0 - alpha)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def load_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as an RGB float32 array in [0, 1], shape (H, W, 3).

    Any mode Pillow reads is accepted (gray, palette, RGBA composited on white). The scale follows
    the file's bit depth: 8-bit files divide by 255, 16-bit ones (gray or colour) by 65535, so a
    16-bit image reads the same as its 8-bit version to within 1/255 (as
    :func:`course_utils.features.to_rgb` reads ``uint16`` arrays).

    The size in the file's header is checked before anything is decoded: more than ``max_pixels``
    (default :data:`MAX_PIXELS`) raises :class:`UnreadableFile`, as does a missing, truncated or
    corrupt file; the message names the file. (:class:`UnreadableFile` is a ``BadFile`` and a
    ``ValueError``.)
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            img = Image.open(path)
        with img:
            width, height = img.size
            if width * height > limit:
                raise UnreadableFile(
                    f"cannot read image {path}: its header claims {width}x{height} = {width * height:,} pixels, "
                    f"more than the {limit:,} allowed (data.MAX_PIXELS); it was not decoded. Shrink it, or "
                    "remove it from the folder"
                )
            if _sixteen_bit_colour(img):
                arr = _read_sixteen_bit_colour(path)
                if arr is not None:
                    return arr
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit gray: always 0..65535
                arr = np.asarray(img, dtype=np.float32) / 65535.0
                return np.repeat(arr[..., None], 3, axis=2).clip(0, 1)
            if img.mode == "I":  # 32-bit integer gray: 8- or 16-bit values, read by their range
                arr = np.asarray(img, dtype=np.float32)
                arr = arr / (65535.0 if arr.max() > 255 else 255.0)
                return np.repeat(arr[..., None], 3, axis=2).clip(0, 1)
            if img.mode in ("RGBA", "LA", "P", "PA", "La", "RGBa"):  # alpha onto white, in float like to_rgb
                rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
                alpha = rgba[..., 3:]
                return np.ascontiguousarray(rgba[..., :3] * alpha + (1.0 - alpha), dtype=np.float32)
            arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except Image.DecompressionBombError as err:
        raise UnreadableFile(
            f"cannot read image {path}: {str(err).rstrip('.')}; it was not decoded. "
            "Shrink it, or remove it from the folder"
        ) from err
    except FileNotFoundError as err:
        raise UnreadableFile(f"cannot read image {path}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, MemoryError) as err:
        raise UnreadableFile(f"cannot read image {path}: {err}") from err
    return arr


def sample_photo(name: str = "astronaut", size: int | None = None) -> np.ndarray:
    """A real photograph shipped with scikit-image, RGB float32 in [0, 1], optionally resized square."""
    import skimage.data
    from skimage.transform import resize

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32) / 255.0
    if size is not None:
        h, w = img.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = resize(img[top : top + side, left : left + side], (size, size), anti_aliasing=True)
    return img.astype(np.float32)


def image_to_tensor(img: np.ndarray) -> Tensor:
    """(H, W, C) array in [0, 1] -> (1, C, H, W) tensor in [-1, 1]."""
    return to_signed(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float())


def tensor_to_image(x: Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) tensor in [-1, 1] -> (H, W, C) array in [0, 1]."""
    if x.dim() == 4:
        x = x[0]
    return to_unit(x.detach().cpu()).permute(1, 2, 0).numpy()
