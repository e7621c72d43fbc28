"""Golden outputs: record what the package computes today, to check a refactor against it.

The script runs a fixed set of small computations through the package's public API (schedules,
samplers with the shipped checkpoints, guidance, losses, editing, baselines, metrics, the photo
model) and keeps every result as a float64 array under a descriptive key. Every random input comes
from a ``torch.Generator`` seeded here (fixed starting noise drawn once, a fresh generator for each
stochastic call) and everything runs on the CPU, so two runs of the same code give bit-identical
arrays. Run it from the repository root (the checkpoints are found from the working directory)::

    python benchmarks/golden.py --save golden_before.npz      # record today's outputs
    # ... refactor ...
    python benchmarks/golden.py --compare golden_before.npz   # recompute, print what changed

``--compare`` prints one row per key: shape, max |diff|, max |diff| relative to the largest |value|
of the recorded array, and "same" (bit-identical, NaN where NaN was; or within ``--tol``),
"changed", or "missing" (absent on one side, e.g. a group that failed). It always exits 0: it
is a report, not a test. A group that fails prints its key and error and the others still run.
Torch runs on ``--threads`` CPU threads (default 1, whatever OMP_NUM_THREADS says): some outputs
(the photo model's) differ in the last digits between thread counts, so compare runs made with
the same count. The whole run takes about half a minute on one core of a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("COURSE_DEVICE", "cpu")  # the classifier and models pick their device from this

import numpy as np
import torch

from course_utils import (
    baselines,
    config,
    data,
    editing,
    guidance,
    losses,
    metrics,
    photos,
    pretrained,
    samplers,
    schedules,
)

DEVICE = "cpu"
BATCH = 8  # images per sampler call


# ---------------------------------------------------------------------------------------------
# Helpers


def gen(seed: int) -> torch.Generator:
    """A fresh CPU generator: pass a new one to every stochastic call."""
    return torch.Generator().manual_seed(seed)


def fixed_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Starting noise drawn once from its own seed."""
    return torch.randn(shape, generator=gen(seed))


def as_array(value) -> np.ndarray:
    """A tensor, number or tuple of numbers as a float64 numpy array."""
    if torch.is_tensor(value):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


class Recorder:
    """Collects the golden arrays; a failing key or group is printed and remembered, not raised."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self.failed: dict[str, str] = {}

    def add(self, key: str, compute) -> None:
        """Store ``compute()`` under ``key``; on an error print it and go on."""
        try:
            self.arrays[key] = as_array(compute())
        except Exception as err:  # noqa: BLE001 - a report, one failure must not stop the rest
            self._fail(key, err)

    def group(self, name: str, run) -> None:
        """Run one group of keys (``run(self)``); an error in its setup skips the rest of the group."""
        start = time.perf_counter()
        before = len(self.arrays)
        try:
            with torch.no_grad():
                run(self)
        except Exception as err:  # noqa: BLE001
            self._fail(f"{name}/*", err)
        print(f"  {name:<12} {len(self.arrays) - before:3d} keys  {time.perf_counter() - start:6.1f} s", flush=True)

    def _fail(self, key: str, err: Exception) -> None:
        self.failed[key] = f"{type(err).__name__}: {err}"
        print(f"FAILED {key}: {self.failed[key]}", flush=True)
        traceback.print_exc(limit=3, file=sys.stdout)


@lru_cache(maxsize=None)
def model(name: str):
    """A shipped MNIST checkpoint, in eval mode on the CPU (loaded once)."""
    return pretrained.load(name, device=DEVICE)


@lru_cache(maxsize=None)
def digits(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n MNIST digits of a split, in [-1, 1], with their labels."""
    return data.load_mnist(split, scale="signed", limit=n)


def ddpm_times() -> torch.Tensor:
    """DDPM steps 990, 900, ..., 90, 0 as times (12 times, 11 steps)."""
    return schedules.step_grid(1000, 990, 90)


def rounded_grid(steps: int) -> torch.Tensor:
    """time_grid(steps) rounded onto the T = 1000 integer steps."""
    return torch.round(schedules.time_grid(steps) * 1000) / 1000


# ---------------------------------------------------------------------------------------------
# Groups


def group_schedules(rec: Recorder) -> None:
    T = 1000
    steps = torch.arange(T + 1) / T  # t = i / T, float32 as a caller would pass it
    for name, make in (("linear", schedules.linear_schedule), ("cosine", schedules.cosine_schedule)):
        s = make(T)
        rec.add(f"schedules/{name}/alpha_bar_at_i_over_T", lambda s=s: s.alpha_bar(steps))
        rec.add(f"schedules/{name}/alpha_bars_table", lambda s=s: s.alpha_bars)
        rec.add(f"schedules/{name}/at_step_0_500_1000", lambda s=s: torch.stack([s.at_step(i) for i in (0, 500, 1000)]))
        rec.add(f"schedules/{name}/betas", lambda s=s: s.betas)
        rec.add(
            f"schedules/{name}/alpha_sigma_between_steps",
            lambda s=s: torch.stack([s.alpha(torch.linspace(0, 1, 77)), s.sigma(torch.linspace(0, 1, 77))]),
        )
        rec.add(f"schedules/{name}/log_snr_grid", lambda s=s: s.log_snr(torch.linspace(0.01, 1, 100)))
    rec.add("schedules/linear_T10/alpha_bars_table", lambda: schedules.linear_schedule(10).alpha_bars)
    rec.add("schedules/cosine_alpha_bar_closed_form", lambda: schedules.cosine_alpha_bar(torch.linspace(0, 1, 101)))

    flow = schedules.FlowSchedule()
    grid = torch.linspace(0, 1, 101)
    rec.add("schedules/flow/alpha_grid", lambda: flow.alpha(grid))
    rec.add("schedules/flow/sigma_grid", lambda: flow.sigma(grid))
    rec.add("schedules/flow/alpha_bar_grid", lambda: flow.alpha_bar(grid))
    rec.add("schedules/flow/snr_grid", lambda: flow.snr(torch.linspace(0.01, 1, 100)))

    rec.add("schedules/time_grid_10", lambda: schedules.time_grid(10))
    rec.add("schedules/time_grid_5_from_0.8", lambda: schedules.time_grid(5, 0.8))
    rec.add("schedules/step_grid_1000_990_90", ddpm_times)
    rec.add("schedules/step_grid_default", lambda: schedules.step_grid())

    x0, _ = digits("train", 16)
    eps = fixed_noise(x0.shape, 11)
    t = torch.rand(16, generator=gen(12))
    rec.add("schedules/linear/add_noise", lambda: schedules.linear_schedule(1000).add_noise(x0, t, eps))
    rec.add("schedules/flow/add_noise", lambda: flow.add_noise(x0, t, eps))
    for name in ("mnist-ddpm", "mnist-fm", "mnist-cfg"):
        rec.add(
            f"schedules/schedule_of/{name}/alpha_bar_grid",
            lambda name=name: pretrained.schedule_of(pretrained.recipe(name)).alpha_bar(grid),
        )


def group_samplers(rec: Recorder) -> None:
    x_init = fixed_noise((BATCH, 1, 28, 28), 100)
    ddpm_model = model("mnist-ddpm")
    linear = pretrained.schedule_of(pretrained.recipe("mnist-ddpm"))
    rec.add(
        "samplers/ddpm/ddpm_step_grid_990_90",
        lambda: samplers.ddpm(ddpm_model, x_init, ddpm_times(), schedule=linear, generator=gen(101)),
    )
    rec.add(
        "samplers/ddpm/ddpm_step_grid_990_90_clip",
        lambda: samplers.ddpm(ddpm_model, x_init, ddpm_times(), schedule=linear, generator=gen(101), clip_x0=True),
    )
    rec.add(
        "samplers/ddpm/ddim_eta0_10",
        lambda: samplers.ddim(ddpm_model, x_init, rounded_grid(10), schedule=linear, eta=0.0, generator=gen(102)),
    )
    rec.add(
        "samplers/ddpm/ddim_eta1_10",
        lambda: samplers.ddim(ddpm_model, x_init, rounded_grid(10), schedule=linear, eta=1.0, generator=gen(103)),
    )

    fm = model("mnist-fm")
    flow = schedules.FlowSchedule()
    rec.add("samplers/fm/euler_10", lambda: samplers.euler(fm, x_init, schedules.time_grid(10)))
    rec.add("samplers/fm/heun_5", lambda: samplers.heun(fm, x_init, schedules.time_grid(5)))
    rec.add(
        "samplers/fm/ddim_flow_eps_from_velocity_10",  # t = 1 divides by alpha = 0: NaN is today's answer
        lambda: samplers.ddim(
            samplers.eps_from_velocity_model(fm),
            x_init,
            schedules.time_grid(10),
            schedule=flow,
            eta=0.0,
            generator=gen(104),
        ),
    )
    rec.add(
        "samplers/fm/ddim_flow_eps_from_velocity_10_from_0.99",  # the same without t = 1: finite
        lambda: samplers.ddim(
            samplers.eps_from_velocity_model(fm),
            x_init,
            schedules.time_grid(10, 0.99),
            schedule=flow,
            eta=0.0,
            generator=gen(105),
        ),
    )
    rec.add(
        "samplers/fm/euler_trajectory_3",
        lambda: torch.stack(samplers.euler(fm, x_init, schedules.time_grid(3), return_trajectory=True)[1]),
    )

    cfg_model = model("mnist-cfg")
    labels = torch.arange(BATCH) % 10
    rec.add(
        "samplers/cfg/euler_cfg3_10",
        lambda: samplers.euler(guidance.cfg(cfg_model, 3.0), x_init, schedules.time_grid(10), cond=labels),
    )
    rec.add(
        "samplers/cfg/euler_cfg3_uncond_10",
        lambda: samplers.euler(guidance.cfg(cfg_model, 3.0), x_init, schedules.time_grid(10), cond=None),
    )
    rec.add(
        "samplers/cfg/euler_negative3_not8_10",
        lambda: samplers.euler(
            guidance.negative_guidance(cfg_model, 3.0, 8), x_init, schedules.time_grid(10), cond=labels
        ),
    )
    rec.add(
        "samplers/cfg/euler_negative3_not8_w1_uncond_10",
        lambda: samplers.euler(
            guidance.negative_guidance(cfg_model, 3.0, 8, negative_scale=1.0),
            x_init,
            schedules.time_grid(10),
            cond=None,
        ),
    )


def group_generate(rec: Recorder) -> None:
    for i, name in enumerate(("mnist-ddpm", "mnist-fm", "mnist-cfg")):
        r = pretrained.recipe(name)
        rec.add(
            f"generate/{name}/n8_steps10",
            lambda name=name, r=r, i=i: pretrained.generate(
                model(name), r, 8, steps=10, guidance_scale=3.0, generator=gen(200 + i)
            ),
        )


def group_losses(rec: Recorder) -> None:
    x0, labels = digits("train", 16)
    linear = schedules.linear_schedule(1000)
    rec.add(
        "losses/ddpm_loss/mnist-ddpm",
        lambda: losses.ddpm_loss(model("mnist-ddpm"), x0, schedule=linear, generator=gen(300)),
    )
    # the class model predicts velocity, not epsilon: the value means nothing, but it runs the CFG dropout path
    rec.add(
        "losses/ddpm_loss/mnist-cfg_p0.1",
        lambda: losses.ddpm_loss(model("mnist-cfg"), (x0, labels), schedule=linear, p_uncond=0.1, generator=gen(301)),
    )
    rec.add(
        "losses/flow_matching_loss/mnist-fm",
        lambda: losses.flow_matching_loss(model("mnist-fm"), x0, generator=gen(302)),
    )
    rec.add(
        "losses/flow_matching_loss/mnist-cfg_p0.1",
        lambda: losses.flow_matching_loss(model("mnist-cfg"), (x0, labels), p_uncond=0.1, generator=gen(303)),
    )
    # any model(x, t, cond) will do to pin the loss down; mnist-fm is not a trained single-step denoiser
    rec.add(
        "losses/denoising_loss/mnist-fm_sigma0.5",
        lambda: losses.denoising_loss(model("mnist-fm"), x0, sigma=0.5, generator=gen(304)),
    )
    rec.add(
        "losses/denoising_loss/mnist-fm_pure_noise",
        lambda: losses.denoising_loss(model("mnist-fm"), x0, pure_noise=True, generator=gen(305)),
    )
    rec.add("losses/drop_condition/ids_p0.5", lambda: losses.drop_condition(labels, 0.5, gen(306)))
    rec.add(
        "losses/drop_condition/features_p0.5", lambda: losses.drop_condition(torch.full((16, 4), 0.25), 0.5, gen(307))
    )


def group_classifier(rec: Recorder) -> None:
    metrics.load_classifier(train_if_missing=False, device=DEVICE)  # a missing checkpoint fails, never trains
    x64, _ = digits("test", 64)
    rec.add("metrics/probabilities/test64", lambda: metrics.probabilities(x64))
    x256, _ = digits("test", 256)
    rec.add("metrics/mnist_fd/test256", lambda: metrics.mnist_fd(x256))
    rec.add("metrics/mnist_fd/test256_vs_test64", lambda: metrics.mnist_fd(x256, x64))


def group_editing(rec: Recorder) -> None:
    x0, labels = digits("test", BATCH)
    rec.add("editing/gaussian_lowpass/sigma1", lambda: editing.gaussian_lowpass(x0, 1.0))
    rec.add("editing/gaussian_lowpass/sigma0.875_k15", lambda: editing.gaussian_lowpass(x0, 0.875, 15))
    ts = ddpm_times()  # 12 times: index 0 is t = 0.99, index 10 is t = 0.09, index 11 is t = 0
    ddpm_model = model("mnist-ddpm")
    linear = pretrained.schedule_of(pretrained.recipe("mnist-ddpm"))
    for i_start in (4, 10, 11):
        rec.add(
            f"editing/sdedit/mnist-ddpm_i{i_start}",
            lambda i_start=i_start: editing.sdedit(
                ddpm_model, x0, ts, i_start, schedule=linear, generator=gen(400 + i_start)
            ),
        )
    cfg3 = guidance.cfg(model("mnist-cfg"), 3.0)
    flow = schedules.FlowSchedule()
    rec.add(
        "editing/sdedit/mnist-cfg_euler_i5_time_grid10",
        lambda: editing.sdedit(
            cfg3, x0, schedules.time_grid(10), 5, schedule=flow, sampler=samplers.euler, cond=labels, generator=gen(420)
        ),
    )

    known = torch.ones(1, 1, 28, 28)
    known[..., 14:, :] = 0  # keep the top half, fill in the bottom
    for resample in (1, 2):
        rec.add(
            f"editing/inpaint/mnist-ddpm_resample{resample}",
            lambda resample=resample: editing.inpaint(
                ddpm_model, x0, known, ts, schedule=linear, generator=gen(430 + resample), resample=resample
            ),
        )
    rec.add(
        "editing/inpaint/mnist-cfg_euler_time_grid10",
        lambda: editing.inpaint(
            cfg3,
            x0,
            known,
            schedules.time_grid(10),
            schedule=flow,
            sampler=samplers.euler,
            cond=labels,
            generator=gen(435),
        ),
    )

    x_init = fixed_noise((BATCH, 1, 28, 28), 440)
    rec.add(
        "editing/anagram/mnist-cfg_6_9_euler10",
        lambda: samplers.euler(editing.anagram(cfg3, 6, 9), x_init, schedules.time_grid(10)),
    )
    rec.add(
        "editing/anagram/mnist-cfg_1_7_flip_vertical_euler10",
        lambda: samplers.euler(
            editing.anagram(cfg3, 1, 7, view=editing.flip_vertical), x_init, schedules.time_grid(10)
        ),
    )
    rec.add(
        "editing/hybrid/mnist-cfg_0_1_euler10",
        lambda: samplers.euler(editing.hybrid(cfg3, 0, 1), x_init, schedules.time_grid(10)),
    )
    rec.add(
        "editing/hybrid/mnist-cfg_3_8_sigma1.5_euler10",
        lambda: samplers.euler(editing.hybrid(cfg3, 3, 8, sigma=1.5), x_init, schedules.time_grid(10)),
    )


def group_baselines(rec: Recorder) -> None:
    clean, _ = digits("test", 4)
    noisy = clean + 0.5 * fixed_noise(clean.shape, 500)
    rec.add("baselines/gaussian_blur/sigma1", lambda: baselines.gaussian_blur(noisy, 1.0))
    rec.add("baselines/gaussian_blur/sigma2_single_image", lambda: baselines.gaussian_blur(noisy[0], 2.0))
    blurred, sigma = baselines.best_blur(noisy, clean)
    rec.add("baselines/best_blur/image", lambda: blurred)
    rec.add("baselines/best_blur/sigma", lambda: sigma)
    rec.add("baselines/mse_psnr/best_blur", lambda: baselines.mse_psnr(blurred, clean))
    rec.add("baselines/mse_psnr/noisy", lambda: baselines.mse_psnr(noisy, clean))
    a, b = data.to_unit(blurred), data.to_unit(clean)
    rec.add("metrics/psnr/best_blur", lambda: metrics.psnr(a, b))
    rec.add("metrics/psnr/best_blur_per_image", lambda: metrics.psnr(a, b, reduce=False))
    rec.add("metrics/ssim/best_blur", lambda: metrics.ssim(a, b))
    rec.add("metrics/ssim/best_blur_per_image", lambda: metrics.ssim(a, b, reduce=False))


def group_photos(rec: Recorder) -> None:
    path = config.checkpoint_dir() / "photo-32.safetensors"
    photo_model, _ = photos.load_photo_model(path, device=DEVICE)
    files = data.list_images(data.resolve("flower_photos", download=False))[:2]
    print(f"  photos: features of {[f.name for f in files]}")
    feats = torch.stack([photos.features_of(f) for f in files])
    rec.add("photos/features_of/flowers2", lambda: feats)
    rec.add("photos/generate/flowers2_steps10_seed0", lambda: photos.generate(photo_model, feats, steps=10, seed=0))
    rec.add(
        "photos/generate/half2_steps10_seed0",
        lambda: photos.generate(photo_model, torch.full((2, 32), 0.5), steps=10, seed=0),
    )
    rec.add(
        "photos/generate/half2_steps10_seed0_eta0",
        lambda: photos.generate(photo_model, torch.full((2, 32), 0.5), steps=10, seed=0, eta=0.0),
    )


GROUPS = [
    ("schedules", group_schedules),
    ("samplers", group_samplers),
    ("generate", group_generate),
    ("losses", group_losses),
    ("classifier", group_classifier),
    ("editing", group_editing),
    ("baselines", group_baselines),
    ("photos", group_photos),
]


def collect() -> Recorder:
    """Compute every golden output."""
    import course_utils

    print(
        f"course_utils from {Path(course_utils.__file__).parent}, repo root {config.repo_root()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    rec = Recorder()
    for name, run in GROUPS:
        rec.group(name, run)
    return rec


# ---------------------------------------------------------------------------------------------
# Comparing


def diff(before: np.ndarray, after: np.ndarray) -> tuple[float, float, bool]:
    """(max |after - before|, that over max |before|, bit-identical) with NaN where NaN was."""
    same = np.array_equal(before, after, equal_nan=True)
    if same:
        return 0.0, 0.0, True
    finite_b, finite_a = np.isfinite(before), np.isfinite(after)
    same_non_finite = np.array_equal(before[~finite_b], after[~finite_a], equal_nan=True)
    if not np.array_equal(finite_b, finite_a) or not same_non_finite:
        return float("nan"), float("nan"), False  # NaN/inf appeared, vanished or moved
    if not finite_b.any():
        return 0.0, 0.0, False
    abs_diff = float(np.max(np.abs(after[finite_a] - before[finite_b])))
    scale = float(np.max(np.abs(before[finite_b])))
    return abs_diff, abs_diff / scale if scale > 0 else float("inf"), False


def compare(before_path: str, rec: Recorder, tol: float) -> None:
    """Print one row per key: shape, max |diff|, max relative diff, same/changed/missing."""
    with np.load(before_path) as f:
        before = {k: f[k] for k in f.files}
    keys = list(rec.arrays) + [k for k in before if k not in rec.arrays]
    width = max(len(k) for k in keys) if keys else 3
    print(f"\n{'key':<{width}}  {'shape':<16} {'max |diff|':>11} {'max rel':>11}  status")
    counts: dict[str, int] = {}
    for key in keys:
        if key not in before or key not in rec.arrays:
            side = "not in before" if key not in before else "not computed now"
            shape = str((rec.arrays.get(key) if key in rec.arrays else before[key]).shape)
            status, d_abs, d_rel = f"missing ({side})", "", ""
        else:
            a, b = before[key], rec.arrays[key]
            if a.shape != b.shape:
                shape, status, d_abs, d_rel = f"{a.shape}->{b.shape}", "changed", "", ""
            else:
                abs_diff, rel_diff, identical = diff(a, b)
                shape = str(a.shape)
                status = "same" if identical or rel_diff <= tol else "changed"
                d_abs, d_rel = f"{abs_diff:.3g}", f"{rel_diff:.3g}"
        counts[status.split()[0]] = counts.get(status.split()[0], 0) + 1
        print(f"{key:<{width}}  {shape:<16} {d_abs:>11} {d_rel:>11}  {status}")
    print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" (of {len(keys)} keys)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--save", metavar="OUT.npz", help="write the outputs to this file")
    parser.add_argument("--compare", metavar="BEFORE.npz", help="compare the outputs with a saved file")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1); outputs are bit-identical only at the same count",
    )
    parser.add_argument(
        "--tol",
        type=float,
        default=0.0,
        help="call a key 'same' up to this max relative diff (default 0: bit-identical)",
    )
    args = parser.parse_args(argv)
    if not args.save and not args.compare:
        parser.error("give --save OUT.npz and/or --compare BEFORE.npz")

    torch.set_num_threads(args.threads)  # the photo model's float sums depend on the thread count
    start = time.perf_counter()
    rec = collect()
    print(
        f"{len(rec.arrays)} keys in {time.perf_counter() - start:.1f} s"
        + (f"; failed: {', '.join(rec.failed)}" if rec.failed else "")
    )
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.save, **rec.arrays)
        print(f"saved {args.save}")
    if args.compare:
        compare(args.compare, rec, args.tol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
