"""Classical denoising baselines the diffusion models are measured against.

A Gaussian blur removes noise by averaging neighbouring pixels: it suppresses the noise's high
frequencies, and the image's with them. :func:`best_blur` picks the blur width that gives the
highest PSNR against the clean image, an *oracle-tuned* baseline (it peeks at the answer), so
any model that beats it beats every blur. The blur is the course's one
(:func:`course_utils.filters.gaussian_blur`), the PSNR the course's one (:func:`course_utils.metrics.psnr`).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from .filters import gaussian_blur
from .metrics import psnr

__all__ = ["gaussian_blur", "best_blur", "mse_psnr"]


def mse_psnr(x: Tensor, ref: Tensor, data_range: float = 2.0) -> float:
    """PSNR in dB of images in [-1, 1] (``data_range`` 2) against ``ref``: :func:`metrics.psnr`,
    the mean over images. Kept under its old name; new code calls ``metrics.psnr`` directly."""
    return psnr(x, ref, data_range=data_range)


def best_blur(
    noisy: Tensor, clean: Tensor, sigmas: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
) -> tuple[Tensor, float]:
    """The blur (of the candidate ``sigmas``) with the highest PSNR against ``clean`` (images in
    [-1, 1]): ``(image, sigma)``."""
    best = max(sigmas, key=lambda s: psnr(gaussian_blur(noisy, s), clean, data_range=2.0))
    return gaussian_blur(noisy, best), best
