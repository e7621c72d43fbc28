"""Classical denoising baselines the diffusion models are measured against.

A Gaussian blur removes noise by averaging neighbouring pixels: it suppresses the noise's high
frequencies, and the image's with them. :func:`best_blur` picks the blur width that gives the
highest PSNR against the clean image, an *oracle-tuned* baseline (it peeks at the answer), so
any model that beats it beats every blur.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor


def gaussian_blur(x: Tensor, sigma: float, ksize: int | None = None) -> Tensor:
    """Blur images (B, C, H, W) or (C, H, W) with a Gaussian of std ``sigma`` pixels (OpenCV).

    ``ksize`` defaults to the odd size covering +-3 sigma. ``sigma = 0`` returns the input.
    """
    if sigma < 0:
        raise ValueError("sigma must be >= 0")
    if sigma == 0:
        return x.clone()
    ksize = ksize or 2 * int(np.ceil(3 * sigma)) + 1
    if ksize % 2 == 0:
        raise ValueError("the kernel size must be odd")
    batch = x.unsqueeze(0) if x.dim() == 3 else x
    arr = batch.detach().cpu().float().numpy()
    out = np.empty_like(arr)
    for b in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            out[b, c] = cv2.GaussianBlur(arr[b, c], (ksize, ksize), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    result = torch.from_numpy(out).to(x.device, x.dtype)
    return result[0] if x.dim() == 3 else result


def mse_psnr(x: Tensor, ref: Tensor, data_range: float = 2.0) -> float:
    """PSNR in dB of ``x`` against ``ref`` over the whole batch (default range: [-1, 1] images)."""
    mse = torch.mean((x.float() - ref.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)


def best_blur(noisy: Tensor, clean: Tensor, sigmas: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)) -> tuple[Tensor, float]:
    """The blur (of the candidate ``sigmas``) with the highest PSNR against ``clean``: (image, sigma)."""
    best = max(sigmas, key=lambda s: mse_psnr(gaussian_blur(noisy, s), clean))
    return gaussian_blur(noisy, best), best
