"""Training-step throughput of the course's MNIST UNet against diffusers' UNet2DModel.

One step is what a training loop does for a batch: forward, MSE loss, backward, AdamW update.
Both models are class-conditioned, take 28x28 gray images, and have about the same number of
parameters (2.02M); the diffusers model uses plain ResNet blocks (no attention), as the course
UNet does. Run it from the repository root::

    python benchmarks/bench_unet.py                 # CPU, and the GPU when there is one
    python benchmarks/bench_unet.py --threads 1     # pin CPU threads (a shared machine)

diffusers is optional (``pip install diffusers``); without it the course UNet is still measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

from course_utils.unet import UNetConfig, build_unet, count_parameters  # noqa: E402

N_CLASSES, SIZE = 10, 28


def course_unet():
    """The course's class-conditioned MNIST UNet, D = 64; called as ``model(x, t, cond)``."""
    model = build_unet(UNetConfig.mnist(64, cond="class"))

    def step_output(x, t, y):
        return model(x, t, y)

    return model, step_output


def diffusers_unet():
    """diffusers' UNet2DModel sized like the course UNet; called with integer DDPM timesteps."""
    from diffusers import UNet2DModel

    model = UNet2DModel(
        sample_size=SIZE,
        in_channels=1,
        out_channels=1,
        block_out_channels=(40, 80, 96),  # 28 -> 14 -> 7, like the course UNet
        layers_per_block=1,
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
        norm_num_groups=8,
        num_class_embeds=N_CLASSES,
    )

    def step_output(x, t, y):
        return model(x, (t * 999).long(), class_labels=y).sample

    return model, step_output


def training_step(build, device: torch.device, batch: int):
    """Build a model and return ``(step, n_params)``; ``step()`` runs one training step."""
    torch.manual_seed(0)
    model, forward = build()
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 1, SIZE, SIZE, generator=g).to(device)
    target = torch.randn(batch, 1, SIZE, SIZE, generator=g).to(device)
    t = torch.rand(batch, generator=g).to(device)
    y = torch.randint(0, N_CLASSES, (batch,), generator=g).to(device)

    def step():
        loss = F.mse_loss(forward(x, t, y), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, count_parameters(model)


def images_per_second(step, device: torch.device, batch: int, steps: int) -> float:
    """Time ``steps`` training steps (waiting for the GPU to finish) -> images per second."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - start)


def compare(models: dict, device: torch.device, batch: int, steps: int, warmup: int, repeats: int) -> dict:
    """Median images/s of each model; repeats alternate between the models, so that a change in
    the machine's load (a shared CPU) affects both alike."""
    built = {label: training_step(build, device, batch) for label, build in models.items()}
    for step, _ in built.values():
        for _ in range(warmup):
            step()
    rates = {label: [] for label in built}
    for _ in range(repeats):
        for label, (step, _) in built.items():
            rates[label].append(images_per_second(step, device, batch, steps))
    return {label: (statistics.median(rates[label]), built[label][1]) for label in built}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--devices", default=None, help="comma-separated, e.g. cpu,cuda (default: all found)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    models = {"course UNet": course_unet}
    try:
        import diffusers

        models[f"diffusers UNet2DModel {diffusers.__version__}"] = diffusers_unet
    except ImportError:
        print("diffusers is not installed: measuring the course UNet only (pip install diffusers to compare)")

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} CPU threads, batch {args.batch}, fwd + bwd + AdamW"
    )
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch, "runs": []}
    for name in devices:
        device = torch.device(name)
        rates = {}
        for label, (rate, params) in compare(models, device, args.batch, args.steps, args.warmup, args.repeats).items():
            rates[label] = rate
            results["runs"].append({"device": name, "model": label, "params": params, "images_per_s": round(rate, 1)})
            print(f"{name:5s} {label:32s} {params / 1e6:6.3f}M params {rate:9.1f} images/s")
        if len(rates) == 2:
            course, other = rates.values()
            print(f"{name:5s} course / diffusers throughput: {course / other:.2f}x")
            results["runs"].append({"device": name, "ratio_course_over_diffusers": round(course / other, 3)})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
