"""Training losses: ``loss_fn(model, batch, *, generator=None) -> scalar``.

A batch is an image tensor x0 (B, C, H, W) in [-1, 1], or a tuple ``(x0, cond)`` with class ids
(B,) or feature vectors (B, d). Every random draw (times, noise, condition dropout) comes from the
``generator`` the training loop passes in, so a run is reproducible and resumable.

Configure a loss with keyword arguments and hand it to the training loop as a partial::

    loss_fn = functools.partial(losses.ddpm_loss, schedule=schedules.linear_schedule(1000))
    loss = loss_fn(model, (x0, labels), generator=g)

- :func:`denoising_loss`: the single-step denoiser of notebook 03, ``x0 + sigma eps -> x0``.
- :func:`ddpm_loss`: epsilon prediction (Ho et al. 2020, Algorithm 1) at integer steps t = i / T.
- :func:`flow_matching_loss`: velocity prediction on the straight path (Lipman et al. 2023).
- condition dropout for classifier-free guidance (Ho & Salimans 2022) happens inside the DDPM and
  flow-matching losses, with :func:`course_utils.conditions.drop_condition` (also importable from
  here): with probability p a condition becomes "no condition" (class id -1, or a NaN row).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import targets
from .conditions import drop_condition, null_condition  # noqa: F401  (public here too, as before)
from .schedules import DiscreteSchedule, FlowSchedule, randn_like

Batch = Tensor | tuple | list


def unpack(batch: Batch) -> tuple[Tensor, Tensor | None]:
    """``x0`` or ``(x0,)`` or ``(x0, cond)`` -> ``(x0, cond or None)``."""
    if torch.is_tensor(batch):
        return batch, None
    if len(batch) == 1:
        return batch[0], None
    x0, cond = batch[0], batch[1]
    return x0, cond


def _rand(n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(n, generator=generator, device=device).to(like.device)


def denoising_loss(
    model: nn.Module,
    batch: Batch,
    *,
    sigma: float = 0.5,
    pure_noise: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The single-step denoiser of notebook 03: predict x0 from z = x0 + sigma eps (MSE).

    With ``pure_noise=True`` the input is eps alone: the best the model can do is the mean image.
    The model is called as ``model(z, t, cond)`` with t = sigma (ignored by a model without time).
    """
    x0, cond = unpack(batch)
    eps = randn_like(x0, generator)
    z = eps if pure_noise else x0 + sigma * eps
    t = torch.full((x0.shape[0],), float(sigma), device=x0.device)
    return F.mse_loss(model(z, t, cond), x0)


def ddpm_loss(
    model: nn.Module,
    batch: Batch,
    *,
    schedule: DiscreteSchedule,
    p_uncond: float = 0.0,
    generator: torch.Generator | None = None,
    snr_gamma: float | None = None,
) -> Tensor:
    """DDPM's simple loss (Ho et al. 2020, Algorithm 1): || eps - eps_hat(xt, t) ||^2.

    i ~ Uniform{1..T}, t = i / T, xt = sqrt(alpha_bar_i) x0 + sqrt(1 - alpha_bar_i) eps.
    With ``p_uncond > 0`` the conditions are dropped first (classifier-free guidance).

    ``snr_gamma``: Min-SNR-gamma weighting (Hang et al. 2023). The epsilon error at time t equals
    SNR(t) times the error of the implied x0 estimate, so the simple loss weighs clean images by
    SNR(t), most of all at the nearly clean steps; each image's term is multiplied by
    min(SNR(t), gamma) / SNR(t), which caps that weight at gamma and leaves the noisy steps
    (SNR <= gamma), where the layout is decided, as they are. None: the simple loss.
    """
    if snr_gamma is not None and not snr_gamma > 0:
        raise ValueError(f"snr_gamma must be a positive number, got {snr_gamma}")
    x0, cond = unpack(batch)
    B = x0.shape[0]
    cond = drop_condition(cond, p_uncond, generator)  # CFG dropout (None stays None)
    device = generator.device if generator is not None else x0.device
    i = torch.randint(1, schedule.T + 1, (B,), generator=generator, device=device).to(x0.device)
    t = i.float() / schedule.T  # (B,) the integer steps appear only here
    eps = randn_like(x0, generator)
    xt = schedule.add_noise(x0, t, eps)
    eps_hat = model(xt, t, cond)
    if snr_gamma is None:
        return F.mse_loss(eps_hat, eps)
    snr = schedule.snr(t).to(x0.dtype)  # (B,)
    weight = snr.clamp(max=snr_gamma) / snr
    per_image = (eps_hat - eps).pow(2).flatten(1).mean(1)
    return (weight * per_image).mean()


def flow_matching_loss(
    model: nn.Module,
    batch: Batch,
    *,
    p_uncond: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Conditional flow matching (Lipman et al. 2023): || u - u_hat(xt, t) ||^2 on the straight path.

    t ~ Uniform[0, 1], xt = (1 - t) x0 + t eps, target velocity u = dxt/dt = eps - x0.
    With ``p_uncond > 0`` the conditions are dropped first (classifier-free guidance).
    """
    x0, cond = unpack(batch)
    cond = drop_condition(cond, p_uncond, generator)  # CFG dropout (None stays None)
    t = _rand(x0.shape[0], generator, x0)  # (B,)
    eps = randn_like(x0, generator)
    xt = FlowSchedule().add_noise(x0, t, eps)
    u = targets.velocity_from_eps_x0(eps, x0)
    return F.mse_loss(model(xt, t, cond), u)
