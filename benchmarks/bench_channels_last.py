"""Training on a CPU: the usual NCHW layout against channels-last (``training.CPU_CHANNELS_LAST``).

``training.train`` runs the same steps on the same data twice, once with the model's 4-D weights in
each layout, for the course's UNets at the batch sizes the notebooks train them with on a CPU;
median over the repeats of milliseconds per step, the ratio measured in the same run, and the
largest difference of the two runs' losses::

    python benchmarks/bench_channels_last.py [--steps 40] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from course_utils import losses, photos, schedules, training  # noqa: E402
from course_utils.latent import LATENT_WIDTH, latent_model_config  # noqa: E402
from course_utils.unet import UNetConfig, build_unet  # noqa: E402

MNIST_LOSS = functools.partial(losses.ddpm_loss, schedule=schedules.linear_schedule(T=300), p_uncond=0.1)
LATENT_LOSS = functools.partial(losses.ddpm_loss, schedule=photos.schedule(), p_uncond=0.1)

# name: (model config, batch size, image shape, condition: None, "class" or "vector", loss)
CASES = {
    "MNIST UNet D = 16, batch 32 (04)": (UNetConfig.mnist(16), 32, (1, 28, 28), None, MNIST_LOSS),
    "MNIST UNet D = 16, classes, batch 64 (05)": (
        UNetConfig.mnist(16, cond="class"),
        64,
        (1, 28, 28),
        "class",
        MNIST_LOSS,
    ),
    "MNIST UNet D = 32, batch 128 (03)": (UNetConfig.mnist(32), 128, (1, 28, 28), None, MNIST_LOSS),
    "latent UNet, batch 32 (photo-latent)": (
        latent_model_config(8, 32, base_channels=LATENT_WIDTH),
        32,
        (8, 32, 32),
        "vector",
        LATENT_LOSS,
    ),
}


def run(cfg, batch: int, shape, cond, loss, steps: int, channels_last: bool) -> tuple[float, list[float]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch * steps, *shape, generator=g)
    if cond == "class":
        data = (x, torch.randint(0, 10, (len(x),), generator=g))
    elif cond == "vector":
        data = (x, torch.rand(len(x), 32, generator=g))
    else:
        data = x
    torch.manual_seed(0)
    model = build_unet(cfg)
    training.CPU_CHANNELS_LAST = channels_last
    started = time.perf_counter()
    result = training.train(model, loss, data, epochs=1, batch_size=batch, ema_decay=0.999, progress=False)
    return 1000 * (time.perf_counter() - started) / result.step, result.losses


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/channels_last.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    default = training.CPU_CHANNELS_LAST
    result = {"steps": args.steps, "repeats": args.repeats, "threads": args.threads, "ms_per_step": {}}
    for name, case in CASES.items():
        times, diff = {False: [], True: []}, 0.0
        for _ in range(args.repeats):  # alternated, so a slow spell of the machine hits both
            (ms_plain, plain), (ms_last, last) = (run(*case, args.steps, layout) for layout in (False, True))
            times[False].append(ms_plain)
            times[True].append(ms_last)
            diff = max([diff, *(abs(a - b) for a, b in zip(plain, last))])
        nchw, nhwc = statistics.median(times[False]), statistics.median(times[True])
        result["ms_per_step"][name] = {
            "NCHW": round(nchw, 1),
            "channels last": round(nhwc, 1),
            "speed-up": round(nchw / nhwc, 2),
            "largest loss difference": float(f"{diff:.1e}"),
        }
        print(f"{name}: {nchw:.1f} -> {nhwc:.1f} ms per step ({nchw / nhwc:.2f}x), losses within {diff:.1e}")
    training.CPU_CHANNELS_LAST = default
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
