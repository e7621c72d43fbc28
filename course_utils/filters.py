"""The course's one blur: a separable Gaussian in plain torch (runs on the images' device).

Used by the blur baseline (:mod:`course_utils.baselines`, notebooks 01-02) and by hybrid images
(:func:`course_utils.editing.hybrid`, a low-pass of one estimate plus a high-pass of another).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import BadRequest


def gaussian_blur(x: Tensor, sigma: float, ksize: int | None = None) -> Tensor:
    """Blur images (B, C, H, W) or (C, H, W) with a Gaussian of std ``sigma`` pixels.

    ``ksize`` (odd) defaults to cover +-3 sigma; borders are mirrored (``reflect``: d c b | a b c d).
    ``sigma = 0`` returns a copy of the input.
    """
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise BadRequest(f"sigma must be a finite number of pixels >= 0, got {sigma!r}")
    if x.dim() not in (3, 4):
        raise BadRequest(f"expected images (B, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    if sigma == 0:
        return x.clone()
    ksize = ksize or 2 * math.ceil(3 * sigma) + 1
    if ksize < 1 or ksize % 2 == 0:
        raise BadRequest(f"the kernel size must be odd and positive, got {ksize}")
    pad = ksize // 2
    if pad >= min(x.shape[-2:]):
        raise BadRequest(f"a kernel of {ksize} pixels is too large for images of {tuple(x.shape[-2:])}")
    batch = x.unsqueeze(0) if x.dim() == 3 else x
    offsets = torch.arange(ksize, device=x.device, dtype=x.dtype) - pad
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = g / g.sum()  # (k,)
    C = batch.shape[1]
    h = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
    h = F.conv2d(h, g.reshape(1, 1, 1, ksize).expand(C, 1, 1, ksize), groups=C)  # along width
    h = F.conv2d(h, g.reshape(1, 1, ksize, 1).expand(C, 1, ksize, 1), groups=C)  # along height
    return h[0] if x.dim() == 3 else h


def highpass(x: Tensor, sigma: float, ksize: int | None = None) -> Tensor:
    """What the blur removes: x - gaussian_blur(x)."""
    return x - gaussian_blur(x, sigma, ksize)
