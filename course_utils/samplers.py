"""Samplers: pure functions with one signature, walking a time grid from noise (t = 1) to data (t = 0).

::

    x = sampler(model_fn, x_init, ts, *, cond=None, generator=None,
                return_trajectory=False, progress=False, ...)

``ts`` is a decreasing 1-D tensor of times (``schedules.time_grid(n)`` or DDPM's strided
``schedules.step_grid(1000, 990, 30)``); the sampler takes one step per consecutive pair (t, s).
A grid with NaN, times outside [0, 1] or a step that does not go down, a non-finite ``x_init`` or
``eta`` raise :class:`~course_utils.errors.BadRequest` before the first model call
(:func:`check_times`; :func:`check_count`, :func:`check_steps`, :func:`check_scale` and
:func:`check_seed` are the checks every sampling entry point shares). With
``return_trajectory=True`` it returns ``(x, [x_init, x_1, ..., x])``. Guidance, masks and views are
wrappers around ``model_fn``, never sampler flags.

What the model predicts is part of the sampler's contract (:mod:`course_utils.predictions`):

- :func:`ddpm` and :func:`ddim` step with the estimates (x0_hat, eps_hat), which any kind of
  model gives on the ``schedule`` it was trained on (epsilon, x0 or v; a velocity model on the
  flow path), so DDIM also runs on a flow-matching model;
- :func:`euler` and :func:`heun` integrate a **velocity** model on the flow path (alpha = 1 - t,
  sigma = t): dx/dt = u(x, t). :func:`predictions.as_flow_velocity` moves any other model there.

A model that records another kind (``model.prediction``) is refused, with the conversion to use.
The start and a tensor condition are moved to the model's device (a module's parameters, or the
device a wrapper recorded), so noise drawn on the CPU drives a model on a GPU.
Symbols: for a step from t to s < t, ``alpha_t, sigma_t, alpha_s, sigma_s`` are the schedule's
coefficients, ``x0_hat`` and ``eps_hat`` the model's estimates. Noise comes from ``generator``:
a ``torch.Generator``, or a :class:`course_utils.noise.PerSample` (one stream per image).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Callable

import torch
from torch import Tensor

from . import predictions
from .errors import BadRequest
from .noise import Generator, randn_like
from .schedules import FlowSchedule, Schedule

ModelFn = Callable[..., Tensor]

MAX_SEED = 2**32 - 1  # seeds are 32-bit, as NumPy's; image i of seed S draws from S * 1,000,003 + i


# ---------------------------------------------------------------------------------------------
# Request checks shared by every sampling entry point (pretrained, photos, the command line):
# each raises BadRequest naming the argument, before any compute.


def _whole_number(value, name: str) -> int:
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be a whole number, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise BadRequest(f"{name} must be a whole number, got {value!r}") from None


def check_count(value, name: str = "n") -> int:
    """A count of images (or of anything): a whole number >= 1."""
    value = _whole_number(value, name)
    if value < 1:
        raise BadRequest(f"{name} must be at least 1, got {value}")
    return value


def check_steps(value, name: str = "steps", *, maximum: int | None = None, why: str = "") -> int:
    """A number of sampler steps: a whole number in 1..maximum (``why`` says where the maximum comes from)."""
    value = check_count(value, name)
    if maximum is not None and value > maximum:
        raise BadRequest(f"{name} must be at most {maximum}{f' ({why})' if why else ''}, got {value}")
    return value


def check_scale(value, name: str = "guidance_scale", *, minimum: float | None = None):
    """A finite real number (a guidance scale, eta, ...), >= ``minimum`` if given; a tensor of
    scales must be finite everywhere. Returns the value unchanged."""
    if torch.is_tensor(value):
        if value.dtype == torch.bool or not torch.isfinite(value.float()).all():
            raise BadRequest(f"{name} must hold finite numbers, got {value}")
        if minimum is not None and (value < minimum).any():
            raise BadRequest(f"{name} must be at least {minimum:g}, got {value}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadRequest(f"{name} must be at least {minimum:g}, got {value!r}")
    return value


def check_seed(value, name: str = "seed") -> int:
    """A seed: a whole number in 0..MAX_SEED."""
    value = _whole_number(value, name)
    if not 0 <= value <= MAX_SEED:
        raise BadRequest(f"{name} must be a whole number in 0..{MAX_SEED}, got {value}")
    return value


def check_times(ts) -> Tensor:
    """A sampler's grid: a 1-D float tensor of at least two finite, strictly decreasing times in [0, 1]."""
    try:
        ts = torch.as_tensor(ts, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError) as err:
        raise BadRequest(f"ts must be a 1-D tensor of times, e.g. time_grid(50) ({err})") from None
    if ts.numel() < 2:
        raise BadRequest("ts must be a decreasing grid of at least two times, e.g. time_grid(50)")
    if not torch.isfinite(ts).all():
        raise BadRequest(f"ts holds NaN or infinite times: {ts.tolist()[:8]}")
    if ts.min() < 0 or ts.max() > 1:
        raise BadRequest(
            f"ts must hold times in [0, 1] (t = 0 data, t = 1 noise), got {ts.min().item():.3g} .. "
            f"{ts.max().item():.3g}; DDPM steps i become times i / T (schedules.step_grid)"
        )
    if torch.any(ts[1:] >= ts[:-1]):
        raise BadRequest("ts must be a decreasing grid of at least two times, e.g. time_grid(50)")
    return ts


def _steps(ts: Tensor, progress: bool, desc: str):
    ts = check_times(ts)
    pairs = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
    if progress:
        from tqdm.auto import tqdm

        return tqdm(pairs, desc=desc, leave=False)
    return pairs


def _time(t: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)


def _coefs(schedule: Schedule, t: float, x: Tensor) -> tuple[Tensor, Tensor]:
    tt = torch.tensor(t, dtype=torch.float32)
    return schedule.alpha(tt).to(x.device, x.dtype), schedule.sigma(tt).to(x.device, x.dtype)


def _on_model_device(model_fn: ModelFn, cond):
    """``(device, cond)``: where the model runs and the condition moved there (noise and features
    made on the CPU for a model on a GPU); a plain function that does not say gives (None, cond)."""
    device = predictions.device_of(model_fn, default=None)
    if device is not None and torch.is_tensor(cond):
        cond = cond.to(device)
    return device, cond


def _walk(
    step: Callable[[Tensor, float, float], Tensor],
    x_init: Tensor,
    ts: Tensor,
    desc: str,
    progress: bool,
    return_trajectory: bool,
    device: torch.device | None = None,
):
    """The loop every sampler shares: one ``step(x, t, s)`` per consecutive pair of ``ts``, from
    ``x_init`` moved to ``device`` (the model's) once it is checked."""
    pairs = _steps(ts, progress, desc)  # the grid is checked before the first model call
    if not torch.is_tensor(x_init) or not x_init.dtype.is_floating_point:
        raise BadRequest(f"x_init must be a float tensor, got {type(x_init).__name__}")
    if not torch.isfinite(x_init).all():
        raise BadRequest("x_init holds NaN or infinite values")
    x = x_init = x_init.to(device) if device is not None else x_init
    trajectory = [x_init] if return_trajectory else None
    for t, s in pairs:
        x = step(x, t, s)
        if trajectory is not None:
            trajectory.append(x)
    return (x, trajectory) if trajectory is not None else x


def predict_x0(
    model_fn: ModelFn, x: Tensor, t: float, schedule: Schedule, *, cond=None, clip_x0: bool | float = False
) -> tuple[Tensor, Tensor]:
    """One model call at time t: ``(x0_hat, eps_hat)`` (:func:`predictions.denoise`; an epsilon
    model unless the model records another kind). With ``clip_x0`` x0_hat is clipped to [-1, 1] (a number c: to [-c, c])
    and eps_hat recomputed from it, so the two stay consistent."""
    return predictions.denoise(model_fn, x, _time(t, x), schedule, cond, clip_x0=clip_x0)


def posterior_variance(schedule: Schedule, t: float, s: float) -> Tensor:
    """Variance of q(x_s | x_t, x0) for s < t (:meth:`Schedule.posterior_variance`)."""
    return schedule.posterior_variance(torch.tensor(t, dtype=torch.float32), torch.tensor(s, dtype=torch.float32))


@torch.no_grad()
def ddpm_step(
    model_fn: ModelFn,
    x: Tensor,
    t: float,
    s: float,
    schedule: Schedule,
    *,
    cond=None,
    generator: Generator | None = None,
    clip_x0: bool | float = False,
) -> Tensor:
    """One ancestral step x_t -> x_s: a draw from the posterior q(x_s | x_t, x0 = x0_hat).

    Ho et al. 2020, eq. 6-7 written for any pair of times s < t (so strided grids work):
    mean = alpha_s sigma_{t|s}^2 / sigma_t^2 * x0_hat + alpha_{t|s} sigma_s^2 / sigma_t^2 * x_t,
    alpha_{t|s} = alpha_t / alpha_s (:meth:`Schedule.posterior_mean_coefs`); no noise is added on
    the step to s = 0.
    """
    tt, ss = torch.tensor(t, dtype=torch.float32), torch.tensor(s, dtype=torch.float32)
    x0_hat, _ = predict_x0(model_fn, x, t, schedule, cond=cond, clip_x0=clip_x0)
    a, b = (c.to(x.device, x.dtype) for c in schedule.posterior_mean_coefs(tt, ss))
    mean = a * x0_hat + b * x  # eq. 7
    if s <= 0:
        return mean
    var = schedule.posterior_variance(tt, ss).to(x.device, x.dtype)
    return mean + var.sqrt() * randn_like(x, generator)


@torch.no_grad()
def ddpm(
    model_fn: ModelFn,
    x_init: Tensor,
    ts: Tensor,
    *,
    schedule: Schedule,
    cond=None,
    generator: Generator | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    clip_x0: bool | float = False,
):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) over the grid ``ts`` with an epsilon model."""
    device, cond = _on_model_device(model_fn, cond)

    def step(x: Tensor, t: float, s: float) -> Tensor:
        return ddpm_step(model_fn, x, t, s, schedule, cond=cond, generator=generator, clip_x0=clip_x0)

    return _walk(step, x_init, ts, "DDPM", progress, return_trajectory, device)


@torch.no_grad()
def ddim_step(
    model_fn: ModelFn,
    x: Tensor,
    t: float,
    s: float,
    schedule: Schedule,
    *,
    cond=None,
    eta: float = 0.0,
    generator: Generator | None = None,
    clip_x0: bool | float = False,
) -> Tensor:
    """One DDIM step x_t -> x_s (Song et al. 2021, eq. 12):

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,   c = eta * sqrt(posterior variance).

    eta = 0 is deterministic; eta = 1 draws from DDPM's posterior (same mean and variance).
    """
    check_scale(eta, "eta", minimum=0.0)
    alpha_s, sigma_s = _coefs(schedule, s, x)
    x0_hat, eps_hat = predict_x0(model_fn, x, t, schedule, cond=cond, clip_x0=clip_x0)
    c2 = eta**2 * posterior_variance(schedule, t, s).to(x.device, x.dtype)
    x_s = alpha_s * x0_hat + (sigma_s**2 - c2).clamp(min=0.0).sqrt() * eps_hat
    if eta > 0 and s > 0:
        x_s = x_s + c2.sqrt() * randn_like(x, generator)
    return x_s


@torch.no_grad()
def ddim(
    model_fn: ModelFn,
    x_init: Tensor,
    ts: Tensor,
    *,
    schedule: Schedule,
    eta: float = 0.0,
    cond=None,
    generator: Generator | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    clip_x0: bool | float = False,
):
    """DDIM sampling (Song et al. 2021) over ``ts`` with an epsilon model; ``eta`` in [0, 1]."""
    check_scale(eta, "eta", minimum=0.0)
    device, cond = _on_model_device(model_fn, cond)

    def step(x: Tensor, t: float, s: float) -> Tensor:
        return ddim_step(model_fn, x, t, s, schedule, cond=cond, eta=eta, generator=generator, clip_x0=clip_x0)

    return _walk(step, x_init, ts, f"DDIM eta={eta:g}", progress, return_trajectory, device)


@torch.no_grad()
def euler_step(model_fn: ModelFn, x: Tensor, t: float, s: float, *, cond=None) -> Tensor:
    """x_s = x_t + (s - t) u_hat(x_t, t): one Euler step of dx/dt = u (s < t, so we step backwards)."""
    return x + (s - t) * model_fn(x, _time(t, x), cond)


@torch.no_grad()
def euler(
    model_fn: ModelFn,
    x_init: Tensor,
    ts: Tensor,
    *,
    cond=None,
    generator: Generator | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
):
    """Euler's method on the flow-matching ODE dx/dt = u(x, t) from t = ts[0] to ts[-1] (velocity model).

    Deterministic: ``generator`` is accepted for the common signature and not used.
    """
    _require_velocity(model_fn, "Euler")
    device, cond = _on_model_device(model_fn, cond)
    return _walk(
        lambda x, t, s: euler_step(model_fn, x, t, s, cond=cond),
        x_init,
        ts,
        "Euler",
        progress,
        return_trajectory,
        device,
    )


@torch.no_grad()
def heun_step(model_fn: ModelFn, x: Tensor, t: float, s: float, *, cond=None) -> Tensor:
    """Heun's method (Karras et al. 2022, Algorithm 1): an Euler step, then the average of the slopes
    at both ends. The correction is skipped on the last step to s = 0, as in their algorithm."""
    d_cur = model_fn(x, _time(t, x), cond)
    x_next = x + (s - t) * d_cur
    if s <= 0:
        return x_next
    d_next = model_fn(x_next, _time(s, x), cond)
    return x + (s - t) * 0.5 * (d_cur + d_next)


@torch.no_grad()
def heun(
    model_fn: ModelFn,
    x_init: Tensor,
    ts: Tensor,
    *,
    cond=None,
    generator: Generator | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
):
    """Heun's second-order method on dx/dt = u(x, t) (velocity model); 2 model calls per step but the last."""
    _require_velocity(model_fn, "Heun")
    device, cond = _on_model_device(model_fn, cond)
    return _walk(
        lambda x, t, s: heun_step(model_fn, x, t, s, cond=cond), x_init, ts, "Heun", progress, return_trajectory, device
    )


def _require_velocity(model_fn: ModelFn, name: str) -> None:
    predictions.require(
        model_fn, ("velocity",), name, "wrap it with predictions.as_flow_velocity(model, schedule) first"
    )


def eps_from_velocity_model(model_fn: ModelFn) -> ModelFn:
    """Wrap a velocity model (flow path) as an epsilon model: eps_hat = x + (1 - t) u_hat.

    Use it with ``ddim(..., schedule=FlowSchedule())``; DDIM with eta = 0 on the flow path is
    then exactly Euler's method. (:func:`predictions.convert` does this for every kind.)
    """
    return predictions.convert(model_fn, "eps", FlowSchedule(), source="velocity")


def velocity_from_eps_model(model_fn: ModelFn) -> ModelFn:
    """Wrap an epsilon model trained on the flow path as a velocity model: u_hat = (eps_hat - x) / (1 - t)."""
    return predictions.convert(model_fn, "velocity", FlowSchedule(), source="eps")
