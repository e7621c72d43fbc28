"""What a model predicts, recorded with the model and checked by the samplers.

A denoiser ``model(x, t, cond)`` is trained to predict one of (``PREDICTIONS``):

- ``"eps"``: the noise (DDPM, Ho et al. 2020);
- ``"x0"``: the clean image;
- ``"v"``: v = alpha eps - sigma x0 (Salimans & Ho 2022, variance-preserving paths);
- ``"velocity"``: u = dxt/dt = eps - x0 on the straight flow path (Lipman et al. 2023).

A course model carries the kind as an attribute, ``model.prediction`` (set from its recipe when
it is built or loaded); the wrappers (guidance, edits, conversions) pass it on. A sampler that
needs another kind refuses with a :class:`~course_utils.errors.BadRequest` instead of running
silently. A plain function without the attribute is taken at its word (the sampler's kind).

:func:`denoise` turns any kind into the pair (x0_hat, eps_hat) the samplers step with, and
:func:`convert` wraps a model as one predicting another kind; :func:`as_flow_velocity` lets a
model trained on any noise schedule (a DDPM) drive the flow-matching ODE solvers (Euler, Heun)
by moving it onto the straight path with the same signal-to-noise ratio. The algebra itself lives
in :mod:`course_utils.targets`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from . import targets
from .errors import BadRequest
from .schedules import FlowSchedule, Schedule

ModelFn = Callable[..., Tensor]
PREDICTIONS = ("eps", "x0", "v", "velocity")


def prediction_of(model_fn: ModelFn) -> str | None:
    """The kind a model predicts (``model.prediction``), or None when it does not say."""
    kind = getattr(model_fn, "prediction", None)
    if kind is not None and kind not in PREDICTIONS:
        raise BadRequest(f"unknown prediction type {kind!r}; known: {', '.join(PREDICTIONS)}")
    return kind


def with_prediction(model_fn: ModelFn, kind: str | None) -> ModelFn:
    """Record on ``model_fn`` (a module or a function) what it predicts; returns it."""
    if kind is not None and kind not in PREDICTIONS:
        raise BadRequest(f"unknown prediction type {kind!r}; known: {', '.join(PREDICTIONS)}")
    model_fn.prediction = kind
    return model_fn


CPU = torch.device("cpu")


def device_of(model_fn: ModelFn, default: torch.device | None = CPU) -> torch.device | None:
    """Where a model runs: its parameters' device, the device a wrapper recorded, else ``default``."""
    if isinstance(model_fn, nn.Module):
        first = next(model_fn.parameters(), None)
        if first is not None:
            return first.device
    return getattr(model_fn, "device", None) or default


def wraps(wrapper: ModelFn, model_fn: ModelFn) -> ModelFn:
    """A wrapper (guidance, an edit) predicts what the model it wraps predicts, on its device."""
    wrapper.device = device_of(model_fn)
    return with_prediction(wrapper, prediction_of(model_fn))


def require(model_fn: ModelFn, kinds: tuple[str, ...], sampler: str, hint: str) -> None:
    """Refuse a model whose recorded prediction is not one of ``kinds``."""
    kind = prediction_of(model_fn)
    if kind is not None and kind not in kinds:
        raise BadRequest(
            f"{sampler} needs a model that predicts {' or '.join(kinds)}, but this one predicts {kind!r}: {hint}"
        )


def _coefs(schedule: Schedule, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    return targets.coef(schedule.alpha(t), x).to(x.device), targets.coef(schedule.sigma(t), x).to(x.device)


def estimates(out: Tensor, kind: str, x: Tensor, t: Tensor, schedule: Schedule) -> tuple[Tensor, Tensor]:
    """(x0_hat, eps_hat) from a model output ``out`` of the given ``kind`` at x = x_t, t (B,)."""
    alpha, sigma = _coefs(schedule, t, x)
    if kind == "eps":
        return targets.x0_from_eps(x, out, alpha, sigma), out
    if kind == "x0":
        return out, targets.eps_from_x0(x, out, alpha, sigma)
    if kind == "v":
        return targets.x0_eps_from_v(x, out, alpha, sigma)
    if kind == "velocity":
        if not isinstance(schedule, FlowSchedule):
            raise BadRequest(
                "a velocity model lives on the flow path: pass schedule=FlowSchedule(), or use "
                "as_flow_velocity to move another model onto it"
            )
        tb = targets.coef(t, x).to(x.device)
        return targets.x0_from_velocity(x, out, tb), targets.eps_from_velocity(x, out, tb)  # no division: fine at t = 1
    raise BadRequest(f"unknown prediction type {kind!r}; known: {', '.join(PREDICTIONS)}")


def _same_path(a: Schedule, b: Schedule) -> bool:
    if a is b or (isinstance(a, FlowSchedule) and isinstance(b, FlowSchedule)):
        return True
    ta, tb = getattr(a, "alpha_bars", None), getattr(b, "alpha_bars", None)
    return ta is not None and tb is not None and ta.shape == tb.shape and bool((ta == tb).all())


def denoise(
    model_fn: ModelFn,
    x: Tensor,
    t: Tensor,
    schedule: Schedule,
    cond=None,
    *,
    default: str = "eps",
    clip_x0: bool | float = False,
) -> tuple[Tensor, Tensor]:
    """One model call at (x_t, t): ``(x0_hat, eps_hat)`` whatever the model predicts.

    A converted model (:func:`convert`) is unwrapped to the model it came from, so e.g. a velocity
    model wrapped as an epsilon model still gives a finite x0_hat at t = 1 on the flow path, where
    x0 = (x - sigma eps) / alpha would be 0 / 0. With ``clip_x0`` x0_hat is clipped to [-1, 1] (or
    to [-c, c] for a number ``clip_x0 = c``, for data such as latents that are not pixels) and
    eps_hat recomputed from it, so the two stay consistent.
    """
    source = getattr(model_fn, "converted_from", None)
    if source is not None and _same_path(source[2], schedule):
        model_fn, kind = source[0], source[1]
    else:
        kind = prediction_of(model_fn) or default
    x0_hat, eps_hat = estimates(model_fn(x, t, cond), kind, x, t, schedule)
    if clip_x0:
        alpha, sigma = _coefs(schedule, t, x)
        bound = 1.0 if clip_x0 is True else float(clip_x0)
        x0_hat = x0_hat.clamp(-bound, bound)
        eps_hat = targets.eps_from_x0(x, x0_hat, alpha, sigma)
    return x0_hat, eps_hat


def convert(model_fn: ModelFn, to: str, schedule: Schedule, *, source: str | None = None) -> ModelFn:
    """Wrap ``model_fn`` (predicting ``source``, default its recorded kind) as a model that
    predicts ``to`` on the same ``schedule``: e.g. Heun on a flow model through ``"velocity"``,
    DDIM on it through ``"eps"``. ``"velocity"`` needs the flow path (see :func:`as_flow_velocity`)."""
    source = source or prediction_of(model_fn)
    if source is None:
        raise BadRequest("say what the model predicts: convert(model, to, schedule, source='eps')")
    if to not in PREDICTIONS:
        raise BadRequest(f"unknown prediction type {to!r}; known: {', '.join(PREDICTIONS)}")
    if to == "velocity" and not isinstance(schedule, FlowSchedule):
        raise BadRequest("velocity is defined on the flow path: use as_flow_velocity(model, schedule)")

    def converted(x: Tensor, t: Tensor, cond=None) -> Tensor:
        x0_hat, eps_hat = estimates(model_fn(x, t, cond), source, x, t, schedule)
        if to == "eps":
            return eps_hat
        if to == "x0":
            return x0_hat
        if to == "velocity":
            return targets.velocity_from_eps_x0(eps_hat, x0_hat)
        alpha, sigma = _coefs(schedule, t, x)
        return targets.v_from_eps_x0(eps_hat, x0_hat, alpha, sigma)

    converted.converted_from = (model_fn, source, schedule)
    return with_prediction(converted, to)


def as_flow_velocity(model_fn: ModelFn, schedule: Schedule, *, source: str | None = None) -> ModelFn:
    """A velocity model on the straight flow path from a model trained on any ``schedule``.

    Flow time tau and the schedule's time t describe the same noise level when
    tau = sigma_t / (alpha_t + sigma_t) (:meth:`Schedule.flow_time`); then x_t = (alpha_t + sigma_t) x_tau.
    The wrapper finds t, rescales x, asks the model for (x0_hat, eps_hat) and returns
    u = eps_hat - x0_hat. With it Euler and Heun run on a DDPM's epsilon model.
    """
    source = source or prediction_of(model_fn) or "eps"
    if isinstance(schedule, FlowSchedule):
        return convert(model_fn, "velocity", schedule, source=source)

    def velocity(x: Tensor, tau: Tensor, cond=None) -> Tensor:
        t = schedule.time_at_flow_time(tau.detach().cpu()).to(tau.device)  # (B,)
        scale = targets.coef(schedule.alpha(t) + schedule.sigma(t), x).to(x.device)
        xt = x * scale
        x0_hat, eps_hat = estimates(model_fn(xt, t, cond), source, xt, t, schedule)
        return targets.velocity_from_eps_x0(eps_hat, x0_hat)

    return with_prediction(velocity, "velocity")
