"""Checkers of the whole-function exercises of notebooks 02-05: sampling loops and training steps.

A loop is checked by running it on a small **oracle model** (a fixed 3x3 convolution whose output
depends on the time and on the class, so calling it at the wrong time or with the wrong label
shows) and comparing the result with the course's sampler run on the same model, the same grid
and the same generator. A training step is checked by taking two optimiser steps from the same
initial weights on the same batches, and comparing the losses and the weights after.

========================  ==========================================  ========  ==================================
checker                   student function                            notebook  compared with
========================  ==========================================  ========  ==================================
check_ddpm_loop           (model, x, ts, schedule, generator)         02        ``samplers.ddpm``
                          -> [x at every time of ts]
check_unet_forward        (net, x) -> output, from net's blocks        03        ``MnistUNet.forward``
check_train_step          (model, optimizer, z, x0) -> loss           03        one Adam / SGD step by the course
check_flow_matching_loss  (model, x0, generator) -> loss              04        ``losses.flow_matching_loss``
check_euler_loop          (model, x, ts) -> x at ts[-1]               04        ``samplers.euler``
check_cfg_loss            (model, x0, labels, p_uncond, generator)    05        ``losses.flow_matching_loss``
                          -> loss                                               with ``p_uncond``
check_cfg_sampling        (model, x, labels, w, ts) -> x at ts[-1]    05        ``samplers.euler`` on
                                                                                ``guidance.cfg(model, w)``
========================  ==========================================  ========  ==================================

Each checker also keeps a table of the typical mistakes (the model called at s instead of t, the
velocity's sign, a forgotten ``zero_grad``, labels kept instead of dropped, ...): when a failing answer
reproduces one of them on every case, the hint opens with it ("it looks like ..."), then gives the
whole recipe.

The course's versions, with the students' signatures, are registered here too
(``checks.course_version("euler_sample")``: the one line a stuck student goes on with).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import schedules
from .engine import (
    Alternatives,
    Case,
    CheckResult,
    _difference,
    _is_course_version,
    _seeded,
    course_hidden,
    register_course_version,
    run_cases,
)

__all__ = [
    "check_ddpm_loop",
    "check_unet_forward",
    "check_train_step",
    "check_flow_matching_loss",
    "check_euler_loop",
    "check_cfg_loss",
    "check_cfg_sampling",
    "LOOP_CHECKERS",
]

N_CLASSES = 10


# ---------------------------------------------------------------------------------------------
# The oracle model: small, fixed, and strict about how it is called


class _OracleModel(nn.Module):
    """``model(x, t, cond=None)``: a fixed 3x3 conv scaled by (0.5 + t), plus a shift per class.

    Like the course's UNets it wants ``t`` as a tensor of shape (B,) (or 0-dim) and class ids (B,),
    -1 (or ``cond=None``) meaning "no class".
    """

    def __init__(self, seed: int, channels: int = 1):
        super().__init__()
        g = _seeded(seed)  # the weights come from this generator; the global seed is left alone
        with torch.random.fork_rng(devices=[]):
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(0.3 * torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.copy_(0.1 * torch.randn(self.conv.bias.shape, generator=g))
        self.register_buffer("shift", 0.5 * torch.randn(N_CLASSES + 1, channels, generator=g))  # last row: no class
        self.requires_grad_(False)

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        B = x.shape[0]
        if not torch.is_tensor(t):
            raise TypeError(
                f"the model wants the time as a tensor of shape (B,), got {type(t).__name__}: "
                "torch.full((x.shape[0],), t, device=x.device)"
            )
        if t.dim() == 0:
            t = t.expand(B)
        if tuple(t.shape) != (B,):
            raise ValueError(f"the model wants the time shaped (B,) = ({B},), got {tuple(t.shape)}")
        tb = t.to(x.dtype).reshape(B, 1, 1, 1)
        ids = torch.full((B,), -1, dtype=torch.long) if cond is None else torch.as_tensor(cond).long().reshape(B)
        ids = torch.where(ids < 0, torch.full_like(ids, N_CLASSES), ids)  # -1 -> the "no class" row
        return self.conv(x) * (0.5 + tb) + 0.3 * tb + self.shift[ids.to(x.device)][:, :, None, None]


def _trajectory_compare(atol: float, rtol: float) -> Callable:
    """Compare a list of states with the expected tuple, saying which state differs first."""

    def compare(expected: tuple, got) -> str | None:
        if not isinstance(got, (list, tuple)):
            return (
                f"expected a list of {len(expected)} tensors (x at every time of ts, the input first), "
                f"got {type(got).__name__}"
            )
        if len(got) != len(expected):
            return (
                f"expected {len(expected)} states (the input, then one after each of the {len(expected) - 1} "
                f"steps), got {len(got)}: a step missing or one too many?"
            )
        for k, (e, g) in enumerate(zip(expected, got)):
            problem = _difference(e, g, atol=atol, rtol=rtol, label=f"state {k} (after step {k})")
            if problem:
                return problem
        return None

    return compare


def _grid(ts: Tensor) -> str:
    values = [f"{v:.2f}" for v in ts.tolist()]
    if len(values) > 6:
        values = values[:3] + ["..."] + values[-2:]
    return f"ts = [{', '.join(values)}] ({len(ts) - 1} steps)"


# ---------------------------------------------------------------------------------------------
# Notebook 02: the strided DDPM loop

_DDPM_HIDE = (
    "samplers.ddpm",
    "samplers.ddpm_step",
    "samplers.ddim",
    "samplers.ddim_step",
    "samplers.predict_x0",
    "samplers.posterior_variance",
    "schedules.Schedule.posterior_mean_coefs",
    "schedules.Schedule.posterior_variance",
)


def _ddpm_beta_variance(model, x: Tensor, ts: Tensor, schedule, generator) -> tuple:
    """DDPM with sigma^2 = beta (Ho et al.'s other choice), x0_hat clipped, no noise on the step to t = 0."""
    states = [x]
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        ab_t, ab_s = schedule.alpha_bar(torch.tensor(t)), schedule.alpha_bar(torch.tensor(s))
        eps_hat = model(x, torch.full((x.shape[0],), t))
        z = torch.randn(x.shape, generator=generator)
        beta = 1 - ab_t / ab_s
        x0_hat = ((x - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()).clamp(-1, 1)
        mean = ab_s.sqrt() * beta / (1 - ab_t) * x0_hat + (1 - beta).sqrt() * (1 - ab_s) / (1 - ab_t) * x
        x = mean + (beta.sqrt() * z if s > 0 else 0.0)
        states.append(x)
    return tuple(states)


def check_ddpm_loop(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x, ts, schedule, generator) -> [x_ts[0], ..., x_ts[-1]]``: DDPM over a strided grid.

    For each consecutive pair (t, s) of ``ts``: eps_hat = model(x, t) (t shaped (B,)), x0_hat clipped
    to [-1, 1] and eps_hat recomputed from it, one fresh z ~ N(0, I) from ``generator``,
    x = ddpm_step(x, eps_hat, abar_t, abar_s, z). Compared with ``samplers.ddpm(..., clip_x0=True)``
    on an oracle model under the same generator; the posterior variance
    (the course's) and sigma^2 = beta (Ho et al. 2020, sec. 3.2) are both accepted.
    """
    from .. import samplers

    linear, cosine = schedules.linear_schedule(1000), schedules.cosine_schedule(1000)
    grids = (
        (linear, schedules.step_grid(1000, 990, 30), (2, 1, 8, 8)),
        (cosine, schedules.step_grid(1000, 390, 30), (3, 1, 6, 6)),
        (linear, torch.tensor([0.5, 0.3, 0.1, 0.0]), (1, 1, 4, 4)),
        (cosine, torch.tensor([0.9, 0.6, 0.3]), (2, 2, 5, 7)),  # ends before the data
    )
    cases = []
    for seed, (schedule, ts, shape) in enumerate(grids):
        model = _OracleModel(seed, channels=shape[1])
        x = torch.randn(shape, generator=_seeded(10 + seed))
        with torch.no_grad():
            _, course = samplers.ddpm(
                model, x, ts, schedule=schedule, generator=_seeded(20 + seed), return_trajectory=True, clip_x0=True
            )
            beta = _ddpm_beta_variance(model, x, ts, schedule, _seeded(20 + seed))
        expected = Alternatives({"the posterior variance": tuple(course), "sigma^2 = beta": beta})
        about = f"x {shape}, {schedule.name}, {_grid(ts)}, generator seeded {20 + seed}"
        cases.append(Case(about, (model, x, ts, schedule, _seeded(20 + seed)), expected))
    hint = (
        "for each consecutive pair (t, s) of ts: eps_hat = model(x, torch.full((B,), t)) (at t, the time "
        "x is at, not s); abar_t, abar_s = schedule.alpha_bar(t), schedule.alpha_bar(s); "
        "x0_hat = (x - sqrt(1 - abar_t) "
        "eps_hat) / sqrt(abar_t) clipped to [-1, 1], and eps_hat = (x - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t) "
        "recomputed from it; a NEW z = torch.randn(x.shape, generator=generator) every step; "
        "x = ddpm_step(x, eps_hat, abar_t, abar_s, z); the list holds the input and the state after every step "
        "(len(ts) tensors). Check ddpm_step first"
    )
    atol = rtol = 1e-3
    hint = _hint(fn, cases, _DDPM_MISTAKES, hint, hide=_DDPM_HIDE, compare=_trajectory_compare(atol, rtol))
    return run_cases(
        "strided DDPM loop",
        fn,
        cases,
        hint=hint,
        hide=_DDPM_HIDE,
        compare=_trajectory_compare(atol, rtol),
        verbose=verbose,
    )


# ---------------------------------------------------------------------------------------------
# Run a function that changes its arguments (a training step): a wrapper that returns what changed


def _run_changing(
    exercise: str,
    fn: Callable,
    cases: Sequence[Case],
    call: Callable,
    *,
    hint: str,
    hide: Sequence[str],
    atol: float,
    rtol: float,
    verbose: bool,
) -> CheckResult:
    """``run_cases`` for a function whose effect is on its arguments: ``call(fn, *case.args)``
    runs it (with the course's versions in ``hide`` switched off) and returns what to compare."""
    if not callable(fn) or _is_course_version(fn):
        return run_cases(exercise, fn, cases, hint=hint, verbose=verbose)  # the verdict comes before any call

    def wrapped(*args):
        with course_hidden(hide, fn):
            return call(fn, *args)

    return run_cases(exercise, wrapped, cases, atol=atol, rtol=rtol, hint=hint, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 03: the UNet's forward pass from its blocks, and one training step of the denoiser


def check_unet_forward(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(net, x) -> output``: the MNIST UNet's forward pass (no time, no class) from ``net``'s blocks.

    Compared with ``MnistUNet.forward`` on small UNets with random weights (widths 2 and 4, 28x28 and
    12x12 images), in training mode (BatchNorm on batch statistics) and in evaluation mode.
    """
    from ..unet import UNetConfig, build_unet

    cases = []
    for seed, (hidden, size, batch, train) in enumerate(((4, 28, 2, False), (2, 12, 3, True), (3, 28, 1, False))):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(90 + seed)
            net = build_unet(UNetConfig.mnist(hidden, time_cond=False).replace(image_size=size))
            with torch.no_grad():
                for buffer_name, buffer in net.named_buffers():  # BatchNorm statistics away from 0 and 1
                    if buffer_name.endswith("running_mean"):
                        buffer.copy_(0.1 * torch.randn(buffer.shape))
                    elif buffer_name.endswith("running_var"):
                        buffer.copy_(0.5 + torch.rand(buffer.shape))
        net.train(train).requires_grad_(False)
        x = torch.randn(batch, 1, size, size, generator=_seeded(95 + seed))
        with torch.no_grad():
            expected = net(x)
        mode = "training mode" if train else "evaluation mode"
        cases.append(Case(f"UNet of width D = {hidden}, x {tuple(x.shape)}, {mode}", (net, x), expected))
    hint = (
        "e1 = enc1(x), e2 = enc2(e1), e3 = enc3(e2); u0 = unflatten(flatten(e3)); u1 = dec1(cat([e3, u0])); "
        "u2 = dec2(cat([e2, u1])); out(dec3(cat([e1, u2]))): each skip joins the encoder map of the same size, "
        "the encoder map FIRST, along the channels (dim=1)"
    )
    hint = _hint(fn, cases, _UNET_MISTAKES, hint, hide=("unet.MnistUNet.forward",), atol=1e-5, rtol=1e-4)
    return run_cases(
        "UNet forward pass", fn, cases, atol=1e-5, rtol=1e-4, hint=hint, hide=("unet.MnistUNet.forward",),
        verbose=verbose,
    )  # fmt: skip


class _TinyNet(nn.Module):
    """Conv - GELU - conv, weights from ``seed``: a denoiser small enough to step in microseconds."""

    def __init__(self, seed: int):
        super().__init__()
        g = _seeded(seed)
        with torch.random.fork_rng(devices=[]):
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GELU(), nn.Conv2d(4, 1, 3, padding=1))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        return self.net(x)


def _optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-2)
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _course_train_step(model, optimizer, z, x0):
    loss = F.mse_loss(model(z), x0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _two_steps(step: Callable, seed: int, optimizer: str, batches: tuple) -> tuple:
    """Two calls of ``step`` from fresh weights: (loss 1, loss 2, every parameter after)."""
    model = _TinyNet(seed)
    opt = _optimizer(optimizer, model)
    (z1, x1), (z2, x2) = batches
    loss1 = step(model, opt, z1, x1)
    loss2 = step(model, opt, z2, x2)
    as_number = lambda v: float(v.detach()) if torch.is_tensor(v) and v.numel() == 1 else v  # noqa: E731
    return (as_number(loss1), as_number(loss2), *(p.detach().clone() for p in model.parameters()))


def check_train_step(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, optimizer, z, x0) -> loss``: one step of gradient descent on mean((model(z) - x0)^2).

    Two steps from the same initial weights on the same two batches (Adam, and SGD with momentum),
    compared with the course's step: both losses, then every weight after the second step (a
    forgotten ``zero_grad`` shows there, as gradients add up).
    """
    cases = []
    for seed, (optimizer, shape, sigma) in enumerate((("adam", (4, 1, 8, 8), 0.5), ("sgd", (3, 1, 6, 6), 0.3))):
        g = _seeded(30 + seed)
        batches = []
        for _ in range(2):
            x0 = torch.rand(shape, generator=g)
            batches.append((x0 + sigma * torch.randn(shape, generator=g), x0))
        expected = _two_steps(_course_train_step, seed, optimizer, tuple(batches))
        about = (
            f"a small conv net, {'Adam lr 1e-2' if optimizer == 'adam' else 'SGD lr 0.1 momentum 0.9'}, two steps "
            f"on batches {shape} (z = x0 + {sigma} eps); compared: loss 1, loss 2, then the weights"
        )
        cases.append(Case(about, (seed, optimizer, tuple(batches)), expected))
    hint = (
        "loss = mean((model(z) - x0) ** 2) (the clean x0 is the target, a mean over every pixel); then "
        "optimizer.zero_grad() (else the gradients of earlier steps add up), loss.backward(), optimizer.step(), "
        "in that order; return loss.item()"
    )

    def call(step, seed, optimizer, batches):
        return _two_steps(step, seed, optimizer, batches)

    hint = _hint(fn, cases, _TRAIN_MISTAKES, hint, hide=("losses.denoising_loss",), atol=1e-5, rtol=1e-4, call=call)

    return _run_changing(
        "denoiser training step", fn, cases, call, hint=hint, hide=("losses.denoising_loss",), atol=1e-5,
        rtol=1e-4, verbose=verbose,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Notebook 04: the flow-matching loss and the Euler loop


def _loss_cases(with_labels: bool) -> list[Case]:
    from .. import losses

    cases = []
    shapes = ((4, 1, 8, 8), (3, 1, 6, 6), (2, 2, 5, 7))
    options = (0.0, 0.5, 1.0) if with_labels else (None, None, None)
    for seed, (shape, p) in enumerate(zip(shapes, options)):
        model = _OracleModel(seed, channels=shape[1])
        x0 = torch.randn(shape, generator=_seeded(40 + seed))
        labels = torch.randint(0, N_CLASSES, (shape[0],), generator=_seeded(50 + seed))
        batch = (x0, labels) if with_labels else x0
        with torch.no_grad():
            expected = losses.flow_matching_loss(model, batch, p_uncond=p or 0.0, generator=_seeded(60 + seed))
        if with_labels:
            args = (model, x0, labels, p, _seeded(60 + seed))
            about = f"x0 {shape}, labels {labels.tolist()}, p_uncond = {p}, generator seeded {60 + seed}"
        else:
            args = (model, x0, _seeded(60 + seed))
            about = f"x0 {shape}, generator seeded {60 + seed}"
        cases.append(Case(about, args, expected))
    return cases


_LOSS_HIDE = ("losses.flow_matching_loss", "losses.ddpm_loss", "schedules.FlowSchedule.add_noise")
_FM_STEPS = (
    "t = torch.rand(B, generator=generator) FIRST (uniform in [0, 1], one per image), then "
    "eps = torch.randn(x0.shape, generator=generator); xt = (1 - t) x0 + t eps with t reshaped to (B, 1, 1, 1); "
    "the target is u = eps - x0 (not x0 - eps); call model(xt, t) with t of shape (B,); "
    "loss = mean((model output - u) ** 2) over every pixel (a mean, not a sum)"
)


def check_flow_matching_loss(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x0, generator) -> loss``: the flow-matching loss of one batch (Lipman et al. 2023).

    Draws t ~ U[0, 1] (B,) and then eps ~ N(0, I) from ``generator``, in that order, as
    ``losses.flow_matching_loss`` does; compared with it on an oracle model.
    """
    cases = _loss_cases(False)
    hint = _hint(fn, cases, _FM_MISTAKES, _FM_STEPS, hide=_LOSS_HIDE, atol=1e-5, rtol=1e-4)
    return run_cases(
        "flow-matching loss", fn, cases, atol=1e-5, rtol=1e-4, hint=hint, hide=_LOSS_HIDE,
        verbose=verbose,
    )  # fmt: skip


_EULER_HIDE = ("samplers.euler", "samplers.euler_step", "samplers.heun", "samplers.heun_step", "samplers.ddim")


def _euler_cases(with_guidance: bool) -> list[Case]:
    from .. import guidance, samplers

    grids = (
        (schedules.time_grid(10), (2, 1, 8, 8), 5.0),
        (schedules.time_grid(3), (3, 1, 6, 6), 0.0),
        (torch.tensor([1.0, 0.7, 0.2, 0.0]), (2, 2, 5, 7), 1.0),
        (torch.tensor([0.8, 0.5, 0.4]), (1, 1, 4, 4), -1.0),  # starts below 1 and stops before the data
    )
    cases = []
    for seed, (ts, shape, w) in enumerate(grids):
        model = _OracleModel(seed, channels=shape[1])
        x = torch.randn(shape, generator=_seeded(70 + seed))
        labels = torch.randint(0, N_CLASSES, (shape[0],), generator=_seeded(80 + seed))
        with torch.no_grad():
            if with_guidance:
                expected = samplers.euler(guidance.cfg(model, w), x, ts, cond=labels)
            else:
                expected = samplers.euler(model, x, ts)
        if with_guidance:
            cases.append(
                Case(f"x {shape}, labels {labels.tolist()}, w = {w}, {_grid(ts)}", (model, x, labels, w, ts), expected)
            )
        else:
            cases.append(Case(f"x {shape}, {_grid(ts)}", (model, x, ts), expected))
    return cases


def check_euler_loop(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x, ts) -> x at ts[-1]``: Euler's method on dx/dt = u(x, t) along the grid ``ts``.

    For each consecutive pair (t, s): x = x + (s - t) model(x, t) (s < t: a step backwards in time).
    Compared with ``samplers.euler`` on an oracle velocity model.
    """
    hint = (
        "for each consecutive pair (t, s) of ts (zip(ts[:-1], ts[1:])): u = model(x, torch.full((B,), t)) at t, "
        "the time x is at; x = x + (s - t) * u (s < t, so this moves towards the data); return x after the "
        "last pair (len(ts) - 1 steps)"
    )
    cases = _euler_cases(False)
    hint = _hint(fn, cases, _EULER_MISTAKES, hint, hide=_EULER_HIDE, atol=1e-4, rtol=1e-4)
    return run_cases(
        "Euler sampling loop", fn, cases, atol=1e-4, rtol=1e-4, hint=hint, hide=_EULER_HIDE,
        verbose=verbose,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Notebook 05: the loss with condition dropout and the guided Euler loop


def check_cfg_loss(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x0, labels, p_uncond, generator) -> loss``: flow matching with condition dropout.

    First ``drop = torch.rand(B, generator=generator) < p_uncond`` and dropped labels become -1;
    then t and eps as in notebook 04. Compared with ``losses.flow_matching_loss(..., p_uncond=p)``.
    """
    hint = (
        "first drop = torch.rand(B, generator=generator) < p_uncond (True with probability p_uncond: those "
        "labels become -1, 'no class'; the others stay); then " + _FM_STEPS + "; call model(xt, t, dropped labels)"
    )
    hide = _LOSS_HIDE + ("conditions.drop_condition", "losses.drop_condition")
    cases = _loss_cases(True)
    hint = _hint(fn, cases, _CFG_LOSS_MISTAKES, hint, hide=hide, atol=1e-5, rtol=1e-4)
    return run_cases(
        "flow-matching loss with condition dropout", fn, cases, atol=1e-5, rtol=1e-4, hint=hint,
        hide=hide, verbose=verbose,
    )  # fmt: skip


def check_cfg_sampling(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x, labels, w, ts) -> x at ts[-1]``: Euler with classifier-free guidance.

    At each step the model is called with the labels and with "no class" (-1), the two velocities
    are combined with scale w (w = 0 unconditional, w = 1 conditional) and one Euler step is taken.
    Compared with ``samplers.euler(guidance.cfg(model, w), x, ts, cond=labels)`` on an oracle model.
    """
    hint = (
        "for each pair (t, s): u_cond = model(x, tt, labels), u_uncond = model(x, tt, torch.full_like(labels, -1)) "
        "with tt = torch.full((B,), t); u = cfg_combine(u_uncond, u_cond, w) (unconditional first); "
        "x = x + (s - t) * u; return x after the last pair"
    )
    hide = _EULER_HIDE + ("guidance.cfg", "guidance.negative_guidance")
    cases = _euler_cases(True)
    hint = _hint(fn, cases, _CFG_SAMPLING_MISTAKES, hint, hide=hide, atol=1e-4, rtol=1e-4)
    return run_cases(
        "guided Euler sampling", fn, cases, atol=1e-4, rtol=1e-4, hint=hint, hide=hide,
        verbose=verbose,
    )  # fmt: skip


LOOP_CHECKERS: dict[str, Callable[..., CheckResult]] = {
    "strided DDPM loop": check_ddpm_loop,
    "UNet forward pass": check_unet_forward,
    "denoiser training step": check_train_step,
    "flow-matching loss": check_flow_matching_loss,
    "Euler sampling loop": check_euler_loop,
    "flow-matching loss with condition dropout": check_cfg_loss,
    "guided Euler sampling": check_cfg_sampling,
}


# ---------------------------------------------------------------------------------------------
# The course's versions, with the students' signatures: `name = checks.course_version("name")`.
# Written out (they call no course function a check switches off), so they also work inside
# another exercise's check.


@register_course_version("denoise_iteratively")
@torch.no_grad()
def _denoise_iteratively(model, x, ts, schedule, generator):
    states = [x]
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        ab_t, ab_s = schedule.alpha_bar(torch.tensor(t)).to(x.device), schedule.alpha_bar(torch.tensor(s)).to(x.device)
        eps_hat = model(x, torch.full((x.shape[0],), t, device=x.device))
        z = torch.randn(x.shape, generator=generator).to(x.device)
        x0_hat = ((x - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()).clamp(-1, 1)
        beta = 1 - ab_t / ab_s
        mean = ab_s.sqrt() * beta / (1 - ab_t) * x0_hat + (1 - beta).sqrt() * (1 - ab_s) / (1 - ab_t) * x
        x = mean + ((1 - ab_s) / (1 - ab_t) * beta).sqrt() * z
        states.append(x)
    return states


@register_course_version("unet_forward")
def _unet_forward(net, x):
    e1 = net.enc1(x)  # (B, D, 28, 28)
    e2 = net.enc2(e1)  # (B, D, 14, 14)
    e3 = net.enc3(e2)  # (B, 2D, 7, 7)
    u0 = net.unflatten(net.flatten(e3))  # (B, 2D, 7, 7)
    u1 = net.dec1(torch.cat([e3, u0], dim=1))  # (B, D, 14, 14)
    u2 = net.dec2(torch.cat([e2, u1], dim=1))  # (B, D, 28, 28)
    return net.out(net.dec3(torch.cat([e1, u2], dim=1)))


@register_course_version("train_step")
def _train_step(model, optimizer, z, x0):
    return _course_train_step(model, optimizer, z, x0)


def _fm_loss(model, x0, labels, generator):
    t = torch.rand(x0.shape[0], generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    tb = t[:, None, None, None]
    xt = (1 - tb) * x0 + tb * eps
    return ((model(xt, t) if labels is None else model(xt, t, labels)) - (eps - x0)).pow(2).mean()


@register_course_version("flow_matching_loss")
def _flow_matching_loss(model, x0, generator):
    return _fm_loss(model, x0, None, generator)


@register_course_version("cfg_flow_matching_loss")
def _cfg_flow_matching_loss(model, x0, labels, p_uncond, generator):
    drop = torch.rand(x0.shape[0], generator=generator).to(labels.device) < p_uncond
    return _fm_loss(model, x0, torch.where(drop, torch.full_like(labels, -1), labels), generator)


@register_course_version("euler_sample")
@torch.no_grad()
def _euler_sample(model, x, ts):
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        x = x + (s - t) * model(x, torch.full((x.shape[0],), t, device=x.device))
    return x


@register_course_version("cfg_euler_sample")
@torch.no_grad()
def _cfg_euler_sample(model, x, labels, w, ts):
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        tt = torch.full((x.shape[0],), t, device=x.device)
        u_cond, u_uncond = model(x, tt, labels), model(x, tt, torch.full_like(labels, -1))
        x = x + (s - t) * (u_uncond + w * (u_cond - u_uncond))
    return x


# ---------------------------------------------------------------------------------------------
# The typical mistakes: when an answer reproduces one of them on every case, the hint names it


def _fresh(value):
    """A copy of a case's argument; a generator is copied with its state, so each run draws the same."""
    if isinstance(value, torch.Generator):
        copy = torch.Generator(device=value.device)
        copy.set_state(value.get_state())
        return copy
    return value.detach().clone() if torch.is_tensor(value) else value


def _likely_mistake(fn, cases, mistakes: dict, *, hide, compare, call=None) -> str | None:
    """The name of the typical mistake whose answers ``fn`` reproduces on every case, else None."""
    if not callable(fn) or _is_course_version(fn):
        return None
    run = call or (lambda f, *args: f(*args))
    answers = []
    for case in cases:
        try:
            with course_hidden(hide, fn):
                answers.append(run(fn, *(_fresh(a) for a in case.args)))
        except Exception:  # noqa: BLE001 - the check itself reports errors, not-done stubs included
            return None
    for name, mistake in mistakes.items():
        try:
            wrong = [run(mistake, *(_fresh(a) for a in case.args)) for case in cases]
        except Exception:  # noqa: BLE001 - a mistake that does not apply to these inputs
            continue
        if all(compare(w, got) is None for w, got in zip(wrong, answers)):
            return name
    return None


def _hint(fn, cases, mistakes: dict, hint: str, *, hide=(), atol=1e-5, rtol=1e-5, compare=None, call=None) -> str:
    compare = compare or (lambda expected, got: _difference(expected, got, atol=atol, rtol=rtol))
    name = _likely_mistake(fn, cases, mistakes, hide=hide, compare=compare, call=call)
    return f"it looks like {name}. In full: {hint}" if name else hint


def _ddpm_mistake(*, at_s=False, one_z=False, no_noise=False, clip=True, skip_last=False, steps=False):
    def loop(model, x, ts, schedule, generator):
        states, z = [x], None
        pairs = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
        for t, s in pairs[:-1] if skip_last else pairs:
            ab_t, ab_s = schedule.alpha_bar(torch.tensor(t)), schedule.alpha_bar(torch.tensor(s))
            eps_hat = model(x, torch.full((x.shape[0],), (s if at_s else t) * (1000 if steps else 1)))
            x0_hat = (x - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()
            x0_hat = x0_hat.clamp(-1, 1) if clip else x0_hat
            z = z if (one_z and z is not None) else torch.randn(x.shape, generator=generator)
            beta = 1 - ab_t / ab_s
            mean = ab_s.sqrt() * beta / (1 - ab_t) * x0_hat + (1 - beta).sqrt() * (1 - ab_s) / (1 - ab_t) * x
            x = mean if no_noise else mean + ((1 - ab_s) / (1 - ab_t) * beta).sqrt() * z
            states.append(x)
        return states

    return loop


_DDPM_MISTAKES = {
    "the model is called at s, the time after the step, instead of t, the time x is at": _ddpm_mistake(at_s=True),
    "one z is drawn once and used at every step (draw a new z each step)": _ddpm_mistake(one_z=True),
    "no noise is added (z = 0, or a zero variance)": _ddpm_mistake(no_noise=True),
    "x0_hat is not clipped to [-1, 1]": _ddpm_mistake(clip=False),
    "the last step is missing": _ddpm_mistake(skip_last=True),
    "the model gets DDPM's integer step (1000 t) instead of the time t in [0, 1]": _ddpm_mistake(steps=True),
}


def _unet_mistake(*, decoder_first=False, no_bottleneck=False):
    def forward(net, x):
        def join(enc, dec):
            return torch.cat([dec, enc] if decoder_first else [enc, dec], dim=1)

        e1 = net.enc1(x)
        e2 = net.enc2(e1)
        e3 = net.enc3(e2)
        u0 = e3 if no_bottleneck else net.unflatten(net.flatten(e3))
        return net.out(net.dec3(join(e1, net.dec2(join(e2, net.dec1(join(e3, u0)))))))

    return forward


_UNET_MISTAKES = {
    "the decoder map comes first in the concatenations (the encoder map goes first)": _unet_mistake(decoder_first=True),
    "the bottleneck is skipped (u0 = unflatten(flatten(e3)), not e3)": _unet_mistake(no_bottleneck=True),
}


def _train_mistake(*, zero_grad=True, target_z=False, reduce="mean", step_first=False):
    def step(model, optimizer, z, x0):
        err = (model(z) - (z if target_z else x0)) ** 2
        loss = err.mean() if reduce == "mean" else err.sum()
        if zero_grad:
            optimizer.zero_grad()
        if step_first:
            optimizer.step()
            loss.backward()
        else:
            loss.backward()
            optimizer.step()
        return loss.item()

    return step


_TRAIN_MISTAKES = {
    "optimizer.zero_grad() is missing, so the gradients of the steps add up": _train_mistake(zero_grad=False),
    "the target is the noisy z instead of the clean x0": _train_mistake(target_z=True),
    "the loss is a sum instead of a mean": _train_mistake(reduce="sum"),
    "optimizer.step() comes before loss.backward()": _train_mistake(step_first=True),
}


def _fm_mistake(*, sign=1, reversed_path=False, eps_first=False, reduce="mean", normal_t=False, labels_kind=None):
    def loss(model, x0, *rest):
        generator = rest[-1]
        labels = None
        if labels_kind is not None:  # the loss with condition dropout: (labels, p_uncond, generator)
            labels, p = rest[0], rest[1]
            u = torch.rand(x0.shape[0], generator=generator) if labels_kind != "after" else None
            labels = _drop(labels, u, p, labels_kind) if u is not None else labels
        if eps_first:
            eps = torch.randn(x0.shape, generator=generator)
            t = torch.rand(x0.shape[0], generator=generator)
        else:
            t = (torch.randn if normal_t else torch.rand)(x0.shape[0], generator=generator)
            eps = torch.randn(x0.shape, generator=generator)
        if labels_kind == "after":
            labels = _drop(rest[0], torch.rand(x0.shape[0], generator=generator), rest[1], "right")
        tb = t[:, None, None, None]
        xt = tb * x0 + (1 - tb) * eps if reversed_path else (1 - tb) * x0 + tb * eps
        out = model(xt, t) if labels is None else model(xt, t, labels)
        err = (out - sign * (eps - x0)) ** 2
        return err.mean() if reduce == "mean" else err.sum()

    return loss


def _drop(labels, u, p, kind):
    if kind == "none":
        return labels
    drop = u > p if kind == "inverted" else u < p
    return torch.where(drop, torch.full_like(labels, 0 if kind == "zero" else -1), labels)


_FM_MISTAKES = {
    "the target is x0 - eps (the velocity is eps - x0)": _fm_mistake(sign=-1),
    "the path runs the other way (xt = t x0 + (1 - t) eps)": _fm_mistake(reversed_path=True),
    "eps is drawn before t": _fm_mistake(eps_first=True),
    "the loss is a sum instead of a mean": _fm_mistake(reduce="sum"),
    "t is drawn from a normal distribution (torch.randn) instead of U[0, 1] (torch.rand)": _fm_mistake(normal_t=True),
}
_CFG_LOSS_MISTAKES = {
    "labels are KEPT with probability p_uncond (rand > p_uncond instead of rand < p_uncond)": _fm_mistake(
        labels_kind="inverted"
    ),
    "dropped labels become 0, a real digit, instead of -1": _fm_mistake(labels_kind="zero"),
    "no label is dropped (the dropout draw is made but not used)": _fm_mistake(labels_kind="none"),
    "the dropout is drawn after t and eps (draw it first)": _fm_mistake(labels_kind="after"),
    "the target is x0 - eps (the velocity is eps - x0)": _fm_mistake(sign=-1, labels_kind="right"),
}


def _euler_mistake(*, sign=1, at_s=False, skip_last=False, guided=False, swapped=False, w_plus_one=False):
    def loop(model, x, *rest):
        labels, w, ts = rest if guided else (None, None, rest[0])
        pairs = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
        for t, s in pairs[:-1] if skip_last else pairs:
            tt = torch.full((x.shape[0],), s if at_s else t)
            if guided:
                u_cond, u_uncond = model(x, tt, labels), model(x, tt, torch.full_like(labels, -1))
                if swapped:
                    u_cond, u_uncond = u_uncond, u_cond
                scale = w + 1 if w_plus_one else w
                u = u_uncond + scale * (u_cond - u_uncond)
            else:
                u = model(x, tt)
            x = x + sign * (s - t) * u
        return x

    return loop


_EULER_MISTAKES = {
    "the step has the wrong sign (x + (t - s) u instead of x + (s - t) u)": _euler_mistake(sign=-1),
    "the model is called at s, the time after the step, instead of t": _euler_mistake(at_s=True),
    "the last step is missing": _euler_mistake(skip_last=True),
}
_CFG_SAMPLING_MISTAKES = {
    "the conditional and unconditional outputs are swapped": _euler_mistake(guided=True, swapped=True),
    "the scale is 1 + w (the course's w = 1 is the conditional model; Ho & Salimans write 1 + w)": _euler_mistake(
        guided=True, w_plus_one=True
    ),
    "the model is called at s, the time after the step, instead of t": _euler_mistake(guided=True, at_s=True),
    "the step has the wrong sign (x + (t - s) u instead of x + (s - t) u)": _euler_mistake(guided=True, sign=-1),
    "the last step is missing": _euler_mistake(guided=True, skip_last=True),
}
