"""Shared test set-up: find the offline data, keep torch to one thread, use temporary output folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# The CI machine keeps its offline data beside the checkout; a student's machine downloads it.
if "COURSE_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["COURSE_DATA_DIR"] = str(SHARED_DATA)

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the figures a test opened, so a worker running many plotting tests does not pile them up."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def tmp_course_dirs(tmp_path, monkeypatch):
    """Point checkpoints, caches and figures at a temporary folder for one test."""
    for name in ("CHECKPOINT", "CACHE", "FIGURES"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        monkeypatch.setenv(f"COURSE_{name}_DIR", str(folder))
    return tmp_path


def mnist_available() -> bool:
    from course_utils import data

    try:
        data.resolve("mnist", download=False)
        return True
    except FileNotFoundError:
        return False
