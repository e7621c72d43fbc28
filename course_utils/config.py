"""Run-time settings shared by every notebook: fast mode, device, seeding and paths.

Fast mode (``COURSE_FAST=1``) runs exactly the same code as a full run with smaller sizes
(fewer epochs, fewer images, smaller photos), so that the whole course executes in CI on two CPU
cores. Full mode is the default: it is what a student gets.

Paths are found the same way on a laptop, on Colab and in CI:

- the repository root is found by searching upward from the working directory for this
  project's ``pyproject.toml`` (so an installed, non-editable package still finds ``data/``),
  falling back to the folder that holds the package;
- ``COURSE_DATA_DIR``, ``COURSE_CHECKPOINT_DIR`` and ``COURSE_FIGURES_DIR`` override the defaults
  ``<root>/data``, ``<root>/data/checkpoints`` and ``<root>/figures``.
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


def pick(full: T, fast: T) -> T:
    """Return ``fast`` in fast mode and ``full`` otherwise: ``epochs = pick(full=5, fast=1)``."""
    return fast if is_fast() else full


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


def repo_root() -> Path:
    """The course repository: searched upward from the working directory, else beside the package."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        marker = folder / "pyproject.toml"
        if marker.is_file() and _PROJECT_NAME in marker.read_text(errors="ignore"):
            return folder
    return Path(__file__).resolve().parent.parent


def _env_path(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else default


def data_dir() -> Path:
    """Where data sets are looked for first (``COURSE_DATA_DIR``), else ``<root>/data``."""
    return _env_path("COURSE_DATA_DIR", repo_root() / "data")


def project_data_dir() -> Path:
    """The repository's own ``data/`` folder: checkpoints and caches the course writes itself."""
    return repo_root() / "data"


def checkpoint_dir() -> Path:
    """Named course checkpoints: ``COURSE_CHECKPOINT_DIR`` or ``<root>/data/checkpoints``."""
    return _env_path("COURSE_CHECKPOINT_DIR", project_data_dir() / "checkpoints")


def cache_dir() -> Path:
    """Caches (downloads, feature tables): ``COURSE_CACHE_DIR`` or ``<root>/data/cache``."""
    return _env_path("COURSE_CACHE_DIR", project_data_dir() / "cache")


def figures_dir() -> Path:
    """Every figure the course saves: ``COURSE_FIGURES_DIR`` or ``<root>/figures``."""
    return _env_path("COURSE_FIGURES_DIR", repo_root() / "figures")


def summary() -> dict[str, str]:
    """What a notebook prints in its first cell: versions, device, mode and paths."""
    return {
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device()),
        "fast mode": str(is_fast()),
        "repo root": str(repo_root()),
        "data dir": str(data_dir()),
        "checkpoints": str(checkpoint_dir()),
        "figures": str(figures_dir()),
    }
