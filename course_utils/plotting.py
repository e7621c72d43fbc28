"""Figures: image grids, noising strips, loss curves, and ``save_figure`` into one folder.

Images may be tensors (B, C, H, W) / (C, H, W) or arrays (H, W[, C]); ``value_range`` says what
black and white are: (-1, 1) for the course's signed images (the default), (0, 1) for unit ones.
Every function returns the matplotlib figure, so a notebook can save it with ``save_figure``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import config

Range = tuple[float, float]


def to_numpy_image(img, value_range: Range = (-1.0, 1.0)) -> np.ndarray:
    """One image -> (H, W) or (H, W, 3) float array in [0, 1] for ``imshow``."""
    if torch.is_tensor(img):
        img = img.detach().float().cpu()
        if img.dim() == 4:
            if img.shape[0] != 1:
                raise ValueError("pass one image, or use image_grid for a batch")
            img = img[0]
        img = img.permute(1, 2, 0).numpy() if img.dim() == 3 else img.numpy()
    img = np.asarray(img, dtype=np.float32)
    lo, hi = value_range
    img = np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return img


def show_images(
    images,
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    value_range: Range = (-1.0, 1.0),
    size: float = 1.6,
    suptitle: str | None = None,
):
    """A grid of images with optional titles; returns the figure."""
    images = list(images)
    if not images:
        raise ValueError("no images to show")
    n = len(images)
    ncols = ncols or min(n, 10)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        arr = to_numpy_image(img, value_range)
        ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def image_grid(batch: torch.Tensor, nrow: int = 8, padding: int = 2, value_range: Range = (-1.0, 1.0)) -> np.ndarray:
    """Tile a batch (B, C, H, W) into one (H', W'[, 3]) array in [0, 1] (no torchvision needed)."""
    batch = batch.detach().float().cpu()
    B, C, H, W = batch.shape
    ncol = min(nrow, B)
    nrows = (B + ncol - 1) // ncol
    lo, hi = value_range
    x = ((batch - lo) / (hi - lo)).clamp(0, 1)
    grid = torch.ones(C, nrows * (H + padding) + padding, ncol * (W + padding) + padding)
    for i in range(B):
        r, c = divmod(i, ncol)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        grid[:, top : top + H, left : left + W] = x[i]
    out = grid.permute(1, 2, 0).numpy()
    return out[..., 0] if C == 1 else out


def show_grid(
    batch: torch.Tensor, nrow: int = 8, title: str | None = None, value_range: Range = (-1.0, 1.0), size: float = 0.6
):
    """Show a batch as one tiled image; returns the figure."""
    grid = image_grid(batch, nrow=nrow, value_range=value_range)
    h, w = grid.shape[:2]
    fig, ax = plt.subplots(figsize=(max(2.0, size * w / 30), max(2.0, size * h / 30)))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def noising_strip(
    images: Sequence,
    labels: Sequence[str],
    *,
    rows: Sequence[str] | None = None,
    value_range: Range = (-1.0, 1.0),
    size: float = 1.8,
):
    """Rows of images (one row per input, one column per noise level); ``labels`` name the columns.

    ``images`` is a list of rows, each a list of images.
    """
    nrows, ncols = len(images), len(labels)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for r, row in enumerate(images):
        for c, img in enumerate(row):
            ax = axes[r, c]
            arr = to_numpy_image(img, value_range)
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[c], fontsize=9)
            if c == 0 and rows is not None:
                ax.set_ylabel(rows[r], fontsize=9)
    fig.tight_layout()
    return fig


def loss_curve(
    losses: Sequence[float] | dict[str, Sequence[float]],
    *,
    smooth: int = 50,
    log: bool = True,
    title: str = "training loss",
    xlabel: str = "step",
):
    """Plot one or several loss histories (raw, faint) with a moving average on top."""
    series = losses if isinstance(losses, dict) else {"loss": losses}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=np.float64)
        color = f"C{i}"
        ax.plot(values, color=color, alpha=0.25, linewidth=0.8)
        if len(values) >= smooth > 1:
            kernel = np.ones(smooth) / smooth
            ax.plot(
                np.arange(smooth - 1, len(values)), np.convolve(values, kernel, mode="valid"), color=color, label=name
            )
        else:
            ax.plot(values, color=color, label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def save_figure(name: str, fig=None, *, folder: str | os.PathLike | None = None, dpi: int = 120) -> Path:
    """Save a figure as ``<figures>/<name>.png`` (stable name, byte-stable PNG) and return the path."""
    if not name or any(ch in name for ch in "/\\"):
        raise ValueError("figure names are plain file names without folders, e.g. '01_schedules'")
    fig = fig or plt.gcf()
    out = Path(folder) if folder else config.figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def sample_grid_saver(run_dir: str | os.PathLike, nrow: int = 10):
    """A ``save_samples(images, epoch)`` callback for :func:`course_utils.training.train`: writes
    the images (in the model's [-1, 1]) as ``run_dir/samples_epoch_NNNN.png``, atomically."""
    import warnings

    from .files import atomic_path

    run_dir = Path(run_dir)

    def save(images: torch.Tensor, epoch: int) -> None:
        if images.numel() and images.min() >= 0:
            warnings.warn(
                "sample_fn returned images with no negative values: sample grids are saved from "
                "the model's [-1, 1] range, so images already in [0, 1] come out grey and faint; "
                "return the sampler's output without data.to_unit",
                stacklevel=3,
            )
        grid = image_grid(images.detach().cpu(), nrow=nrow)
        with atomic_path(run_dir / f"samples_epoch_{epoch:04d}.png") as tmp:
            plt.imsave(tmp, grid, cmap="gray", vmin=0, vmax=1, format="png")

    return save
