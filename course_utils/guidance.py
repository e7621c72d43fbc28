"""Guidance as model wrappers: a guided model has the same signature ``model_fn(x, t, cond)``.

Classifier-free guidance (Ho & Salimans 2022) combines the model's conditional and unconditional
outputs (epsilon or velocity alike, both are affine in the score):

    out = out_uncond + w * (out_cond - out_uncond)

w = 1 is the conditional model, w = 0 the unconditional one, w > 1 pushes samples towards what
makes them look like their class. "Unconditional" is the model called with no condition: class id
-1, a row of NaN for feature vectors (:func:`conditions.null_condition`), the same input the model saw
when training dropped the condition.

Negative guidance steers away from a condition as well:

    out = out_uncond + w * (out_cond - out_uncond) - w_neg * (out_neg - out_uncond)

With w_neg = w this is out_uncond + w * (out_cond - out_neg). Without a positive condition
(cond None) only the push away from the negative one remains.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from . import predictions
from .conditions import null_condition, per_sample
from .errors import BadRequest
from .samplers import check_scale

ModelFn = Callable[..., Tensor]


def _batched(model: ModelFn, x: Tensor, t: Tensor, conds: list[Tensor]) -> list[Tensor]:
    """Call the model once on len(conds) copies of the batch (one forward pass), split the outputs."""
    k = len(conds)
    out = model(torch.cat([x] * k), torch.cat([t] * k), torch.cat(conds))
    return list(out.chunk(k))


def cfg(model: ModelFn, scale: float) -> ModelFn:
    """Classifier-free guidance with scale w: ``out_uncond + w * (out_cond - out_uncond)``.

    With ``cond=None`` the wrapper returns the unconditional output. A scale that is not a finite
    number raises :class:`~course_utils.errors.BadRequest` here, when the wrapper is built.
    """
    check_scale(scale, "scale")

    def guided(x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            return model(x, t, None)
        out_uncond, out_cond = _batched(model, x, t, [null_condition(cond), cond])
        return out_uncond + scale * (out_cond - out_uncond)

    return predictions.wraps(guided, model)


def negative_guidance(
    model: ModelFn, scale: float, negative: Tensor | int, negative_scale: float | None = None
) -> ModelFn:
    """Guidance towards ``cond`` and away from ``negative`` (a class id, (B,) ids or feature rows).

    ``out = out_uncond + w (out_cond - out_uncond) - w_neg (out_neg - out_uncond)`` with
    w = ``scale`` and w_neg = ``negative_scale`` (default w, giving out_uncond + w (out_cond - out_neg)).
    With ``cond=None``: ``out_uncond - w_neg (out_neg - out_uncond)``. Scales that are not finite
    numbers, and a ``negative`` that is neither a class id nor a tensor, raise
    :class:`~course_utils.errors.BadRequest` when the wrapper is built.
    """
    check_scale(scale, "scale")
    if negative_scale is not None:
        check_scale(negative_scale, "negative_scale")
    if negative is None or isinstance(negative, (bool, float, str, bytes)):
        raise BadRequest(f"negative must be a class id (int) or a tensor of ids or feature rows, got {negative!r}")
    w_neg = scale if negative_scale is None else negative_scale

    def guided(x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        neg = per_sample(negative, x.shape[0], x.device)
        null = null_condition(neg)
        if cond is None:
            out_uncond, out_neg = _batched(model, x, t, [null, neg])
            return out_uncond - w_neg * (out_neg - out_uncond)
        out_uncond, out_cond, out_neg = _batched(model, x, t, [null, cond, neg])
        return out_uncond + scale * (out_cond - out_uncond) - w_neg * (out_neg - out_uncond)

    return predictions.wraps(guided, model)
