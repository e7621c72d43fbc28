"""Conditions: the one place that says what "no condition" is and how a condition meets a batch.

A condition is ``None`` (an unconditional model), class ids (B,) int64, or feature vectors (B, d)
float. "No condition" (what classifier-free guidance needs, Ho & Salimans 2022) is the class id
-1 or a row of NaN; the models map it to a learned null embedding.

- :func:`null_condition`: the "no condition" version of a batch of conditions;
- :func:`drop_condition`: replace each condition by "no condition" with probability p (CFG
  training, done inside the losses where the reader sees it);
- :func:`per_sample`: a single class id or feature vector broadcast to a batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import BadRequest


def null_condition(cond: Tensor | None) -> Tensor | None:
    """The "no condition" version of a batch of conditions: ids -> -1, vectors -> NaN rows."""
    if cond is None:
        return None
    if cond.dtype.is_floating_point:
        return torch.full_like(cond, float("nan"))
    return torch.full_like(cond, -1)


def is_null(cond: Tensor) -> Tensor:
    """(B,) bool: which rows of a batch of conditions are "no condition"."""
    if cond.dtype.is_floating_point:
        return torch.isnan(cond).reshape(cond.shape[0], -1).all(dim=1)
    return cond < 0


def drop_condition(cond: Tensor | None, p: float, generator: torch.Generator | None = None) -> Tensor | None:
    """Replace each condition by "no condition" with probability ``p`` (CFG training).

    Class ids (B,) become -1; feature vectors (B, d) become rows of NaN. ``None`` stays ``None``.
    The random draw happens even for p = 0, so changing p never shifts the rest of a run's noise.
    """
    if not 0.0 <= p <= 1.0:
        raise BadRequest(f"the drop probability p must lie in [0, 1], got {p!r}")
    if cond is None:
        return None
    device = generator.device if generator is not None else cond.device
    drop = torch.rand(cond.shape[0], generator=generator, device=device).to(cond.device) < p  # (B,)
    if cond.dtype.is_floating_point:
        return torch.where(drop[:, None], torch.full_like(cond, float("nan")), cond)
    return torch.where(drop, torch.full_like(cond, -1), cond)


def per_sample(cond, batch: int, device: torch.device | str | None = None) -> Tensor | None:
    """A class id (int) or one feature vector (d,) broadcast to ``batch``; (B, ...) tensors checked.

    ``None`` stays ``None``. A batch of conditions must have one row per image.
    """
    if cond is None:
        return None
    cond = torch.as_tensor(cond, device=device)
    if cond.dim() == 0:
        return cond.expand(batch)
    if cond.dim() == 1 and cond.dtype.is_floating_point:
        return cond.expand(batch, -1)
    if cond.shape[0] != batch:
        raise BadRequest(f"a condition for {cond.shape[0]} images was given for a batch of {batch}")
    return cond
