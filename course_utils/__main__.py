"""Command line: train a named course model, or sample one.

::

    python -m course_utils list
    python -m course_utils train mnist-ddpm [--epochs N] [--fast]
    python -m course_utils sample mnist-cfg --n 1000 --steps 20 --guidance 3 --out samples.npz
    python -m course_utils train photo --data DIR --size 64 [--epochs N]   (see train photo --help)
    torchrun --nproc_per_node 4 -m course_utils train photo --size 256 --model full
    python -m course_utils figures [--fast] [--notebooks 01 03]      (re-run notebooks, save every figure)
    python -m course_utils student-version [--out student_notebooks/]  (exercise copies)
    python -m course_utils colab [--check]                           (Colab badges and set-up cells)

``sample`` writes an ``.npz`` with ``images`` (N, 28, 28) float32 in [0, 1] and ``labels`` (N,)
(balanced class ids for class-conditional models, -1 for unconditional ones). Image i draws its
noise from its own seed (:class:`course_utils.noise.PerSample`), so ``--batch`` never changes a
sample.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import pretrained

    parser = argparse.ArgumentParser(
        prog="python -m course_utils",
        description="Train or sample the course models. Instructors' tools: figures, student-version, colab (each has --help).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the named models and whether their checkpoints are present")
    train = sub.add_parser("train", help="train a named model from its recipe (resumes runs/NAME)")
    train.add_argument("name", help=f"one of: {', '.join(pretrained.names())}; or 'photo' (train photo --help)")
    train.add_argument("--epochs", type=_positive_int, default=None, help="override the recipe's epochs")
    train.add_argument("--fast", action="store_true", help="the small fast-mode recipe (NAME.fast.safetensors)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    sample = sub.add_parser("sample", help="draw samples from a trained model into an .npz file")
    sample.add_argument("name", help=f"one of: {', '.join(pretrained.names())}")
    sample.add_argument("--n", type=_positive_int, default=100, help="number of images (>= 1)")
    sample.add_argument("--steps", type=_positive_int, default=None, help="sampler steps (>= 1)")
    sample.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--batch", type=_positive_int, default=250, help="images per sampler call")
    sample.add_argument("--fast", action="store_true", help="use the fast-mode checkpoint")
    sample.add_argument("--out", type=Path, default=Path("samples.npz"))
    sample.add_argument("--no-progress", action="store_true")
    sample.add_argument("--score", action="store_true",
                        help="also score the samples with the course classifier (FD, confident reads, accuracy)")
    return parser


def _check_name(parser: argparse.ArgumentParser, name: str) -> None:
    from . import pretrained

    if name not in pretrained.REGISTRY:
        parser.error(f"unknown model {name!r}; known: {', '.join(pretrained.names())}")


TOOLS = {"figures": "figures", "student-version": "student_version", "colab": "colab"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TOOLS:  # the instructors' tools keep their own options
        from importlib import import_module

        return import_module(f"{__package__}.{TOOLS[argv[0]]}").main(argv[1:])
    if argv[:2] == ["train", "photo"]:  # the feature-conditioned photo model has its own options
        from . import photos

        return photos.main(argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import config, data, pretrained

    if args.command == "list":
        for name in pretrained.names():
            r = pretrained.recipe(name)
            present = "present" if pretrained.checkpoint_path(name).is_file() else "not trained"
            print(f"{name:12s} {present:12s} {r.about}")
        return 0
    _check_name(parser, args.name)
    if args.command == "train":
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        pretrained.train_recipe(args.name, fast=args.fast, epochs=args.epochs, progress=not args.no_progress)
        print(f"saved {pretrained.checkpoint_path(args.name, fast=args.fast)}")
        return 0

    import torch
    from tqdm.auto import tqdm

    try:
        model = pretrained.load(args.name, fast=args.fast)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    r = pretrained.recipe(args.name)
    conditional = r.unet.cond == "class"
    labels = pretrained.balanced_labels(args.n) if conditional else torch.full((args.n,), -1)
    from .noise import PerSample

    chunks = []
    with tqdm(total=args.n, desc=f"sampling {args.name}", unit="img", disable=args.no_progress) as bar:
        for start in range(0, args.n, args.batch):
            part = labels[start : start + args.batch]
            generator = PerSample.from_seed(args.seed, part.numel(), start=start)  # image i: its own seed
            x = pretrained.generate(model, r, part.numel(), steps=args.steps, guidance_scale=args.guidance,
                                    labels=part if conditional else None, generator=generator)
            chunks.append(data.to_unit(x).cpu()[:, 0])  # (b, 28, 28)
            bar.update(part.numel())
    images = torch.cat(chunks).numpy().astype(np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from .files import atomic_path

    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, images=images, labels=labels.numpy().astype(np.int64))
    print(f"wrote {args.out}: images {images.shape} in [0, 1], labels {tuple(labels.shape)} ({config.device()})")
    if args.score:
        from . import metrics

        report = metrics.digit_quality(torch.from_numpy(images)[:, None], labels if conditional else None,
                                       scale="unit")
        print(f"{args.name}: {metrics.format_quality(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
