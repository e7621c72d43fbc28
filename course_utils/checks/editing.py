"""Checkers of the whole-function exercises of notebooks 06-11: sampler loops and steps, edits,
model wrappers, a feature and a ResBlock.

Loops run on small oracle models (a fixed tiny convolution, or an analytic model) next to the
course's own loop under the same generator; wrappers are compared on an oracle model whose output
depends on ``x``, ``t`` and ``cond``; the ResBlock on blocks with random weights. Every expected
value is computed before the student's function runs, and the course functions that implement
the exercise are switched off meanwhile.

=====================  ==========================================  ========  ==============================
checker                student function                            notebook  compared with
=====================  ==========================================  ========  ==============================
check_ddim_sample      (model, x, ts, schedule, eta, generator)    06        ``samplers.ddim``
check_heun_step        (model, x, t, s, cond) -> x_s               06        ``samplers.heun_step``
check_sdedit           (model, x_input, ts, i_start, schedule,     08        ``editing.sdedit``
                       sampler, cond, generator)
check_inpaint          (model, x_orig, known, ts, schedule,        08        ``editing.inpaint``
                       sampler, generator)
check_anagram          (model, cond_a, cond_b, view) -> model_fn   08        ``editing.anagram``
check_hybrid           (model, cond_low, cond_high, sigma, ksize)  08        ``editing.hybrid``
                       -> model_fn
check_temperature      (rgb) -> float                              09        ``features.extract_features``
check_high_sat_ratio   (rgb) -> float                              09        ``features.extract_features``
check_pca_code         (patches, C) -> (mean, basis)               10        ``autoencoder.pca_of``
check_resblock         (block, x, emb) -> out                      11        ``layers.ResBlock.forward``
=====================  ==========================================  ========  ==============================
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .. import schedules
from .engine import (
    SEEDS,
    Alternatives,
    Case,
    CheckResult,
    _is_course_version,
    _seeded,
    _student_globals,
    _times,
    _vp_schedules,
    register_course_version,
    run_cases,
)

__all__ = [
    "check_ddim_sample",
    "check_heun_step",
    "check_sdedit",
    "check_inpaint",
    "check_anagram",
    "check_hybrid",
    "check_temperature",
    "check_high_sat_ratio",
    "check_pca_code",
    "check_resblock",
]


# ---------------------------------------------------------------------------------------------
# Oracle models: small, fixed, deterministic; they never call a course function that a check hides


def _time_batch(x: Tensor, t) -> Tensor:
    """The model's ``t`` must be a (B,) tensor, as the course's samplers pass it."""
    if not torch.is_tensor(t) or t.shape != (x.shape[0],):
        got = f"a tensor of shape {tuple(t.shape)}" if torch.is_tensor(t) else type(t).__name__
        raise TypeError(
            f"the model wants t as a (B,) tensor, one time per image (torch.full((x.shape[0],), t)), got {got}"
        )
    return t.to(x.dtype).reshape(-1, 1, 1, 1)


class _ConvModel:
    """A fixed 3x3 convolution whose output also depends on t (and, with classes, on cond).

    ``classes`` > 0: ``cond`` must be a (B,) tensor of class ids; each class adds its own fixed
    pattern, so a model asked for the wrong class answers differently.
    """

    def __init__(self, seed: int, channels: int = 1, classes: int = 0, size: tuple[int, int] = (8, 8)):
        g = _seeded(seed)
        self.weight = 0.3 * torch.randn(channels, channels, 3, 3, generator=g)
        self.bias = 0.1 * torch.randn(channels, generator=g)
        self.classes = classes
        self.patterns = 0.5 * torch.randn(max(classes, 1), channels, *size, generator=g)

    def __call__(self, x: Tensor, t, cond=None) -> Tensor:
        tt = _time_batch(x, t)
        out = torch.nn.functional.conv2d(x, self.weight, self.bias, padding=1) * (1 + tt) + 0.3 * tt * x
        if self.classes:
            if not torch.is_tensor(cond) or cond.shape != (x.shape[0],):
                raise TypeError(
                    "the model wants cond as a (B,) tensor of class ids, one per image "
                    "(torch.full((x.shape[0],), c, device=x.device)), got "
                    + (f"shape {tuple(cond.shape)}" if torch.is_tensor(cond) else type(cond).__name__)
                )
            out = out + self.patterns[cond.long()] * (0.5 + tt)
        return out


class _BoundedEps:
    """An epsilon model whose clean-image estimate is bounded: x0_hat = tanh(conv(x) (1 + t)), eps_hat =
    (x - alpha(t) x0_hat) / sigma(t). Samplers stay at image scale with it, as with a trained model."""

    def __init__(self, seed: int, schedule):
        self.conv, self.schedule = _ConvModel(seed), schedule

    def __call__(self, x: Tensor, t, cond=None) -> Tensor:
        tt = _time_batch(x, t)
        x0_hat = torch.tanh(self.conv(x, t))
        return (x - self.schedule.alpha(tt) * x0_hat) / self.schedule.sigma(tt)


class _OnePointEps:
    """The perfect epsilon model of a one-image data set ``x0``: eps_hat = (x - alpha(t) x0) / sigma(t)."""

    def __init__(self, x0: Tensor, schedule):
        self.x0, self.schedule = x0, schedule

    def __call__(self, x: Tensor, t, cond=None) -> Tensor:
        tt = _time_batch(x, t)
        alpha, sigma = self.schedule.alpha(tt), self.schedule.sigma(tt)
        return (x - alpha * self.x0) / sigma


def _linear_velocity(seed: int) -> Callable:
    """An analytic velocity model u = a(t) x + b, with a different slope per pixel."""
    g = _seeded(seed)
    a, b = 0.5 * torch.randn(1, 1, 6, 6, generator=g), torch.randn(1, 1, 6, 6, generator=g)

    def model(x: Tensor, t, cond=None) -> Tensor:
        tt = _time_batch(x, t)
        return a * (1 + tt) * x + b * tt

    return model


class _Applied:
    """Call the student's function, then what it returns (a model function) on ``(x, t)``.

    The engine sees the student's namespace through ``__globals__``, so the course functions that
    the student's code might call are switched off there as well.
    """

    def __init__(self, fn: Callable, call: Callable):
        self.fn, self.call = fn, call
        self.__globals__ = _student_globals(fn) or {}

    def __call__(self, *args):
        return self.call(self.fn, *args)


def _target(fn, call: Callable):
    """What :func:`run_cases` runs: ``fn`` itself when it is not callable or is the course's version
    (the engine reports those), else the student's function followed by ``call``."""
    if not callable(fn) or _is_course_version(fn):
        return fn
    return _Applied(fn, call)


def _ts(n: int) -> Tensor:
    return schedules.time_grid(n)


# ---------------------------------------------------------------------------------------------
# Notebook 06: the DDIM loop and a Heun step


def check_ddim_sample(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x, ts, schedule, eta, generator) -> x`` at ts[-1]: DDIM (Song et al. 2021) as a loop.

    For each consecutive pair (t, s) of the decreasing grid ``ts``: eps_hat = model(x, t as a (B,)
    tensor), z from ``generator``, then the student's ``ddim_step``. Compared with ``samplers.ddim``
    under the same generator, on a tiny convolution and on the perfect model of a one-image data
    set (with eta = 0 it must land on that image), on the linear and cosine schedules, eta 0, 0.5, 1.
    """
    from .. import samplers

    cases = []
    linear, cosine = _vp_schedules()
    settings = ((linear, 0.0, 5), (linear, 1.0, 4), (cosine, 0.0, 5), (cosine, 1.0, 4), (cosine, 0.5, 6))
    for seed, (schedule, eta, n) in enumerate(settings):
        g = _seeded(seed)
        shape = (2, 1, 8, 8) if seed % 2 == 0 else (3, 1, 8, 8)
        x = torch.randn(shape, generator=g)
        ts = schedules.step_times(n, 1000)
        model = _BoundedEps(seed, schedule)
        expected = samplers.ddim(model, x, ts, schedule=schedule, eta=eta, generator=_seeded(50 + seed))
        about = f"stand-in eps model, x {shape}, {schedule.name}, {n} steps {_times(ts)}, eta = {eta}, seed {seed}"
        cases.append(Case(about, (model, x, ts, schedule, eta, _seeded(50 + seed)), expected))
    x0 = torch.rand(2, 1, 8, 8, generator=_seeded(9)) * 2 - 1
    schedule = schedules.cosine_schedule(1000)
    x = torch.randn(2, 1, 8, 8, generator=_seeded(10))
    ts = schedules.step_times(3, 1000)
    model = _OnePointEps(x0, schedule)
    expected = samplers.ddim(model, x, ts, schedule=schedule, eta=0.0, generator=_seeded(11))
    cases.append(
        Case(
            "perfect model of a one-image data set, cosine, 3 steps, eta = 0 (must return that image)",
            (model, x, ts, schedule, 0.0, _seeded(11)),
            expected,
        )
    )
    hint = (
        "one step per pair (t, s) = (ts[k], ts[k + 1]), all len(ts) - 1 of them; eps_hat = model(x, "
        "torch.full((B,), t)) at the current time t (not s); alpha_bar_t = schedule.alpha_bar(t) is the "
        "earlier, noisier one; z = torch.randn(x.shape, generator=generator) each step; "
        "if check_ddim_step fails, fix ddim_step first"
    )
    hide = ("samplers.ddim", "samplers.ddim_step", "samplers.predict_x0")
    return run_cases("DDIM sampling loop", fn, cases, atol=2e-4, rtol=1e-4, hint=hint, hide=hide, verbose=verbose)


def _heun_every_step(model, x, t, s, cond):
    """Heun with the correction on the last step too (valid when the model is good at t = 0)."""
    d_cur = model(x, torch.full((x.shape[0],), t), cond)
    x_next = x + (s - t) * d_cur
    d_next = model(x_next, torch.full((x.shape[0],), s), cond)
    return x + (s - t) * 0.5 * (d_cur + d_next)


def check_heun_step(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x, t, s, cond) -> x_s``: one Heun step of dx/dt = u(x, t) (Karras et al. 2022, Algorithm 1).

    An Euler step to s, the slope there, then the step again with the average of both slopes. On
    the last step (s = 0) Karras et al. skip the correction; taking it there too is accepted.
    """
    from .. import samplers

    cases = []
    pairs = ((1.0, 0.8), (0.55, 0.5), (0.3, 0.05), (0.2, 0.0))
    for seed in SEEDS:
        for k, (t, s) in enumerate(pairs):
            g = _seeded(seed * 10 + k)
            if k % 2 == 0:
                model, shape, kind = _ConvModel(seed, channels=1, classes=10), (2, 1, 8, 8), "tiny conv model, classes"
                cond = torch.randint(0, 10, (2,), generator=g)
            else:
                model, shape, kind, cond = _linear_velocity(seed), (3, 1, 6, 6), "linear velocity model", None
            x = torch.randn(shape, generator=g)
            with torch.no_grad():
                course = samplers.heun_step(model, x, t, s, cond=cond)
                expected = course
                if s <= 0:
                    expected = Alternatives(
                        {
                            "no correction on the last step (Karras et al.)": course,
                            "correction on the last step too": _heun_every_step(model, x, t, s, cond),
                        }
                    )
            about = f"{kind}, x {shape}, step t = {t} -> s = {s}, seed {seed}"
            cases.append(Case(about, (model, x, t, s, cond), expected))
    hint = (
        "d_cur = model(x, t); x_next = x + (s - t) * d_cur (s < t: the step goes backwards in time); "
        "d_next = model(x_next, s), at the new time and point; x_s = x + (s - t) * (d_cur + d_next) / 2, "
        "starting again from x, not from x_next; the model wants t as a (B,) tensor and the cond"
    )
    hide = ("samplers.heun_step", "samplers.heun", "samplers.euler_step", "samplers.euler")
    return run_cases("Heun step", fn, cases, atol=1e-5, rtol=1e-5, hint=hint, hide=hide, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 08: SDEdit, the RePaint loop, anagrams, hybrids


def check_sdedit(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x_input, ts, i_start, schedule, sampler, cond, generator) -> x`` (Meng et al. 2022).

    Noise ``x_input`` to t = ts[i_start] with the schedule's alpha and sigma and noise from
    ``generator``, then ``sampler(model, x_t, ts[i_start:], cond=cond, generator=generator)``.
    Compared with ``editing.sdedit`` under the same generator, with DDPM on the linear and cosine
    schedules (epsilon model) and Euler on the flow path (velocity model, class-conditional).
    """
    from .. import editing, samplers

    grid = schedules.step_grid(1000, 990, 90)  # 990, 900, ..., 90, 0: 12 times
    cases = []
    settings = [
        (schedules.linear_schedule(1000), "DDPM", 3, False),
        (schedules.cosine_schedule(1000), "DDPM", 8, False),
        (schedules.FlowSchedule(), "Euler", 5, True),
        (schedules.linear_schedule(1000), "DDPM", 10, False),
        (schedules.FlowSchedule(), "Euler", 1, True),
    ]
    for seed, (schedule, name, i_start, conditional) in enumerate(settings):
        g = _seeded(seed)
        shape = (2, 1, 8, 8)
        x_input = torch.rand(shape, generator=g) * 2 - 1
        model = _ConvModel(seed, classes=10) if conditional else _BoundedEps(seed, schedule)
        cond = torch.randint(0, 10, (2,), generator=g) if conditional else None
        sampler = samplers.euler if name == "Euler" else functools.partial(samplers.ddpm, schedule=schedule)
        expected = editing.sdedit(
            model, x_input, grid, i_start, schedule=schedule, sampler=sampler, cond=cond, generator=_seeded(70 + seed)
        )
        about = (
            f"{name} on {schedule.name}, x_input {shape}, grid of {len(grid)} times, i_start = {i_start} "
            f"(t_start = {grid[i_start].item():.2f}), " + ("cond = class ids, " if conditional else "") + f"seed {seed}"
        )
        cases.append(
            Case(about, (model, x_input, grid, i_start, schedule, sampler, cond, _seeded(70 + seed)), expected)
        )
    hint = (
        "t_start = ts[i_start]; x_t = schedule.alpha(t_start) * x_input + schedule.sigma(t_start) * eps with "
        "eps = torch.randn(x_input.shape, generator=generator) drawn first (alpha, not alpha_bar: alpha = "
        "sqrt(alpha_bar) only on DDPM's schedules, and the flow path has alpha = 1 - t); then the sampler from "
        "that same time: ts[i_start:], passing cond and generator"
    )
    hide = ("editing.sdedit", "editing.noise_to")
    return run_cases("SDEdit", fn, cases, atol=2e-4, rtol=1e-4, hint=hint, hide=hide, verbose=verbose)


def _inpaint_from_pure_noise(model, x0, known, ts, schedule, sampler, generator):
    """RePaint's Algorithm 1 read literally: x_T ~ N(0, I) everywhere, the known pixels set after each step."""
    from .. import editing

    x = torch.randn(x0.shape, generator=generator)
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        x = sampler(model, x, torch.tensor([t, s]), generator=generator)
        x = editing.repaint_project(x, x0, known, s, schedule, generator)
    return x


def check_inpaint(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x_orig, known, ts, schedule, sampler, generator) -> x``: inpainting, RePaint-style.

    Start: noise from ``generator`` everywhere, the known pixels (``known`` = 1) replaced by
    ``x_orig`` noised to ts[0] (``inpainting_step``); then for each pair (t, s) one sampler step
    ``sampler(model, x, torch.tensor([t, s]), generator=generator)`` followed by ``inpainting_step``
    at s. Compared with ``editing.inpaint`` under the same generator (DDPM, linear and cosine
    schedules); starting from pure noise everywhere (RePaint's x_T) is accepted too.
    """
    from .. import editing, samplers

    cases = []
    linear, cosine = _vp_schedules()
    for seed, (schedule, n) in enumerate(((linear, 5), (cosine, 4), (linear, 3))):
        g = _seeded(seed)
        shape = (2, 1, 8, 8)
        x_orig = torch.rand(shape, generator=g) * 2 - 1
        known = torch.ones(1, 1, 8, 8)
        known[..., 4:, :] = 0  # top half kept
        if seed == 2:
            known = (torch.rand(2, 1, 8, 8, generator=g) < 0.5).float()
        ts = schedules.step_times(n, 1000)
        model = _BoundedEps(seed, schedule)
        sampler = functools.partial(samplers.ddpm, schedule=schedule)
        expected = Alternatives(
            {
                "known pixels set before the first step (editing.inpaint)": editing.inpaint(
                    model, x_orig, known, ts, schedule=schedule, sampler=sampler, generator=_seeded(80 + seed)
                ),
                "pure noise before the first step (RePaint's x_T)": _inpaint_from_pure_noise(
                    model, x_orig, known, ts, schedule, sampler, _seeded(80 + seed)
                ),
            }
        )
        about = (
            f"DDPM on {schedule.name}, x_orig {shape}, mask {tuple(known.shape)} (1 = known), {n} steps, seed {seed}"
        )
        cases.append(Case(about, (model, x_orig, known, ts, schedule, sampler, _seeded(80 + seed)), expected))
    hint = (
        "draw in this order: the starting noise, then eps for the known pixels at ts[0]; then per pair (t, s): "
        "the sampler step t -> s first, then eps and inpainting_step at the NEW time s (alpha_bar(s), not "
        "alpha_bar(t)); every pair, down to s = 0; if check_inpainting_step fails, fix inpainting_step first"
    )
    hide = ("editing.inpaint", "editing.repaint_project", "editing.noise_to")
    return run_cases("RePaint inpainting loop", fn, cases, atol=2e-4, rtol=1e-4, hint=hint, hide=hide, verbose=verbose)


def _wrapper_inputs(pairs: tuple) -> list[tuple]:
    """(seed, class a, class b, view, oracle model, x, t) for the wrapper checks: grey and RGB, two views."""
    from .. import editing

    inputs = []
    views = (editing.rotate_180, editing.flip_vertical, editing.rotate_180)
    for seed, ((a, b), view, shape) in enumerate(zip(pairs, views, ((2, 1, 8, 8), (3, 1, 8, 8), (2, 3, 10, 10)))):
        g = _seeded(seed)
        model = _ConvModel(seed, channels=shape[1], classes=10, size=shape[2:])
        inputs.append((seed, a, b, view, model, torch.randn(shape, generator=g), torch.rand(shape[0], generator=g)))
    return inputs


def check_anagram(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, cond_a, cond_b, view) -> model_fn``: a visual anagram (Geng et al. 2024).

    ``model_fn(x, t, cond=None) = (model(x, t, a) + view(model(view(x), t, b))) / 2`` with a, b the
    class ids ``cond_a``, ``cond_b`` (ints) as (B,) tensors. Compared with ``editing.anagram`` on a
    class-conditional oracle model, with a half turn and a vertical flip as views.
    """
    from .. import editing

    cases = []
    for seed, a, b, view, model, x, t in _wrapper_inputs(((6, 9), (2, 5), (7, 1))):
        expected = editing.anagram(model, a, b, view=view)(x, t)
        about = (
            f"class-conditional oracle model, x {tuple(x.shape)}, cond_a = {a}, cond_b = {b}, view {view.__name__}, "
            f"seed {seed}"
        )
        cases.append(Case(about, (model, a, b, view, x, t), expected))
    hint = (
        "return a function model_fn(x, t, cond=None); inside: out_a = model(x, t, a) on x as it is, "
        "out_b = view(model(view(x), t, b)): the model sees the turned image and its answer is turned back; "
        "the result is the average (out_a + out_b) / 2, not the sum; a and b as (B,) tensors of class ids"
    )
    target = _target(fn, lambda f, model, a, b, view, x, t: f(model, a, b, view)(x, t))
    return run_cases("visual anagram", target, cases, hint=hint, hide=("editing.anagram",), verbose=verbose)


def check_hybrid(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, cond_low, cond_high, sigma, ksize) -> model_fn``: a hybrid image (Geng et al. 2024).

    ``model_fn(x, t, cond=None) = blur(model(x, t, low)) + high_out - blur(high_out)`` with
    ``high_out = model(x, t, high)`` and ``blur = editing.gaussian_lowpass(., sigma, ksize)``.
    Compared with ``editing.hybrid`` on a class-conditional oracle model.
    """
    from .. import editing

    settings = ((0.875, 5), (1.5, None), (2.0, 7))
    cases = []
    for (seed, low, high, _, model, x, t), (sigma, ksize) in zip(_wrapper_inputs(((0, 1), (0, 4), (3, 8))), settings):
        expected = editing.hybrid(model, low, high, sigma=sigma, ksize=ksize)(x, t)
        about = (
            f"class-conditional oracle model, x {tuple(x.shape)}, cond_low = {low}, cond_high = {high}, "
            f"sigma = {sigma}, ksize = {ksize}, seed {seed}"
        )
        cases.append(Case(about, (model, low, high, sigma, ksize, x, t), expected))
    hint = (
        "return a function model_fn(x, t, cond=None); inside: low_out = model(x, t, low), high_out = model(x, t, high) "
        "(class ids as (B,) tensors); keep the LOW frequencies of low_out, blur(low_out), and the HIGH ones of "
        "high_out, high_out - blur(high_out) (not blur(high_out) - high_out); the two add up, no average"
    )
    target = _target(fn, lambda f, model, low, high, sigma, ksize, x, t: f(model, low, high, sigma, ksize)(x, t))
    hide = ("editing.hybrid", "filters.highpass")
    return run_cases("hybrid image", target, cases, atol=1e-5, hint=hint, hide=hide, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 09: two colour features


def check_temperature(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(rgb) -> float``: the feature temperature, clip(0.5 + mean(R - B), 0, 1) (:func:`check_feature`)."""
    from .steps import check_feature

    return check_feature(fn, "temperature", verbose=verbose)


def check_high_sat_ratio(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(rgb) -> float``: the feature high_sat_ratio of an RGB image (H, W, 3) float32 in [0, 1].

    The fraction of pixels with HSV saturation S > 0.5 and value V > 0.2, where V = max(R, G, B)
    and S = (V - min(R, G, B)) / V (0 where V = 0). Compared with ``features.extract_features`` on
    images at its working size (random pixels, warm, cool, pure and dark colours, shapes).
    """
    from .. import features
    from .steps import _test_photos

    k = features.index("high_sat_ratio")
    photos = _test_photos()
    h, w = photos[0][1].shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dark = np.stack([0.05 + 0.3 * xx / w, 0.02 + 0 * xx, 0.02 + 0.05 * yy / h], axis=-1)  # dark reds, V 0.05..0.35
    photos.append(("dark red ramp (vivid only where V > 0.2)", np.ascontiguousarray(dark, dtype=np.float32)))
    pale = np.stack([0.9 + 0 * xx, 0.3 + 0.6 * xx / w, 0.3 + 0.6 * yy / h], axis=-1)  # S from 0.67 down to 0
    photos.append(("pale ramps (S crosses 0.5)", np.ascontiguousarray(pale, dtype=np.float32)))
    cases = [
        Case(f"{about} {img.shape}", (img,), float(features.extract_features(img, value_range=(0.0, 1.0))[k]))
        for about, img in photos
    ]
    hint = (
        "V = max(R, G, B), S = (V - min(R, G, B)) / V (0 where V = 0; V - min alone is the chroma, not S); "
        "a pixel is vivid when S > 0.5 AND V > 0.2; the feature is the fraction of vivid pixels: "
        "the mean of that boolean image, not its sum"
    )
    hide = ("features.extract_features", "features.features_of_rgb")
    return run_cases("feature high_sat_ratio", fn, cases, atol=1e-4, rtol=0.0, hint=hint, hide=hide, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 11: the ResBlock with the embedding added


def _random_block(seed: int, c_in: int, c_out: int, emb_dim: int, groups: int):
    from .. import layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = layers.ResBlock(c_in, c_out, emb_dim, groups=groups).eval()
        with torch.no_grad():  # the last conv starts at zero: give it weights, or the check compares zeros
            block.conv2.weight.normal_(std=0.1)
            block.conv2.bias.normal_(std=0.1)
            for norm in (block.norm1, block.norm2):
                norm.weight.normal_(mean=1.0, std=0.2)
                norm.bias.normal_(std=0.2)
    return block


# ---------------------------------------------------------------------------------------------
# Notebook 10: the best linear code of the patches


def _patches_with_structure(seed: int, P: int, N: int) -> Tensor:
    """(P, N) columns with a mean away from zero and variances that fall off clearly per direction."""
    g = _seeded(300 + seed)
    q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=torch.float64))
    scales = 2.0 ** -torch.arange(P, dtype=torch.float64)  # distinct variances: a unique answer
    codes = torch.randn(P, N, generator=g, dtype=torch.float64) * scales[:, None]
    mean = torch.linspace(-0.5, 0.8, P, dtype=torch.float64)[:, None]
    return (q @ codes + mean).float()


def _compare_pca(expected, got) -> str | None:
    mean, projection = expected
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "expected a pair (mean, basis)"
    got_mean, basis = (torch.as_tensor(v, dtype=torch.float32) for v in got)
    if got_mean.shape != mean.shape:
        return f"mean: expected shape {tuple(mean.shape)}, got {tuple(got_mean.shape)} (one value per row of patches)"
    if basis.dim() != 2 or basis.shape[0] != mean.shape[0]:
        return f"basis: expected shape (P, C) = ({mean.shape[0]}, C), got {tuple(basis.shape)}"
    if not torch.allclose(got_mean, mean, atol=1e-4):
        return f"mean differs by up to {(got_mean - mean).abs().max():.3g}"
    gram = basis.T @ basis
    if not torch.allclose(gram, torch.eye(basis.shape[1]), atol=1e-3):
        off = (gram - torch.eye(basis.shape[1])).abs().max()
        return f"the basis columns are not orthonormal (basis.T @ basis differs from I by {off:.3g})"
    got_projection = basis @ basis.T
    if not torch.allclose(got_projection, projection, atol=1e-3):
        return (
            "the basis spans other directions than the top principal components "
            f"(projection differs by up to {(got_projection - projection).abs().max():.3g})"
        )
    return None


def check_pca_code(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(patches (P, N), C) -> (mean (P,), basis (P, C))``: the mean of the columns and the C
    principal directions (orthonormal columns, the largest variances). Compared up to the sign and
    order of the columns: through the projection ``basis @ basis.T``, which PCA fixes uniquely here."""
    from ..autoencoder import pca_of

    cases = []
    for seed, (P, N, C) in enumerate(((6, 400, 2), (12, 800, 3), (9, 300, 1), (8, 500, 5))):
        patches = _patches_with_structure(seed, P, N)
        mean, basis, _ = pca_of(patches, C)
        about = f"patches ({P}, {N}), C = {C}, seed {seed}"
        cases.append(Case(about, (patches, C), (mean, basis @ basis.T)))
    hint = (
        "centre each row first (mean over the N columns, dim 1), take the P x P covariance "
        "centred @ centred.T / N, and keep the eigenvectors of its C LARGEST eigenvalues: torch.linalg.eigh "
        "returns them in ascending order, so they are the last C columns"
    )
    hide = ("autoencoder.pca_of", "autoencoder.pca_init")
    return run_cases("PCA code of patches", fn, cases, compare=_compare_pca, hint=hint, hide=hide, verbose=verbose)


def check_resblock(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(block, x, emb) -> out``: the forward pass of ``layers.ResBlock`` written with its layers.

    h = conv1(SiLU(norm1(x))); h = h + emb(SiLU(emb))[:, :, None, None]; h = conv2(SiLU(norm2(h)))
    (dropout, where used, sits before conv2); out = skip(x) + h. Compared with the course's block
    on blocks with random weights, with and without a change of channel count (1x1 skip conv).
    """
    cases = []
    for seed, (c_in, c_out, emb_dim, groups, hw) in enumerate(
        ((8, 16, 12, 4, (5, 5)), (8, 8, 6, 2, (4, 6)), (4, 12, 10, 4, (3, 3)))
    ):
        block = _random_block(seed, c_in, c_out, emb_dim, groups)
        g = _seeded(100 + seed)
        x = torch.randn(2 + seed % 2, c_in, *hw, generator=g)
        emb = torch.randn(x.shape[0], emb_dim, generator=g)
        with torch.no_grad():
            expected = block(x, emb)
        about = (
            f"ResBlock({c_in} -> {c_out} channels, emb_dim {emb_dim}, {groups} groups), x {tuple(x.shape)}, "
            f"emb {tuple(emb.shape)}, seed {seed}"
        )
        cases.append(Case(about, (block, x, emb), expected))
    hint = (
        "h = block.conv1(SiLU(block.norm1(x))); the embedding goes through SiLU, then block.emb, and is added "
        "as one number per channel: [:, :, None, None]; h = block.conv2(SiLU(block.norm2(h))); the output is "
        "block.skip(x) + h: the skip path (a 1x1 conv when the channel count changes), not x + h and not h alone"
    )
    hide = ("layers.ResBlock.forward",)
    return run_cases("ResBlock with the embedding", fn, cases, atol=1e-5, hint=hint, hide=hide, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# The course's versions, with the students' signatures: `name = checks.course_version("name")`
# lets a stuck student go on (the exercise then stays not done)


@register_course_version("ddim_sample")
def _ddim_sample(model, x, ts, schedule, eta, generator):
    from .. import samplers

    return samplers.ddim(model, x, ts, schedule=schedule, eta=eta, generator=generator)


@register_course_version("heun_step")
def _heun_step(model, x, t, s, cond=None):
    from .. import samplers

    return samplers.heun_step(model, x, t, s, cond=cond)


@register_course_version("sdedit")
def _sdedit(model, x_input, ts, i_start, schedule, sampler, cond, generator):
    from .. import editing

    return editing.sdedit(
        model, x_input, ts, i_start, schedule=schedule, sampler=sampler, cond=cond, generator=generator
    )


@register_course_version("inpaint")
def _inpaint(model, x_orig, known, ts, schedule, sampler, generator):
    from .. import editing

    return editing.inpaint(model, x_orig, known, ts, schedule=schedule, sampler=sampler, generator=generator)


@register_course_version("anagram")
def _anagram(model, cond_a, cond_b, view):
    from .. import editing

    return editing.anagram(model, cond_a, cond_b, view=view)


@register_course_version("hybrid")
def _hybrid(model, cond_low, cond_high, sigma, ksize=None):
    from .. import editing

    return editing.hybrid(model, cond_low, cond_high, sigma=sigma, ksize=ksize)


@register_course_version("high_sat_ratio")
def _high_sat_ratio(rgb):
    v = rgb.max(axis=-1)
    s = np.where(v > 0, (v - rgb.min(axis=-1)) / np.maximum(v, 1e-12), 0.0)
    return float(np.mean((s > 0.5) & (v > 0.2)))


@register_course_version("pca_code")
def _pca_code(patches, C):
    from ..autoencoder import pca_of

    mean, basis, _ = pca_of(patches, C)
    return mean, basis


@register_course_version("resblock_forward")
def _resblock_forward(block, x, emb):
    from .. import layers

    return layers.ResBlock.forward(block, x, emb)
