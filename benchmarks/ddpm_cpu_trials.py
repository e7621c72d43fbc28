"""Notebook 04's DDPM at the CPU size: how far above the 50% bar does it draw, over settings and seeds?

Trains the notebook's DDPM (D = 16 UNet, T = 300 linear betas, batches of 32, Adam with the learning
rate decayed exponentially to a tenth, EMA 0.999) on all 60,000 digits, draws 500 digits with 300
ancestral steps from the notebook's seeds and scores them with the course classifier (FD against
the 10,000 test digits, share read confidently). Seed 0 is the notebook's run; another seed stands
for a student's machine, whose arithmetic differs in the last bits. Each trial adds one entry::

    python benchmarks/ddpm_cpu_trials.py --epochs 4 --lr 1e-3 --seed 0 [--out benchmarks/results/ddpm_cpu_trials.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from course_utils import checkpoints, data, losses, metrics, samplers, schedules, training  # noqa: E402
from course_utils.unet import UNetConfig, build_unet  # noqa: E402


def trial(*, epochs: int, lr: float, seed: int, n: int = 500) -> dict:
    x_train, _ = data.load_mnist("train")
    schedule = schedules.linear_schedule(T=300, beta_start=1e-4, beta_end=0.02)
    torch.manual_seed(seed)
    model = build_unet(UNetConfig.mnist(16))
    started = time.perf_counter()
    run = training.train(
        model,
        functools.partial(losses.ddpm_loss, schedule=schedule),
        x_train,
        epochs=epochs,
        batch_size=32,
        optimizer="adam",
        lr=lr,
        lr_schedule="exponential",
        gamma=0.1 ** (1 / epochs),
        ema_decay=0.999,
        seed=seed,
        progress=False,
    )
    train_seconds = time.perf_counter() - started
    with torch.no_grad():  # the notebook's sampling seeds: start noise from 10, step noise from 11
        x1 = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(10))
        images = samplers.ddpm(
            run.final_model.eval(),
            x1,
            schedules.time_grid(schedule.T),
            schedule=schedule,
            generator=torch.Generator().manual_seed(11),
            clip_x0=True,
        )
    q = metrics.digit_quality(images)
    return dict(
        epochs=epochs,
        lr=lr,
        seed=seed,
        steps=run.step,
        samples=n,
        fd=round(float(q["fd"]), 2),
        confident=round(float(q["confident"]), 3),
        train_seconds=round(train_seconds),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ddpm_cpu_trials.json"))
    args = p.parse_args()
    row = trial(epochs=args.epochs, lr=args.lr, seed=args.seed)
    print(row)
    record = json.loads(args.out.read_text()) if args.out.is_file() else {"trials": []}
    record["machine"] = checkpoints.machine_description("cpu")
    record["trials"] = [
        t for t in record["trials"] if (t["epochs"], t["lr"], t["seed"]) != (row["epochs"], row["lr"], row["seed"])
    ] + [row]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
