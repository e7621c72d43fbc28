"""Gaussian noise for samplers, losses and edits, drawn from explicit generators.

Two kinds of generator are accepted wherever the course draws noise:

- a ``torch.Generator``: one stream for the whole batch (what training uses: fast, and a run
  is reproducible for a fixed batch size);
- a :class:`PerSample` generator: one stream per image, as EDM's ``StackedRandomGenerator``
  (Karras et al. 2022, ``generate.py``). Image i then gets the same noise whatever batch it is
  drawn in, so a sample never depends on the batch size or on which other images were asked for.

``generate`` functions and the command line use :func:`PerSample.from_seed`: image i of a
request with seed S draws from its own seed (see :func:`image_seed`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .errors import BadRequest


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a request made with ``seed`` (distinct for index < 1,000,003)."""
    return int(seed) * 1_000_003 + int(index)


class PerSample:
    """One ``torch.Generator`` per image (EDM's StackedRandomGenerator): draws are stacked along
    the batch dimension, image i from generator i."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise BadRequest("a per-sample generator needs at least one seed")
        self.seeds = seeds
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]

    @classmethod
    def from_seed(cls, seed: int, n: int, *, start: int = 0, device: torch.device | str = "cpu") -> "PerSample":
        """Generators for images start, ..., start + n - 1 of a request made with ``seed``."""
        if n < 1:
            raise BadRequest(f"need at least one image, got n={n}")
        return cls([image_seed(seed, start + i) for i in range(n)], device)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """Standard normal (B, ...) with B = len(self), row i drawn from generator i."""
        shape = tuple(shape)
        if shape[0] != len(self.generators):
            raise BadRequest(f"a per-sample generator for {len(self.generators)} images was asked for {shape[0]}")
        return torch.stack(
            [torch.randn(shape[1:], generator=g, device=self.device, dtype=dtype) for g in self.generators]
        )


Generator = torch.Generator | PerSample


def check_streams(generator: Generator | None, n: int) -> None:
    """A per-sample generator must have one stream per image; anything else passes."""
    if isinstance(generator, PerSample) and len(generator) != n:
        raise BadRequest(f"generator: the per-sample generator has {len(generator)} streams for {n} images")


def randn_like(x: Tensor, generator: Generator | None = None) -> Tensor:
    """Standard normal noise shaped like x from ``generator`` (on its device), moved to x's device."""
    if isinstance(generator, PerSample):
        return generator.randn(x.shape, dtype=x.dtype).to(x.device)
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def randn(shape: Sequence[int], generator: Generator | None = None, device: torch.device | str | None = None) -> Tensor:
    """Standard normal noise of ``shape`` (float32) on ``device`` (default: the generator's)."""
    if isinstance(generator, PerSample):
        x = generator.randn(shape)
    else:
        x = torch.randn(tuple(shape), generator=generator, device=generator.device if generator is not None else None)
    return x.to(device) if device is not None else x
