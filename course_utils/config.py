"""Run-time settings shared by every notebook: the size, device, seeding and paths.

Every notebook runs the same code at one of three sizes (:func:`size`):

- ``"fast"`` (``COURSE_FAST=1``): the CI smoke size. Fewer epochs, images and photos, so that the
  whole course executes in CI on two CPU cores; its trained models draw blobs.
- ``"cpu"``: what a student without a CUDA GPU gets. Each notebook runs in at most about 15
  minutes on two cores and the models it trains still draw recognisable digits.
- ``"full"``: the reference recipes, chosen on a CUDA GPU.

``COURSE_SIZE=cpu|full`` overrides the choice by device (``COURSE_FAST=1`` wins over both).

Paths are found the same way on a laptop, on Colab and in CI:

- the repository (a clone) is found by searching upward from the working directory for this
  project's ``pyproject.toml`` (so an installed, non-editable package run from a clone still finds
  ``data/``), else beside the package (an editable install);
- the course home (:func:`home`) is where everything the course writes goes: runs, trained
  checkpoints, caches, figures. ``COURSE_HOME``, else the clone when it is writable, else a
  per-user folder (``$XDG_DATA_HOME/course-utils``, ``~/.local/share/course-utils``, or
  ``%LOCALAPPDATA%\\course-utils`` on Windows); never the installed package's folder;
- ``COURSE_DATA_DIR``, ``COURSE_CHECKPOINT_DIR``, ``COURSE_CACHE_DIR`` and ``COURSE_FIGURES_DIR`` win
  over the home's ``data``, ``data/checkpoints``, ``data/cache`` and ``figures``; runs go to
  ``<home>/runs``;
- checkpoints are read from the checkpoint folder first, then from the ones shipped with the
  course (:func:`find_checkpoint`); they are only ever written to the checkpoint folder.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

_PROJECT_NAME = 'name = "course-utils"'


def is_fast() -> bool:
    """True when ``COURSE_FAST`` is set to 1/true/yes (read each call, so tests can flip it)."""
    return os.environ.get("COURSE_FAST", "0").strip().lower() in {"1", "true", "yes", "on"}


SIZES = ("fast", "cpu", "full")
_UNSET = object()


def size() -> str:
    """The size notebooks run at: ``"fast"``, ``"cpu"`` or ``"full"`` (see the module's notes).

    ``COURSE_FAST=1`` gives ``"fast"``; else ``COURSE_SIZE`` if set; else ``"full"`` when the
    device (:func:`device`) is a CUDA GPU and ``"cpu"`` anywhere else (a CPU, Apple's MPS).
    """
    from .errors import BadRequest

    if is_fast():
        return "fast"
    wanted = os.environ.get("COURSE_SIZE", "").strip().lower()
    if wanted:
        if wanted not in SIZES:
            raise BadRequest(
                f"COURSE_SIZE={wanted!r}: expected one of {', '.join(SIZES)} (or unset, to choose by device)"
            )
        if wanted == "fast":
            raise BadRequest("COURSE_SIZE=fast: set COURSE_FAST=1 for the CI smoke size")
        return wanted
    return "full" if device().type == "cuda" else "cpu"


def pick(full: T, fast: T, cpu=_UNSET) -> T:
    """The value for this size: ``epochs = pick(full=10, fast=1, cpu=3)``.

    ``fast`` at the fast size, ``cpu`` at the CPU size (``full`` when no ``cpu`` is given: that
    setting already fits a CPU), ``full`` otherwise.
    """
    chosen = size()
    if chosen == "fast":
        return fast
    if chosen == "cpu" and cpu is not _UNSET:
        return cpu
    return full


def device(prefer: str | None = None) -> torch.device:
    """The best available device: ``COURSE_DEVICE`` or ``prefer`` if given, else cuda, mps, cpu."""
    name = prefer or os.environ.get("COURSE_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same way.

    Course functions take an explicit generator for their randomness; the global seeds only
    cover what libraries draw on their own (weight initialisation, dropout).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in _loaded_modules()


def _loaded_modules() -> set[str]:
    import sys

    return set(sys.modules)


def _clone_at(folder: Path) -> bool:
    marker = folder / "pyproject.toml"
    return marker.is_file() and _PROJECT_NAME in marker.read_text(errors="ignore")


def _clone_root() -> Path | None:
    """The course repository the code runs from: upward from the working directory, else the
    folder above the package when that is the repository (an editable install); else None."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _clone_at(folder):
            return folder
    beside = Path(__file__).resolve().parent.parent
    return beside if _clone_at(beside) else None


def user_data_dir() -> Path:
    """The per-user course home: ``$XDG_DATA_HOME/course-utils`` (default ``~/.local/share``), or
    ``%LOCALAPPDATA%\\course-utils`` on Windows."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    else:
        base = os.environ.get("XDG_DATA_HOME", "")
        if not Path(base).expanduser().is_absolute():  # unset, empty or relative: the spec's default
            base = str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "course-utils"


def repo_root() -> Path:
    """The course repository when the code runs from a clone; otherwise the course home."""
    clone = _clone_root()
    return clone if clone is not None else _env_path("COURSE_HOME", user_data_dir())


def can_write(folder: Path) -> bool:
    """True when files can be written in ``folder`` (made if missing)."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def home() -> Path:
    """Where the course writes (runs, trained checkpoints, caches, figures): ``COURSE_HOME``, else
    the repository when it is writable, else the per-user folder (:func:`user_data_dir`)."""
    value = os.environ.get("COURSE_HOME")
    if value:
        return Path(value).expanduser()
    root = repo_root()
    return root if can_write(root) else user_data_dir()


def ensure_writable(folder: str | Path, variable: str = "COURSE_HOME") -> Path:
    """Make ``folder`` (and its parents) and return it; a folder that cannot be written raises
    :class:`~course_utils.errors.BadRequest` naming the environment variable that moves it."""
    from .errors import BadRequest

    folder = Path(folder)
    problem = None
    if not can_write(folder):
        problem = "it is not writable"
    else:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            problem = str(err)
    if problem is not None or not folder.is_dir():
        raise BadRequest(f"cannot write in {folder} ({problem or 'not a folder'}); set {variable} to a writable folder")
    return folder


def _env_path(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else default


def data_dir() -> Path:
    """Where data sets are looked for first (``COURSE_DATA_DIR``), else ``<home>/data``."""
    return _env_path("COURSE_DATA_DIR", project_data_dir())


def project_data_dir() -> Path:
    """The home's own ``data/`` folder (a clone's ``data/``): downloads, checkpoints and caches."""
    return home() / "data"


def runs_dir() -> Path:
    """Training runs (per-epoch checkpoints, sample grids): ``<home>/runs``."""
    return home() / "runs"


def checkpoint_dir() -> Path:
    """The checkpoint folder, where trained checkpoints are written and looked for first:
    ``COURSE_CHECKPOINT_DIR`` or ``<home>/data/checkpoints`` (a clone's is where the shipped ones live)."""
    return _env_path("COURSE_CHECKPOINT_DIR", project_data_dir() / "checkpoints")


def _package_checkpoints() -> Path | None:
    """The checkpoints installed with the package (``course_utils/shipped`` in a wheel), if any."""
    folder = Path(__file__).resolve().parent / "shipped"
    return folder if folder.is_dir() else None


def checkpoint_dirs() -> list[Path]:
    """The folders a checkpoint is looked for in, in order: the checkpoint folder, then the shipped
    ones: the package's installed copy and, unless ``COURSE_CHECKPOINT_DIR`` stands in for it, the
    repository's ``data/checkpoints``."""
    folders = [checkpoint_dir(), _package_checkpoints()]
    clone = _clone_root()
    if clone is not None and not os.environ.get("COURSE_CHECKPOINT_DIR"):
        folders.append(clone / "data" / "checkpoints")
    unique: list[Path] = []
    for folder in folders:
        if folder is not None and folder not in unique:
            unique.append(folder)
    return unique


def find_checkpoint(name: str | Path) -> Path:
    """The checkpoint file ``name`` (``"mnist-fm.safetensors"``) from the first folder of
    :func:`checkpoint_dirs` that has it; if none does, where it would be written
    (``checkpoint_dir() / name``). A path in the checkpoint folder that is missing there is looked
    for by name along the same folders; any other path is returned as it is."""
    path = Path(name)
    if len(path.parts) > 1:
        if path.is_file() or path.parent.resolve() != checkpoint_dir().resolve():
            return path
    for folder in checkpoint_dirs():
        if (folder / path.name).is_file():
            return folder / path.name
    return checkpoint_dir() / path.name


def cache_dir() -> Path:
    """Caches (downloads, feature tables): ``COURSE_CACHE_DIR`` or ``<home>/data/cache``."""
    return _env_path("COURSE_CACHE_DIR", project_data_dir() / "cache")


def figures_dir() -> Path:
    """Every figure the course saves: ``COURSE_FIGURES_DIR`` or ``<home>/figures``."""
    return _env_path("COURSE_FIGURES_DIR", home() / "figures")


def summary() -> dict[str, str]:
    """What a notebook prints in its first cell: versions, device, mode and paths."""
    return {
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device()),
        "fast mode": str(is_fast()),
        "size": size(),
        "repo root": str(repo_root()),
        "home": str(home()),
        "runs": str(runs_dir()),
        "data dir": str(data_dir()),
        "checkpoints": str(checkpoint_dir()),
        "figures": str(figures_dir()),
    }
