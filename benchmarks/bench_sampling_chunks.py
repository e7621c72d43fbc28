"""Sampling many MNIST digits on a CPU: one batch against chunks (``unet.CPU_CHUNK``).

The same DDIM run (20 steps, eta 0) of the shipped ``mnist-ddpm`` UNet (D = 32) on N images,
once with the whole batch through every forward pass and once in chunks; median of the repeats,
milliseconds per image, and the ratio measured in the same run::

    python benchmarks/bench_sampling_chunks.py [--n 500] [--chunks 25,50,100,250] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from course_utils import pretrained, samplers, schedules, unet  # noqa: E402


def ms_per_image(model, schedule, x1, chunk: int, repeats: int) -> float:
    unet.CPU_CHUNK = chunk
    grid = schedules.step_grid(1000, 1000, 50)  # 20 DDIM steps on the model's integer times
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        with torch.no_grad():
            samplers.ddim(model, x1, grid, schedule=schedule, eta=0.0, clip_x0=True)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / x1.shape[0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--chunks", default="25,50,100,250")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/sampling_chunks.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    default = unet.CPU_CHUNK
    model = pretrained.load_or_train("mnist-ddpm", device=torch.device("cpu"))
    schedule = pretrained.schedule_of(pretrained.recipe("mnist-ddpm"))
    x1 = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    whole = ms_per_image(model, schedule, x1, args.n, args.repeats)
    result = {"n": args.n, "threads": args.threads, "ms_per_image": {"whole batch": round(whole, 2)}}
    for chunk in (int(c) for c in args.chunks.split(",")):
        ms = ms_per_image(model, schedule, x1, chunk, args.repeats)
        result["ms_per_image"][f"chunks of {chunk}"] = round(ms, 2)
        print(f"chunks of {chunk:4d}: {ms:6.2f} ms/image, {whole / ms:.2f}x the whole batch ({whole:.2f})", flush=True)
    unet.CPU_CHUNK = default
    result["default_chunk"] = default
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
