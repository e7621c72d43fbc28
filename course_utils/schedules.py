"""Noise schedules: how much signal and how much noise an image holds at time t.

Time convention (the whole course): t runs from 0 (data) to 1 (pure noise) and

    xt = alpha(t) * x0 + sigma(t) * eps,        eps ~ N(0, I).

Variance-preserving (DDPM) schedules have alpha^2 + sigma^2 = 1 and are described by
alpha_bar(t) = alpha(t)^2 (Ho et al. 2020 write it as a cumulative product of 1 - beta_i).
Their integer steps i = 0..T sit at t = i / T; between steps alpha_bar is interpolated
log-linearly, so a model can be asked about any t in [0, 1].

The flow-matching path (Lipman et al. 2023, "rectified flow") is alpha = 1 - t, sigma = t.
Some papers run flow-matching time the other way (t = 0 noise, t = 1 data): here it is
always 0 = data.

Symbols: alpha_bar = alpha^2 ("alphas_cumprod" in diffusers), SNR = alpha^2 / sigma^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .noise import randn_like  # noqa: F401  (the course's noise draw, importable from here as before)
from .targets import coef


def _as_time(t: Tensor | float, like: Tensor | None = None) -> Tensor:
    if not torch.is_tensor(t):
        t = torch.tensor(float(t), dtype=torch.float32, device=None if like is None else like.device)
    elif like is not None and t.device != like.device:
        t = t.to(like.device)  # a time made on the CPU for images on a GPU
    return t.float()


@dataclass(frozen=True, eq=False)
class Schedule:
    """A noise schedule: ``alpha(t)`` and ``sigma(t)`` for t in [0, 1] (tensor or float)."""

    name: str = "schedule"

    def alpha(self, t: Tensor | float) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: Tensor | float) -> Tensor:
        raise NotImplementedError

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """alpha(t)^2: the fraction of the signal's variance left at t."""
        return self.alpha(t) ** 2

    def snr(self, t: Tensor | float) -> Tensor:
        """Signal-to-noise ratio alpha^2 / sigma^2 (infinite at t = 0)."""
        return self.alpha(t) ** 2 / self.sigma(t) ** 2

    def log_snr(self, t: Tensor | float) -> Tensor:
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def add_noise(self, x0: Tensor, t: Tensor | float, eps: Tensor) -> Tensor:
        """Forward process: xt = alpha(t) x0 + sigma(t) eps (t is (B,) or a scalar)."""
        t = _as_time(t, x0)
        return coef(self.alpha(t), x0) * x0 + coef(self.sigma(t), x0) * eps

    def transition(self, t: Tensor | float, s: Tensor | float) -> tuple[Tensor, Tensor]:
        """The step-to-step coefficients from time s to a later time t > s:

        x_t = alpha_{t|s} x_s + sigma_{t|s} z,  alpha_{t|s} = alpha_t / alpha_s,
        sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2   (Kingma et al. 2021, eq. 21-22).

        Returns ``(alpha_ts, sigma_ts2)``, the variance clamped at 0 against rounding.
        """
        alpha_ts = self.alpha(t) / self.alpha(s)
        sigma_ts2 = (self.sigma(t) ** 2 - alpha_ts**2 * self.sigma(s) ** 2).clamp(min=0.0)
        return alpha_ts, sigma_ts2

    def posterior_mean_coefs(self, t: Tensor | float, s: Tensor | float) -> tuple[Tensor, Tensor]:
        """q(x_s | x_t, x0) has mean ``a * x0 + b * x_t`` (Ho et al. 2020, eq. 7, for any s < t):

        a = alpha_s sigma_{t|s}^2 / sigma_t^2,   b = alpha_{t|s} sigma_s^2 / sigma_t^2.
        """
        alpha_ts, sigma_ts2 = self.transition(t, s)
        sigma_t2 = self.sigma(t) ** 2
        return self.alpha(s) * sigma_ts2 / sigma_t2, alpha_ts * self.sigma(s) ** 2 / sigma_t2

    def posterior_variance(self, t: Tensor | float, s: Tensor | float) -> Tensor:
        """Variance of q(x_s | x_t, x0) for s < t: (sigma_s / sigma_t)^2 sigma_{t|s}^2 (Ho et al. eq. 7)."""
        _, sigma_ts2 = self.transition(t, s)
        return (self.sigma(s) / self.sigma(t)) ** 2 * sigma_ts2

    def flow_time(self, t: Tensor | float) -> Tensor:
        """The time on the straight flow path with the same signal-to-noise ratio:
        tau = sigma / (alpha + sigma). Rescaling x by 1 / (alpha + sigma) maps this path onto it."""
        alpha, sigma = self.alpha(t), self.sigma(t)
        return sigma / (alpha + sigma)

    def time_at_flow_time(self, tau: Tensor | float) -> Tensor:
        """Invert :meth:`flow_time` (it rises monotonically from 0 at t = 0): the t of this schedule
        whose noise level matches flow time ``tau``; clamped to [0, 1]."""
        return _bisect(lambda t: self.flow_time(t), _as_time(tau), rising=True)

    def time_at_log_snr(self, log_snr: Tensor | float) -> Tensor:
        """Invert :meth:`log_snr` (it falls from +inf at t = 0): the t with that log signal-to-noise
        ratio; clamped to [0, 1]. A slider over log-SNR spreads the visible change evenly."""
        return _bisect(lambda t: self.log_snr(t), _as_time(log_snr), rising=False)


def _bisect(fn, target: Tensor, *, rising: bool, iterations: int = 50) -> Tensor:
    """The t in [0, 1] with fn(t) = target for a monotone fn, by bisection (elementwise)."""
    target = target.double()
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        value = fn(mid.float()).double()
        go_up = value < target if rising else value > target  # the answer lies above mid
        lo, hi = torch.where(go_up, mid, lo), torch.where(go_up, hi, mid)
    return ((lo + hi) / 2).float()


@dataclass(frozen=True, eq=False)
class DiscreteSchedule(Schedule):
    """A DDPM schedule from its betas: alpha_bar_i = prod_{j<=i} (1 - beta_j), alpha_bar_0 = 1.

    ``alpha_bars`` has T + 1 entries; step i lives at t = i / T.
    """

    alpha_bars: Tensor = field(default_factory=lambda: torch.ones(2))

    @property
    def T(self) -> int:
        return self.alpha_bars.numel() - 1

    @property
    def betas(self) -> Tensor:
        """beta_i = 1 - alpha_bar_i / alpha_bar_{i-1}, i = 1..T (shape (T,))."""
        return 1 - self.alpha_bars[1:] / self.alpha_bars[:-1]

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        t = _as_time(t)
        if torch.any((t < 0) | (t > 1)):
            raise ValueError("t must lie in [0, 1]")
        log_ab = torch.log(self.alpha_bars.double()).to(t.device)
        pos = t.double() * self.T
        nearest = pos.round()
        # t = i / T arrives rounded to float32 (i / T * T is then off by up to ~1e-4 steps): snap it
        # onto step i, so alpha_bar(i / T) is the table's value exactly.
        pos = torch.where((pos - nearest).abs() < 1e-3, nearest, pos)
        lo = pos.floor().clamp(max=self.T - 1).long()
        frac = pos - lo
        value = torch.exp(log_ab[lo] * (1 - frac) + log_ab[lo + 1] * frac)  # log-linear between steps
        return value.to(t.dtype)

    def alpha(self, t: Tensor | float) -> Tensor:
        return self.alpha_bar(t).sqrt()

    def sigma(self, t: Tensor | float) -> Tensor:
        return (1 - self.alpha_bar(t)).sqrt()

    def at_step(self, i: int | Tensor) -> Tensor:
        """alpha_bar at integer step i (0..T), exactly as the table holds it."""
        return self.alpha_bars[i]


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteSchedule:
    """DDPM's linear betas (Ho et al. 2020, sec. 4): beta_i from beta_start to beta_end over T steps."""
    if T < 1:
        raise ValueError("T must be at least 1")
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    alpha_bars = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
    return DiscreteSchedule(name=f"linear(T={T})", alpha_bars=alpha_bars.float())


def cosine_alpha_bar(t: Tensor, s: float = 0.008) -> Tensor:
    """Closed form of the cosine schedule (Nichol & Dhariwal 2021, eq. 17): f(t) / f(0)."""
    f = lambda u: torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t) / f(torch.zeros_like(t))


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> DiscreteSchedule:
    """The cosine schedule on T steps, betas clipped at ``max_beta`` (their eq. 17 and sec. 3.2)."""
    if T < 1:
        raise ValueError("T must be at least 1")
    t = torch.arange(T + 1, dtype=torch.float64) / T
    ab = cosine_alpha_bar(t, s)
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)
    alpha_bars = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
    return DiscreteSchedule(name=f"cosine(T={T})", alpha_bars=alpha_bars.float())


@dataclass(frozen=True, eq=False)
class FlowSchedule(Schedule):
    """The straight flow-matching path: alpha = 1 - t, sigma = t (not variance preserving)."""

    name: str = "flow"

    def alpha(self, t: Tensor | float) -> Tensor:
        return 1 - _as_time(t)

    def sigma(self, t: Tensor | float) -> Tensor:
        return _as_time(t).clone()


def time_grid(n: int, t_start: float = 1.0, t_end: float = 0.0) -> Tensor:
    """n + 1 evenly spaced times from ``t_start`` down to ``t_end`` (a sampler's n steps)."""
    if n < 1:
        raise ValueError("a time grid needs at least one step")
    return torch.linspace(t_start, t_end, n + 1)


def step_times(steps: int, T: int = 1000) -> Tensor:
    """``time_grid(steps)`` snapped onto DDPM's integer steps i / T (a model trained on integer
    steps is asked about them only); consecutive duplicates are impossible for steps <= T."""
    if not 1 <= steps <= T:
        raise ValueError(f"need 1 <= steps <= T = {T}, got {steps}")
    return torch.round(time_grid(steps) * T) / T


def step_grid(T: int = 1000, start: int = 990, stride: int = 30) -> Tensor:
    """DDPM steps ``start, start - stride, ..., 0`` as times i / T (strided sampling, Berkeley style).

    The integer steps appear only here, at the edge; samplers see times in [0, 1].
    """
    if not 0 < start <= T or stride < 1:
        raise ValueError("need 0 < start <= T and stride >= 1")
    steps = list(range(start, -1, -stride))
    if steps[-1] != 0:
        steps.append(0)
    return torch.tensor(steps, dtype=torch.float32) / T
