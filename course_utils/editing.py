"""Image editing with a trained denoiser: SDEdit, inpainting, visual anagrams, hybrid images.

Two kinds of tool, both built on the course's one model signature ``model_fn(x, t, cond)``:

- **Loops** that start from an image you give: :func:`sdedit` (Meng et al. 2022) noises the
  image to a chosen time and lets a sampler denoise it back; :func:`inpaint` (RePaint, Lugmayr
  et al. 2022) fills a masked region while, after every step, the known pixels are reset to the
  original noised to the current time. Both take any sampler with the common signature
  ``sampler(model_fn, x, ts, cond=, generator=)`` and call it one step at a time where needed.
- **Model wrappers** that return a new ``model_fn`` any sampler accepts: :func:`anagram` (Geng
  et al. 2024, "Visual Anagrams") averages the model's estimate for one condition with its
  estimate for another condition on a transformed view (flipped, predicted, flipped back);
  :func:`hybrid` (Geng et al. 2024, "Factorized Diffusion") adds the low frequencies of one
  condition's estimate to the high frequencies of another's.

The wrappers work on anything that is linear in the noise: epsilon estimates (DDPM, DDIM) and
flow-matching velocities (Euler, Heun) alike.

Times follow the course convention (t = 0 data, t = 1 noise). Noise "levels" in the Berkeley
CS180 write-up are start *indices* ``i_start`` into a decreasing grid such as
``schedules.step_grid(1000, 990, 30)`` (times 0.99, 0.96, ..., 0): index 0 starts at almost pure
noise, larger indices keep more of the input, and the last index (t = 0) adds no noise at all.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch import Tensor

from . import filters, predictions, samplers
from .conditions import per_sample
from .errors import BadRequest
from .noise import randn_like
from .schedules import Schedule

ModelFn = Callable[..., Tensor]
Sampler = Callable[..., Tensor]

_RANGE_TOL = 1e-4  # images may overshoot [-1, 1] by float rounding, no more

# Every check raises BadRequest (a ValueError) naming the argument, before any model call.


# ---------------------------------------------------------------------------------------------
# Input checks


def check_images(x: Tensor, name: str = "x", *, images: bool = True) -> None:
    """Raise :class:`~course_utils.errors.BadRequest` (a ``ValueError``) unless ``x`` is a finite
    float tensor (B, C, H, W) with values in [-1, 1] (``images=False``: any finite values, e.g. the
    latents of an autoencoder)."""
    if not torch.is_tensor(x):
        raise BadRequest(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise BadRequest(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise BadRequest(f"{name} must be a float tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise BadRequest(f"{name} holds NaN or infinite values")
    lo, hi = x.min().item(), x.max().item()
    if images and lo < -1 - _RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise BadRequest(
            f"{name} must hold images in [-1, 1] (the course's model scale), found [{lo:.3g}, {hi:.3g}]; "
            "convert [0, 1] images with data.to_signed"
        )


def check_mask(mask: Tensor, x: Tensor) -> Tensor:
    """Validate a mask against images ``x``; return it as a float tensor of x's dtype and device.

    The mask must broadcast to ``x``'s shape ((H, W), (1, 1, H, W), (B, 1, H, W), ...) and hold
    values in [0, 1] (binary {0, 1} or soft); bool masks are accepted.
    """
    if not torch.is_tensor(mask):
        raise BadRequest(f"the mask must be a torch.Tensor, got {type(mask).__name__}")
    try:
        shape = torch.broadcast_shapes(mask.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise BadRequest(f"a mask of shape {tuple(mask.shape)} does not broadcast to the images {tuple(x.shape)}")
    mask = mask.to(device=x.device, dtype=x.dtype)
    if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise BadRequest("mask values must lie in [0, 1] (1 = known pixel, 0 = pixel to fill)")
    return mask


def check_grid(ts: Tensor) -> Tensor:
    """A sampler's grid (:func:`samplers.check_times`) that ends at t = 0: editing returns clean images."""
    ts = samplers.check_times(ts)
    if ts[-1] != 0:
        raise BadRequest(f"ts must run down to exactly 0, got {ts[0].item():.3g} .. {ts[-1].item():.3g}")
    return ts


def check_start_index(ts: Tensor, i_start: int) -> int:
    """``i_start`` must be an int index into ``ts`` (0 = noisiest, len(ts) - 1 = t = 0, no noise)."""
    if isinstance(i_start, bool) or not isinstance(i_start, int):
        raise BadRequest(f"i_start must be an int index into ts, got {i_start!r}")
    if not 0 <= i_start < len(ts):
        raise BadRequest(f"i_start must be in 0..{len(ts) - 1} for a grid of {len(ts)} times, got {i_start}")
    return i_start


def _default_sampler(sampler: Sampler | None, schedule: Schedule) -> Sampler:
    """DDPM ancestral sampling (epsilon model) on ``schedule`` unless a sampler is given."""
    if sampler is not None:
        return sampler
    return functools.partial(samplers.ddpm, schedule=schedule)


def noise_to(x0: Tensor, t: float, schedule: Schedule, generator: torch.Generator | None = None) -> Tensor:
    """The forward process with fresh noise: xt = alpha(t) x0 + sigma(t) eps, eps ~ N(0, I)."""
    return schedule.add_noise(x0, float(t), randn_like(x0, generator))


# ---------------------------------------------------------------------------------------------
# SDEdit


def sdedit(
    model_fn: ModelFn,
    x0: Tensor,
    ts: Tensor,
    i_start: int,
    *,
    schedule: Schedule,
    sampler: Sampler | None = None,
    cond=None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    images: bool = True,
):
    """SDEdit (Meng et al. 2022): noise ``x0`` to t = ts[i_start], then denoise along ts[i_start:].

    ``schedule`` is the path the model was trained on (it sets how the input is noised);
    ``sampler`` defaults to DDPM ancestral sampling with that schedule (epsilon models); pass
    ``samplers.euler`` for a velocity model on ``FlowSchedule()``, or a ``functools.partial`` for
    options such as ``clip_x0``. A small ``i_start`` means much noise (a free re-drawing), a large
    one keeps the input's layout; at the last index (t = 0) the input comes back unchanged.
    With ``return_trajectory`` returns ``(x, [xt, ..., x])``. ``images=False`` accepts inputs outside
    [-1, 1], such as the latents of a latent diffusion model (:mod:`course_utils.text2image`).
    """
    check_images(x0, "x0", images=images)
    ts = check_grid(ts)
    check_start_index(ts, i_start)
    sampler = _default_sampler(sampler, schedule)
    t_start = ts[i_start].item()
    if t_start == 0:  # nothing to edit: no noise added, no steps taken
        x = x0.clone()
        return (x, [x]) if return_trajectory else x
    xt = noise_to(x0, t_start, schedule, generator)  # eq. of the forward process at t_start
    return sampler(model_fn, xt, ts[i_start:], cond=cond, generator=generator, return_trajectory=return_trajectory)


# ---------------------------------------------------------------------------------------------
# Inpainting


def repaint_project(
    x: Tensor, x0: Tensor, known: Tensor, t: float, schedule: Schedule, generator: torch.Generator | None = None
) -> Tensor:
    """Replace the known pixels of ``x`` (a sample at time t) by the original noised to t.

    x <- known * (alpha(t) x0 + sigma(t) eps) + (1 - known) * x; at t = 0 the known pixels are
    the original itself, exactly.
    """
    x_known = x0 if t == 0 else noise_to(x0, t, schedule, generator)
    return known * x_known + (1 - known) * x


def inpaint(
    model_fn: ModelFn,
    x0: Tensor,
    known: Tensor,
    ts: Tensor,
    *,
    schedule: Schedule,
    sampler: Sampler | None = None,
    cond=None,
    generator: torch.Generator | None = None,
    resample: int = 1,
    return_trajectory: bool = False,
    images: bool = True,
):
    """Inpainting in the style of RePaint (Lugmayr et al. 2022, Algorithm 1).

    ``known`` is 1 where ``x0`` is kept and 0 where the model fills in (soft values blend). The
    unknown region starts from pure noise at ts[0]; every step t -> s of ``sampler`` (default DDPM
    ancestral on ``schedule``) is followed by :func:`repaint_project` at s, so the known pixels
    always carry the right amount of noise and equal ``x0`` exactly at the end (t = 0).
    ``resample`` > 1 repeats each step that many times, re-noising x_s back to t in between
    (RePaint's U), which lets the filled region agree better with the known one.
    With ``return_trajectory`` returns ``(x, [x_init, x after each step ...])``. ``images=False``
    accepts inputs outside [-1, 1] (latents).
    """
    check_images(x0, "x0", images=images)
    known = check_mask(known, x0)
    ts = check_grid(ts)
    if isinstance(resample, bool) or not isinstance(resample, int) or resample < 1:
        raise BadRequest(f"resample must be an int >= 1, got {resample!r}")
    sampler = _default_sampler(sampler, schedule)
    x = repaint_project(randn_like(x0, generator), x0, known, ts[0].item(), schedule, generator)
    trajectory = [x] if return_trajectory else None
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        for u in range(resample):
            x = sampler(model_fn, x, torch.tensor([t, s]), cond=cond, generator=generator)  # one step t -> s
            x = repaint_project(x, x0, known, s, schedule, generator)
            if u < resample - 1:  # back to t: x_t = (alpha_t / alpha_s) x_s + sigma_{t|s} z
                a_ts, sigma_ts2 = schedule.transition(t, s)
                x = a_ts.to(x) * x + sigma_ts2.sqrt().to(x) * randn_like(x, generator)
        if trajectory is not None:
            trajectory.append(x)
    return (x, trajectory) if trajectory is not None else x


# ---------------------------------------------------------------------------------------------
# Visual anagrams


def flip_vertical(x: Tensor) -> Tensor:
    """Upside down by a mirror across the horizontal axis (the Berkeley project's flip)."""
    return torch.flip(x, dims=(-2,))


def rotate_180(x: Tensor) -> Tensor:
    """Upside down by a half turn (what turning the page does: a 6 becomes a 9)."""
    return torch.flip(x, dims=(-2, -1))


def _check_condition(cond, name: str) -> None:
    if cond is None or isinstance(cond, int) and not isinstance(cond, bool):
        return
    if not torch.is_tensor(cond):
        raise BadRequest(f"{name} must be None, a class id (int) or a tensor, got {type(cond).__name__}")


def _no_outer_condition(cond, what: str) -> None:
    if cond is not None:
        raise BadRequest(f"the {what} wrapper carries its own conditions: call the sampler with cond=None")


def anagram(
    model_fn: ModelFn,
    cond_a,
    cond_b,
    *,
    view: Callable[[Tensor], Tensor] = rotate_180,
    inverse: Callable[[Tensor], Tensor] | None = None,
) -> ModelFn:
    """Visual anagram (Geng et al. 2024): an image that reads as ``cond_a`` as it is and as
    ``cond_b`` seen through ``view`` (default: upside down by a half turn).

    The wrapped model averages two estimates (epsilon or velocity):

        out = ( model(x, t, cond_a) + inverse(model(view(x), t, cond_b)) ) / 2

    ``inverse`` undoes ``view`` (default: ``view`` itself, right for flips and half turns).
    Conditions are class ids (int), (B,) ids, feature vectors or None. Guide first, then wrap:
    ``anagram(guidance.cfg(model, 3.0), 6, 9)``.
    """
    _check_condition(cond_a, "cond_a")
    _check_condition(cond_b, "cond_b")
    inverse = inverse or view

    def anagram_model(x: Tensor, t: Tensor, cond=None) -> Tensor:
        _no_outer_condition(cond, "anagram")
        a = per_sample(cond_a, x.shape[0], x.device)
        b = per_sample(cond_b, x.shape[0], x.device)
        out_a = model_fn(x, t, a)  # (B, C, H, W), upright
        out_b = inverse(model_fn(view(x), t, b))  # predicted on the view, mapped back
        return (out_a + out_b) / 2

    return predictions.wraps(anagram_model, model_fn)


# ---------------------------------------------------------------------------------------------
# Hybrid images


def hybrid_sigma(size: int) -> float:
    """The reference low-pass width scaled to the image: sigma 2 at 64 pixels (0.875 at 28)."""
    return 2.0 * size / 64


def hybrid_kernel_size(size: int) -> int:
    """The reference kernel size scaled to the image: 33 at 64 pixels (15 at 28), always odd."""
    return 2 * round(16 * size / 64) + 1


def gaussian_lowpass(x: Tensor, sigma: float, ksize: int | None = None) -> Tensor:
    """The course's one Gaussian blur (:func:`course_utils.filters.gaussian_blur`) under its
    hybrid-image name: the low-pass of factorized diffusion."""
    return filters.gaussian_blur(x, sigma, ksize)


def hybrid(model_fn: ModelFn, cond_low, cond_high, *, sigma: float | None = None, ksize: int | None = None) -> ModelFn:
    """Hybrid image by factorized diffusion (Geng et al. 2024): low frequencies follow
    ``cond_low``, high frequencies ``cond_high``:

        out = lowpass(model(x, t, cond_low)) + highpass(model(x, t, cond_high)),
        highpass(y) = y - lowpass(y).

    The low-pass is a Gaussian; by default its ``sigma`` and ``ksize`` are the reference
    (sigma 2, kernel 33 at 64 pixels) scaled to the image size (:func:`hybrid_sigma`).
    Seen from afar (blurred, downsampled) the image reads as ``cond_low``; close up, ``cond_high``.
    """
    _check_condition(cond_low, "cond_low")
    _check_condition(cond_high, "cond_high")
    if sigma is not None and (
        isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0 or not math.isfinite(sigma)
    ):
        raise BadRequest(f"sigma must be a positive number of pixels, got {sigma!r}")
    if ksize is not None and (isinstance(ksize, bool) or not isinstance(ksize, int) or ksize < 1 or ksize % 2 == 0):
        raise BadRequest(f"ksize must be an odd whole number of pixels >= 1, got {ksize!r}")

    def hybrid_model(x: Tensor, t: Tensor, cond=None) -> Tensor:
        _no_outer_condition(cond, "hybrid")
        size = min(x.shape[-2:])
        s = sigma if sigma is not None else hybrid_sigma(size)
        k = ksize if ksize is not None else (hybrid_kernel_size(size) if sigma is None else None)
        low = model_fn(x, t, per_sample(cond_low, x.shape[0], x.device))
        high = model_fn(x, t, per_sample(cond_high, x.shape[0], x.device))
        return filters.gaussian_blur(low, s, k) + filters.highpass(high, s, k)

    return predictions.wraps(hybrid_model, model_fn)
