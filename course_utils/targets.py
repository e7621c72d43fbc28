"""Parameterisation algebra: eps <-> x0 <-> v <-> velocity. The only place it lives.

For any path xt = alpha x0 + sigma eps (see :mod:`course_utils.schedules`):

- epsilon prediction (DDPM):   x0 = (xt - sigma eps) / alpha
- x0 prediction:               eps = (xt - alpha x0) / sigma
- v prediction (Salimans & Ho 2022, variance-preserving only): v = alpha eps - sigma x0
- velocity (flow matching, alpha = 1 - t, sigma = t): u = dxt/dt = eps - x0

``alpha`` and ``sigma`` are tensors broadcastable to the images (use ``coef(schedule.alpha(t), x)``).
"""

from __future__ import annotations

from torch import Tensor


def coef(c: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample coefficients (B,) so they multiply images (B, C, H, W)."""
    return c.reshape(c.shape + (1,) * (x.dim() - c.dim())).to(x.dtype)


def x0_from_eps(xt: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """x0 = (xt - sigma eps) / alpha (Ho et al. 2020, eq. 15)."""
    return (xt - sigma * eps) / alpha


def eps_from_x0(xt: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """eps = (xt - alpha x0) / sigma."""
    return (xt - alpha * x0) / sigma


def v_from_eps_x0(eps: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """v = alpha eps - sigma x0 (variance-preserving schedules)."""
    return alpha * eps - sigma * x0


def x0_eps_from_v(xt: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Invert v for variance-preserving schedules: x0 = alpha xt - sigma v, eps = sigma xt + alpha v."""
    return alpha * xt - sigma * v, sigma * xt + alpha * v


def velocity_from_eps_x0(eps: Tensor, x0: Tensor) -> Tensor:
    """Flow-matching target u = eps - x0: the time derivative of xt = (1 - t) x0 + t eps."""
    return eps - x0


def x0_from_velocity(xt: Tensor, u: Tensor, t: Tensor) -> Tensor:
    """On the flow path: x0 = xt - t u."""
    return xt - t * u


def eps_from_velocity(xt: Tensor, u: Tensor, t: Tensor) -> Tensor:
    """On the flow path: eps = xt + (1 - t) u."""
    return xt + (1 - t) * u


def velocity_from_eps(xt: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """On the flow path: u = (eps - xt) / (1 - t), the velocity implied by a noise estimate."""
    return (eps - xt) / (1 - t)
