"""Checkers of the one-formula exercises (a step, a loss, a target, one feature)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import schedules
from .engine import (
    SEEDS,
    SHAPES,
    Case,
    CheckResult,
    _constant_model,
    _randn,
    _seeded,
    _times,
    _vp_schedules,
    register_course_version,
    run_cases,
)

__all__ = [
    "check_forward_noising",
    "check_denoising_loss",
    "check_ddpm_step",
    "check_flow_matching",
    "check_cfg",
    "check_ddim_step",
    "check_inpainting_step",
    "check_feature",
    "CHECKERS",
]

# ---------------------------------------------------------------------------------------------
# Notebook 01: the forward process


def check_forward_noising(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(x0, alpha_bar, eps) -> xt = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`` (Ho et al. eq. 4).

    ``alpha_bar`` is a 0-dim tensor (one time for the batch) or (B, 1, 1, 1) (one time per image),
    on the linear and the cosine schedule.
    """
    cases = []
    for seed in SEEDS:
        for shape, schedule in zip(SHAPES, (*_vp_schedules(), schedules.linear_schedule(1000))):
            g = _seeded(seed)
            x0, eps = _randn(shape, g), _randn(shape, g)
            t = 0.02 + 0.96 * torch.rand(shape[0], generator=g)
            alpha_bar = schedule.alpha_bar(t).reshape(-1, 1, 1, 1)
            about = f"x0 {shape}, {schedule.name}, t = {_times(t)} (alpha_bar {tuple(alpha_bar.shape)}), seed {seed}"
            cases.append(Case(about, (x0, alpha_bar, eps), schedule.add_noise(x0, t, eps)))
    g = _seeded(3)
    x0, eps = _randn((2, 1, 6, 6), g), _randn((2, 1, 6, 6), g)
    linear = schedules.linear_schedule(1000)
    cases.append(
        Case(
            "x0 (2, 1, 6, 6), linear, one time t = 0.5 (alpha_bar a 0-dim tensor)",
            (x0, linear.alpha_bar(0.5), eps),
            linear.add_noise(x0, torch.tensor(0.5), eps),
        )
    )
    hint = "x_t = sqrt(alpha_bar) * x0 + sqrt(1 - alpha_bar) * eps: both coefficients are square roots"
    hide = ("schedules.DiscreteSchedule.add_noise",)
    return run_cases("forward noising", fn, cases, hint=hint, hide=hide, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 03: the single-step denoising loss


class _TinyDenoiser(torch.nn.Module):
    """A fixed 3x3 convolution standing in for the UNet; accepts ``model(z)`` and ``model(z, t, cond)``."""

    def __init__(self, seed: int):
        super().__init__()
        g = _seeded(seed)  # the weights come from this generator; the notebook's global seed is left alone
        with torch.random.fork_rng(devices=[]):
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(0.3 * torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.copy_(0.1 * torch.randn(self.conv.bias.shape, generator=g))

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        return self.conv(x)


def check_denoising_loss(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(model, x0, sigma, eps) -> mean((model(x0 + sigma eps) - x0)^2)`` (notebook 03).

    ``x0`` are unit-scale images (B, 1, H, W); the model is called with the noisy images only.
    """
    from .. import losses

    cases = []
    for seed in SEEDS:
        for shape, sigma in zip(SHAPES[:2] + ((4, 1, 6, 6),), (0.5, 0.2, 1.0)):
            model = _TinyDenoiser(seed)
            x0 = torch.rand(shape, generator=_seeded(seed + 10))
            eps = torch.randn(shape, generator=_seeded(seed + 20))
            with torch.no_grad():  # losses draws eps from the generator exactly as above
                expected = losses.denoising_loss(model, x0, sigma=sigma, generator=_seeded(seed + 20))
            cases.append(Case(f"x0 {shape} in [0, 1], sigma = {sigma}, seed {seed}", (model, x0, sigma, eps), expected))
    hint = (
        "z = x0 + sigma * eps; loss = mean((model(z) - x0) ** 2): the target is the clean image, "
        "the mean is over every pixel"
    )
    hide = ("losses.denoising_loss",)
    return run_cases(
        "single-step denoising loss", fn, cases, atol=1e-6, rtol=1e-5, hint=hint, hide=hide, verbose=verbose
    )


# ---------------------------------------------------------------------------------------------
# Notebooks 02 and 04: one DDPM ancestral step

# the course functions a student's step must not call while its check runs
_STEP_HIDE = (
    "samplers.ddpm_step",
    "samplers.ddim_step",
    "samplers.predict_x0",
    "samplers.posterior_variance",
    "schedules.Schedule.posterior_mean_coefs",
    "schedules.Schedule.posterior_variance",
)
_STEPS = ((0.99, 0.96), (0.6, 0.57), (0.3, 0.2), (0.03, 0.0))  # (t, s) pairs, s < t; the last ends at data


def _step_cases(make_expected: Callable, extra: Sequence = (None,)) -> list[Case]:
    cases = []
    for seed in SEEDS:
        for (t, s), shape in zip(_STEPS, SHAPES + (SHAPES[1],)):
            for schedule in _vp_schedules():
                for option in extra:
                    g = _seeded(seed)
                    x_t, eps_hat = _randn(shape, g), _randn(shape, g)
                    noise_seed = 100 + seed
                    z = _randn(shape, _seeded(noise_seed))  # what the sampler draws from that seed
                    abar_t, abar_s = schedule.alpha_bar(torch.tensor(t)), schedule.alpha_bar(torch.tensor(s))
                    expected = make_expected(_constant_model(eps_hat), x_t, t, s, schedule, noise_seed, option)
                    args = (x_t, eps_hat, abar_t, abar_s) + ((option,) if option is not None else ()) + (z,)
                    about = (
                        f"x_t {shape}, {schedule.name}, step t = {t} -> s = {s} (alpha_bar {abar_t.item():.4f} -> "
                        f"{abar_s.item():.4f})" + (f", eta = {option}" if option is not None else "") + f", seed {seed}"
                    )
                    cases.append(Case(about, args, expected))
    return cases


def check_ddpm_step(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(x_t, eps_hat, alpha_bar_t, alpha_bar_s, z) -> x_s``: one ancestral step (Ho et al. 2020, eq. 6-7).

    x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t); with alpha = abar_t / abar_s and
    beta = 1 - alpha, x_s = sqrt(abar_s) beta / (1 - abar_t) x0_hat + sqrt(alpha) (1 - abar_s) / (1 - abar_t) x_t
    + sqrt(beta (1 - abar_s) / (1 - abar_t)) z. On the last step (abar_s = 1) the added noise vanishes.
    """
    from .. import samplers

    def expected(model, x_t, t, s, schedule, noise_seed, _):
        return samplers.ddpm_step(model, x_t, t, s, schedule, generator=_seeded(noise_seed))

    hint = (
        "x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t); alpha = abar_t / abar_s, beta = 1 - alpha; "
        "x_s = sqrt(abar_s) beta / (1 - abar_t) x0_hat + sqrt(alpha) (1 - abar_s) / (1 - abar_t) x_t "
        "+ sqrt(beta (1 - abar_s) / (1 - abar_t)) z"
    )
    cases = _step_cases(expected)
    return run_cases(
        "DDPM ancestral step", fn, cases, atol=2e-4, rtol=1e-4, hint=hint, hide=_STEP_HIDE, verbose=verbose
    )


# ---------------------------------------------------------------------------------------------
# Notebook 04: the flow-matching pair


def check_flow_matching(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(x0, eps, t) -> (xt, u)`` with xt = (1 - t) x0 + t eps and u = eps - x0 (Lipman et al. 2023).

    ``t`` is (B, 1, 1, 1), uniform in [0, 1]; time runs from data (0) to noise (1).
    """
    from .. import targets

    flow = schedules.FlowSchedule()
    cases = []
    for seed in SEEDS:
        for shape in SHAPES:
            g = _seeded(seed)
            x0, eps = _randn(shape, g), _randn(shape, g)
            t = torch.rand(shape[0], generator=g)
            expected = (flow.add_noise(x0, t, eps), targets.velocity_from_eps_x0(eps, x0))
            cases.append(
                Case(
                    f"x0 {shape}, t = {_times(t)} (shaped (B, 1, 1, 1)), seed {seed}",
                    (x0, eps, t.reshape(-1, 1, 1, 1)),
                    expected,
                )
            )
    hint = (
        "xt = (1 - t) * x0 + t * eps and u = d xt / dt = eps - x0 (here t = 0 is data; "
        "papers that run time the other way flip both)"
    )
    hide = ("targets.velocity_from_eps_x0", "schedules.FlowSchedule.add_noise")
    return run_cases("flow-matching input and target", fn, cases, hint=hint, hide=hide, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 05: classifier-free guidance


def check_cfg(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(out_uncond, out_cond, w) -> out_uncond + w (out_cond - out_uncond)`` (Ho & Salimans 2022)."""
    from .. import guidance

    cases = []
    for seed in SEEDS:
        for shape, w in zip(SHAPES + (SHAPES[1], SHAPES[2]), (0.0, 1.0, 3.0, 7.5, -1.0)):
            g = _seeded(seed)
            B = shape[0]
            out_uncond, out_cond, x = _randn(shape, g), _randn(shape, g), _randn(shape, g)
            labels = torch.randint(0, 10, (B,), generator=g)

            def model(xx, tt, cond, out_uncond=out_uncond, out_cond=out_cond):
                k = xx.shape[0] // out_cond.shape[0]  # guidance calls the model once on stacked copies
                is_null = (cond == -1).reshape(-1, 1, 1, 1)
                return torch.where(is_null, out_uncond.repeat(k, 1, 1, 1), out_cond.repeat(k, 1, 1, 1))

            expected = guidance.cfg(model, w)(x, torch.full((B,), 0.5), labels)
            cases.append(
                Case(f"outputs {shape}, guidance scale w = {w}, seed {seed}", (out_uncond, out_cond, w), expected)
            )
    hint = (
        "out = out_uncond + w * (out_cond - out_uncond): w = 0 gives the unconditional output, "
        "w = 1 the conditional one"
    )
    return run_cases("classifier-free guidance", fn, cases, hint=hint, hide=("guidance.cfg",), verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 06: one DDIM step


def check_ddim_step(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(x_t, eps_hat, alpha_bar_t, alpha_bar_s, eta, z) -> x_s``: one DDIM step (Song et al. 2021, eq. 12).

    c = eta sqrt((1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s));
    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - c^2) eps_hat + c z. eta = 0 ignores z.
    """
    from .. import samplers

    def expected(model, x_t, t, s, schedule, noise_seed, eta):
        return samplers.ddim_step(model, x_t, t, s, schedule, eta=eta, generator=_seeded(noise_seed))

    hint = (
        "x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t); c = eta * sqrt((1 - abar_s) / (1 - abar_t) "
        "* (1 - abar_t / abar_s)); x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - c^2) eps_hat + c z"
    )
    cases = _step_cases(expected, extra=(0.0, 0.5, 1.0))
    return run_cases("DDIM step", fn, cases, atol=2e-4, rtol=1e-4, hint=hint, hide=_STEP_HIDE, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 08: one inpainting (RePaint) step


def check_inpainting_step(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """``fn(x, x_known, mask, alpha_bar, eps) -> mask * noised_known + (1 - mask) * x`` (RePaint).

    ``mask`` (B, 1, H, W) is 1 where the pixels are known; ``noised_known`` is x_known noised to
    ``alpha_bar`` with ``eps``: sqrt(alpha_bar) x_known + sqrt(1 - alpha_bar) eps.
    """
    from .. import editing

    cases = []
    for seed in SEEDS:
        for shape, schedule in zip(SHAPES, (*_vp_schedules(), schedules.cosine_schedule(1000))):
            g = _seeded(seed)
            x, x_known = _randn(shape, g), _randn(shape, g)
            mask = (torch.rand((shape[0], 1, *shape[2:]), generator=g) < 0.5).float()
            t = torch.tensor(float(torch.rand((), generator=g)) * 0.9 + 0.05)
            alpha_bar = schedule.alpha_bar(t)
            eps = _randn(shape, _seeded(200 + seed))  # the noise repaint_project draws from that seed
            expected = editing.repaint_project(x, x_known, mask, t.item(), schedule, generator=_seeded(200 + seed))
            about = f"x {shape}, mask {tuple(mask.shape)} (1 = known), {schedule.name}, t = {t.item():.3f}, seed {seed}"
            cases.append(Case(about, (x, x_known, mask, alpha_bar, eps), expected))
    hint = (
        "noise the known image to the current level first: noised_known = sqrt(alpha_bar) x_known + "
        "sqrt(1 - alpha_bar) eps; then keep it where mask = 1: mask * noised_known + (1 - mask) * x"
    )
    hide = ("editing.repaint_project",)
    return run_cases("inpainting step", fn, cases, hint=hint, hide=hide, verbose=verbose)


# ---------------------------------------------------------------------------------------------
# Notebook 09: one visual feature


def _test_photos() -> list[tuple[str, np.ndarray]]:
    """Small RGB images (H, W, 3) in [0, 1] at the features' working size, so no resizing happens."""
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    photos = [("uniform random pixels", rng.random((h, w, 3), dtype=np.float32))]
    warm = np.stack([0.9 - 0.2 * yy / h, 0.5 + 0.2 * xx / w, 0.1 + 0.0 * xx], axis=-1)
    photos.append(("warm gradient (reds and yellows)", warm))
    photos.append(("cool image (blue)", np.stack([0.1 + 0 * xx, 0.3 + 0 * xx, 0.8 + 0.1 * yy / h], axis=-1)))
    photos.append(("pure red", np.stack([1 + 0 * xx, 0 * xx, 0 * xx], axis=-1)))
    r = np.hypot(yy - h / 2, xx - w / 2)
    disk = np.where((r < 30)[..., None], [0.9, 0.3, 0.2], [0.2, 0.4, 0.8])
    photos.append(("red disk on blue", disk))
    ring = np.where(((r < 36) & (r > 16))[..., None], [0.2, 0.7, 0.3], [0.95, 0.95, 0.9])
    photos.append(("green ring on white", ring))
    noisy = np.clip(disk + 0.1 * rng.standard_normal(disk.shape), 0, 1)
    photos.append(("noisy disk", noisy))
    return [(about, np.ascontiguousarray(img, dtype=np.float32)) for about, img in photos]


def check_feature(fn: Callable, name: str = "temperature", *, atol: float = 1e-4, verbose: bool = True) -> CheckResult:
    """``fn(rgb) -> float``: the feature ``name`` of an RGB image (H, W, 3) float32 in [0, 1].

    Compared with ``features.extract_features`` on images already at its working size (longer
    side 128), on random pixels, warm, cool and pure colours, a disk and a ring.
    """
    from .. import features

    if name not in features.FEATURE_NAMES:
        raise ValueError(f"unknown feature {name!r}; the 32 are: {', '.join(features.FEATURE_NAMES)}")
    k = features.index(name)
    cases = [
        Case(f"{about} {img.shape}", (img,), float(features.extract_features(img, value_range=(0.0, 1.0))[k]))
        for about, img in _test_photos()
    ]
    hints = {"temperature": "clip(0.5 + mean(R - B), 0, 1) over all pixels, with R and B in [0, 1]"}
    hint = hints.get(name, features.FEATURES[k].meaning + " (see the formula table in course_utils/features.py)")
    hide = ("features.extract_features",)
    return run_cases(f"feature {name}", fn, cases, atol=atol, rtol=0.0, hint=hint, hide=hide, verbose=verbose)


CHECKERS: dict[str, Callable[..., CheckResult]] = {
    "forward noising": check_forward_noising,
    "denoising loss": check_denoising_loss,
    "DDPM step": check_ddpm_step,
    "flow matching": check_flow_matching,
    "classifier-free guidance": check_cfg,
    "DDIM step": check_ddim_step,
    "inpainting step": check_inpainting_step,
    "feature": check_feature,
}


# ---------------------------------------------------------------------------------------------
# The course's versions, with the students' signatures: `name = checks.course_version("name")`
# lets a stuck student go on (the exercise then stays not done)


@register_course_version("forward_noise")
def _forward_noise(x0, alpha_bar, eps):
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


@register_course_version("denoising_loss")
def _denoising_loss(model, x0, sigma, eps):
    return ((model(x0 + sigma * eps) - x0) ** 2).mean()


@register_course_version("ddpm_step")
def _ddpm_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s, z):
    x0_hat = (x_t - (1 - alpha_bar_t).sqrt() * eps_hat) / alpha_bar_t.sqrt()
    alpha = alpha_bar_t / alpha_bar_s
    beta = 1 - alpha
    mean = (
        alpha_bar_s.sqrt() * beta / (1 - alpha_bar_t) * x0_hat
        + alpha.sqrt() * (1 - alpha_bar_s) / (1 - alpha_bar_t) * x_t
    )
    return mean + (beta * (1 - alpha_bar_s) / (1 - alpha_bar_t)).sqrt() * z


@register_course_version("flow_matching_pair")
def _flow_matching_pair(x0, eps, t):
    return (1 - t) * x0 + t * eps, eps - x0


@register_course_version("cfg_combine")
def _cfg_combine(out_uncond, out_cond, w):
    return out_uncond + w * (out_cond - out_uncond)


@register_course_version("ddim_step")
def _ddim_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s, eta, z):
    x0_hat = (x_t - (1 - alpha_bar_t).sqrt() * eps_hat) / alpha_bar_t.sqrt()
    c = eta * ((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s)).sqrt()
    return alpha_bar_s.sqrt() * x0_hat + (1 - alpha_bar_s - c**2).clamp(min=0).sqrt() * eps_hat + c * z


@register_course_version("inpainting_step")
def _inpainting_step(x, x_known, mask, alpha_bar, eps):
    return mask * (alpha_bar.sqrt() * x_known + (1 - alpha_bar).sqrt() * eps) + (1 - mask) * x


@register_course_version("temperature")
def _temperature(rgb):
    return float(np.clip(0.5 + (rgb[..., 0] - rgb[..., 2]).mean(), 0.0, 1.0))
