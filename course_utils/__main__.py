"""Command line: train a named course model, or sample one.

::

    python -m course_utils list
    python -m course_utils train mnist-ddpm [--epochs N] [--fast]
    python -m course_utils sample mnist-cfg --n 1000 --steps 20 --guidance 3 --out samples.npz
    python -m course_utils sample mnist-fewstep --n 100 --steps 1 --out digits.png [--score]
    python -m course_utils train photo --data DIR --size 64 [--epochs N]   (see train photo --help)
    python -m course_utils generate photo --like IMAGE [--only LIGHTING] --n 4 --out DIR   (256x256 photos)
    python -m course_utils train photo-ae | photo-latent     (the latent photo model's autoencoder, its UNet)
    torchrun --nproc_per_node 4 -m course_utils train photo --size 256 --model full
    python -m course_utils figures [--fast] [--notebooks 01 03]      (re-run notebooks, save every figure)
    python -m course_utils student-version [--out student_notebooks/]  (exercise copies)
    python -m course_utils grade PATH... [--checks-only] [--csv grades.csv]  (run and grade notebooks)
    python -m course_utils colab [--check]                           (Colab badges and set-up cells)
    python -m course_utils claims [--notebooks 06 10]                (the ledger: every claim and its check)

``sample`` writes an ``.npz`` with ``images`` (N, 28, 28) float32 in [0, 1] and ``labels`` (N,)
(balanced class ids for class-conditional models, -1 for unconditional ones), or, for ``--out``
ending in ``.png``, a grid of the images, each labelled with its digit (its index for an
unconditional model). Image i draws its
noise from its own seed (:class:`course_utils.noise.PerSample`), so ``--batch`` never changes a
sample.

Every option is checked before a model is loaded or a sample drawn: counts are whole numbers
>= 1, ``--guidance`` a finite number (class-conditional models only), ``--seed`` a whole number
in 0..2**32 - 1, ``--steps`` at most T for a DDPM, ``--out`` a file in a folder that exists or can
be made and is writable. A refused option, like any error of the course's families, is one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

MAX_SEED = 2**32 - 1  # samplers.MAX_SEED, without importing torch to print --help
PHOTO_GUIDANCE = 3.0  # latent.GUIDANCE, the same way


def _number(kind, check, says: str):
    """An argparse type: ``kind(text)`` that must satisfy ``check``, else '<says>, got <value>'."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{says}, got {text!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{says}, got {value}")
        return value

    return parse


_at_least_1 = _number(int, lambda v: v >= 1, "must be at least 1")
_at_least_0 = _number(int, lambda v: v >= 0, "must be at least 0")
_probability = _number(float, lambda v: 0.0 <= v <= 1.0, "must lie in [0, 1]")
_decay = _number(float, lambda v: 0.0 < v < 1.0, "must lie strictly between 0 and 1")
_positive = _number(float, lambda v: 0.0 < v < float("inf"), "must be a positive number")
_positive_int = _at_least_1
_finite_float = _number(float, math.isfinite, "must be a finite number")
_seed = _number(int, lambda v: 0 <= v <= MAX_SEED, f"must be a whole number in 0..{MAX_SEED}")


class _OneLineParser(argparse.ArgumentParser):
    """Refuses a bad command line in one line on stderr (exit status 2), like the course's errors."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import pretrained

    parser = _OneLineParser(
        prog="python -m course_utils",
        description=(
            "Train or sample the course models. "
            "Instructors' tools: figures, student-version, grade, colab (each has --help)."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the named models and whether their checkpoints are present")
    train = sub.add_parser("train", help="train a named model from its recipe (resumes runs/NAME)")
    train.add_argument("name", help=f"one of: {', '.join(pretrained.names())}; or 'photo' (train photo --help)")
    train.add_argument("--epochs", type=_positive_int, default=None, help="override the recipe's epochs")
    train.add_argument("--fast", action="store_true", help="the small fast-mode recipe (NAME.fast.safetensors)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(subparser=train)  # its errors name the subcommand
    sample = sub.add_parser("sample", help="draw samples from a trained model into an .npz file")
    sample.add_argument("name", help=f"one of: {', '.join(pretrained.names())}")
    sample.add_argument("--n", type=_positive_int, default=100, help="number of images (>= 1)")
    sample.add_argument("--steps", type=_positive_int, default=None, help="sampler steps (>= 1)")
    sample.add_argument(
        "--guidance", type=_finite_float, default=1.0, help="classifier-free guidance scale (class-conditional models)"
    )
    sample.add_argument("--seed", type=_seed, default=0, help=f"a whole number in 0..{MAX_SEED}")
    sample.add_argument("--batch", type=_positive_int, default=250, help="images per sampler call")
    sample.add_argument("--fast", action="store_true", help="use the fast-mode checkpoint")
    sample.add_argument(
        "--out",
        type=Path,
        default=Path("samples.npz"),
        help="the .npz file to write; a name ending in .png writes a labelled image grid instead",
    )
    sample.add_argument("--no-progress", action="store_true")
    sample.add_argument(
        "--score",
        action="store_true",
        help="also score the samples with the course classifier (FD, confident reads, accuracy)",
    )
    sample.set_defaults(subparser=sample)
    return parser


def _check_name(parser: argparse.ArgumentParser, name: str) -> None:
    from . import pretrained

    if name not in pretrained.REGISTRY:
        parser.error(f"unknown model {name!r}; known: {', '.join(pretrained.names())}")


def _check_sample(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What ``sample``'s options say together with the model: one line, before any loading or sampling."""
    from . import pretrained

    r = pretrained.recipe(args.name)
    if r.objective == "ddpm" and args.steps is not None and args.steps > r.T:
        parser.error(f"argument --steps: {args.name} is a DDPM with T = {r.T} steps: at most {r.T}, got {args.steps}")
    if r.unet.cond != "class" and args.guidance != 1.0:
        guided = ", ".join(n for n in pretrained.names() if pretrained.recipe(n).unet.cond == "class")
        parser.error(
            f"argument --guidance: {args.name} is unconditional, so guidance would change nothing "
            f"(leave it out; guided models: {guided})"
        )
    w = pretrained.distilled_guidance(r)
    if w is not None and args.guidance != 1.0:
        parser.error(
            f"argument --guidance: {args.name} has its teacher's guidance {w:g} distilled in and takes no other "
            "(leave --guidance out)"
        )
    if args.out.is_dir():
        parser.error(f"argument --out: {args.out} is a folder; name the .npz or .png file to write")
    problem = _unwritable(args.out.parent)
    if problem:
        parser.error(f"argument --out: cannot write {args.out} ({problem})")


# ---------------------------------------------------------------------------------------------
# train photo: the feature-conditioned photo model (course_utils.photos)


def build_photo_parser(prog: str = "python -m course_utils train photo") -> argparse.ArgumentParser:
    """The options of ``train photo`` (every value is checked here, before any photo is read)."""
    p = argparse.ArgumentParser(prog=prog, description="Train the feature-conditioned photo model.")
    p.add_argument("--data", type=Path, default=None, help="folder of photos (default: the flower photos)")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="image size in px: at least 8, divisible by 4 (small) or 16 (full); default 256, 32 in fast mode",
    )
    p.add_argument(
        "--model",
        choices=("full", "small"),
        default=None,
        help="full: the 64-128-256-512-512 plan; small: 32-64-64 (default: small below 64 px)",
    )
    p.add_argument("--epochs", type=_at_least_1, default=None, help="default 100; 1 in fast mode")
    p.add_argument("--batch-size", type=_at_least_1, default=4, help="per process")
    p.add_argument("--lr", type=_positive, default=1e-4)
    p.add_argument("--limit", type=_at_least_1, default=None, help="use the first N photos only")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--p-uncond", type=_probability, default=0.1, help="condition dropout, in [0, 1]")
    p.add_argument("--ema", type=_decay, default=0.999, help="EMA decay, in (0, 1)")
    p.add_argument("--sample-every", type=_at_least_0, default=1, help="sample grid every N epochs (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path, default=None, help="default <home>/runs/photo-<size> (COURSE_HOME)")
    p.add_argument(
        "--out", type=Path, default=None, help="exported weights (default <checkpoints>/photo-<size>.safetensors)"
    )
    p.add_argument("--no-amp", action="store_true")
    p.add_argument(
        "--fidelity",
        type=_at_least_0,
        default=64,
        help="measure feature fidelity on N >= 2 photos' features at the end (0: skip)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (made if missing), or None if they can."""
    import os

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _photo_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """Check what the options say together; one-line ``parser.error`` before any compute."""
    from . import config, photos

    size = args.size if args.size is not None else config.pick(256, 32)
    kind = args.model or ("small" if size < 64 else "full")
    try:
        cfg = photos.model_config(size, kind)
    except ValueError as err:
        parser.error(f"argument --size: {err}")
    if args.fidelity == 1:
        parser.error("argument --fidelity: the fidelity scores need at least 2 images (0 skips them)")
    if args.data is not None and not args.data.is_dir():
        parser.error(f"argument --data: {args.data} is not a folder")
    run_dir = args.run_dir or config.runs_dir() / f"photo-{size}"
    out = args.out or config.checkpoint_dir() / f"photo-{size}.safetensors"
    if out.is_dir():
        parser.error(f"argument --out: {out} is a folder; name the .safetensors file to write")
    for option, folder, given, variable in (
        ("--run-dir", run_dir, args.run_dir, "COURSE_HOME"),
        ("--out", out.parent, args.out, "COURSE_CHECKPOINT_DIR"),
    ):
        problem = _unwritable(folder)
        if problem:
            hint = "" if given else f"; give {option} or set {variable} to a writable folder"
            parser.error(f"argument {option}: cannot write there ({problem}){hint}")
    return dict(size=size, kind=kind, cfg=cfg, epochs=args.epochs or config.pick(100, 1), run_dir=run_dir, out=out)


def train_photo_main(argv: list[str] | None = None) -> int:
    """``train photo``: check the options, train (resuming ``--run-dir``), export, and report the
    feature fidelity. Under ``torchrun`` each process joins the process group first (NCCL on GPUs,
    gloo on CPUs); rank 0 fills the photo caches, exports and scores."""
    import json
    import os
    import time
    from dataclasses import asdict

    parser = build_photo_parser()
    args = parser.parse_args(argv)
    settings = _photo_settings(parser, args)  # before any process group, photo or model
    import torch
    import torch.distributed as dist

    from . import photos, training

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = None
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
    rank, world = training.rank_and_world()
    size, cfg, epochs, run_dir = settings["size"], settings["cfg"], settings["epochs"], settings["run_dir"]
    started = time.perf_counter()
    if world > 1 and rank != 0:
        dist.barrier()  # rank 0 fills the crop and feature caches first; the others then read them
    ps = photos.load_photos(args.data, size=size, limit=args.limit, progress=not args.no_progress and rank == 0)
    if world > 1 and rank == 0:
        dist.barrier()
    if rank == 0:
        print(
            f"{len(ps)} photos at {size} px from {ps.folder} ({len(ps.failures)} unreadable) "
            f"in {time.perf_counter() - started:.0f} s"
        )
    aug = None if args.no_augment else photos.Augment()
    model, result = photos.train_photo_model(
        ps,
        cfg=cfg,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        p_uncond=args.p_uncond,
        ema_decay=args.ema,
        augment_with=aug,
        seed=args.seed,
        run_dir=run_dir,
        sample_every=args.sample_every,
        amp=not args.no_amp,
        progress=not args.no_progress,
        device=device,
    )
    if rank == 0:
        seen = result.step * args.batch_size * world
        train_s = sum(result.epoch_seconds)
        print(
            f"trained {result.epoch} epochs, {result.step} steps, {train_s:.0f} s of training, "
            f"{seen / max(train_s, 1e-9):.1f} img/s, last epoch loss {result.epoch_losses[-1]:.4f}"
        )
        recipe = photos.recipe_of(
            ps,
            cfg,
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            p_uncond=args.p_uncond,
            ema_decay=args.ema,
            seed=args.seed,
            augment=asdict(aug) if aug else None,
            world_size=world,
        )
        out = settings["out"]
        photos.export(model, out, result, recipe)
        print(f"saved {out}")
        if args.fidelity and len(ps) >= 2:
            pick_rows = torch.randperm(len(ps), generator=torch.Generator().manual_seed(99))[: args.fidelity]
            scores, _, _ = photos.measure_fidelity(model, ps.features[pick_rows], guidance_scale=2.0)
            print(photos.format_fidelity(scores))
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            (Path(run_dir) / "fidelity.json").write_text(json.dumps(scores, indent=1))
    if distributed:
        dist.destroy_process_group()
    return 0


def write_png_grid(images: np.ndarray, tags: list[str], path: Path, *, title: str = "", columns: int = 10) -> Path:
    """Write images (N, H, W) in [0, 1] as a PNG grid, each tile with its tag above it (atomically).

    Drawn with matplotlib's Agg canvas directly, so it never changes the backend of a running notebook.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .files import atomic_path

    n, h, w = images.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    scale, strip, head = 2, 14, 20 if title else 0  # pixels: each image drawn 2x, a strip for its tag
    tile_h, tile_w = h * scale + strip, w * scale + 4
    grid = np.ones((head + rows * tile_h, columns * tile_w), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = head + r * tile_h + strip, c * tile_w + 2
        grid[top : top + h * scale, left : left + w * scale] = np.kron(images[i], np.ones((scale, scale)))
    dpi = 100
    fig = Figure(figsize=(grid.shape[1] / dpi, grid.shape[0] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    for i, tag in enumerate(tags):
        r, c = divmod(i, columns)
        ax.text(c * tile_w + tile_w / 2, head + r * tile_h + strip - 3, tag, ha="center", va="bottom", fontsize=8)
    if title:
        ax.text(grid.shape[1] / 2, head - 5, title, ha="center", va="bottom", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


# ---------------------------------------------------------------------------------------------
# generate photo: 256x256 photos from the 32 features (the latent photo model, course_utils.latent)

MAX_PHOTOS = 1000  # images one generate command draws at most


def build_generate_parser(prog: str = "python -m course_utils generate photo") -> argparse.ArgumentParser:
    """The options of ``generate photo``; every value is checked before the model is loaded."""
    p = _OneLineParser(
        prog=prog,
        description="Draw 256x256 photos with requested features (the latent photo model, DDIM with guidance). "
        "Writes photo_NNN.png and features.json (requested and measured features) into --out.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--features",
        type=Path,
        help="a JSON file: a list of the 32 feature values in [0, 1], or {name: value, ...} "
        "(features left out are set to the training photos' mean)",
    )
    src.add_argument("--like", type=Path, help="an image: ask for its 32 measured features")
    p.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="GROUP",
        help="with --like: ask only for these groups or features (COLOR, LIGHTING, MATERIAL, SHAPE, TOPOLOGY "
        "or feature names); the rest are set to the training mean",
    )
    p.add_argument("--n", type=_number(int, lambda v: 1 <= v <= MAX_PHOTOS, f"must be in 1..{MAX_PHOTOS}"), default=4)
    p.add_argument("--seed", type=_seed, default=0, help=f"a whole number in 0..{MAX_SEED}; image i uses its own seed")
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNGs and features.json into")
    p.add_argument(
        "--guidance",
        type=_finite_float,
        default=PHOTO_GUIDANCE,
        help=f"classifier-free guidance scale (default {PHOTO_GUIDANCE:g}, chosen on training requests)",
    )
    p.add_argument(
        "--steps", type=_number(int, lambda v: 1 <= v <= 1000, "must be in 1..1000"), default=50, help="DDIM steps"
    )
    p.add_argument("--batch", type=_at_least_1, default=4, help="images per sampler call (never changes an image)")
    p.add_argument("--model", default="photo-latent", help="latent model checkpoint (name or path)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _requested_features(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The request as ``(values (32,) with NaN where the training mean goes, description)``; every
    problem is one ``parser.error`` line, before any model is loaded."""
    import json

    from . import data, features, photos
    from .errors import CourseError

    if args.only is not None and args.like is None:
        parser.error("argument --only: only goes with --like (it picks which of the image's features to ask for)")
    values = np.full(features.NUM_FEATURES, np.nan)
    if args.like is not None:
        try:
            keep = photos.feature_names_of(args.only) if args.only is not None else list(features.FEATURE_NAMES)
        except CourseError as err:
            parser.error(f"argument --{err}")  # the message starts with "only:"
        try:
            measured = photos.features_of(data.load_image(args.like))
        except (CourseError, OSError, ValueError) as err:
            parser.error(f"argument --like: cannot read {args.like} as an image ({err})")
        for name in keep:
            values[features.index(name)] = float(measured[features.index(name)])
        what = f"like {args.like}" + (f" (only {', '.join(args.only)})" if args.only else "")
        return values, what
    try:
        raw = json.loads(args.features.read_text())
    except OSError as err:
        parser.error(f"argument --features: cannot read {args.features} ({err.strerror or err})")
    except ValueError as err:
        parser.error(f"argument --features: {args.features} is not valid JSON ({err})")
    if isinstance(raw, dict):
        unknown = [k for k in raw if k not in features.FEATURE_NAMES]
        if unknown:
            parser.error(
                f"argument --features: unknown feature name(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(features.FEATURE_NAMES)}"
            )
        items = list(raw.items())
    elif isinstance(raw, list):
        if len(raw) != features.NUM_FEATURES:
            parser.error(
                f"argument --features: a list needs all {features.NUM_FEATURES} values in the order of "
                f"features.FEATURE_NAMES, got {len(raw)}"
            )
        items = list(zip(features.FEATURE_NAMES, raw))
    else:
        parser.error(
            f"argument --features: expected a list of {features.NUM_FEATURES} numbers or a {{name: value}} object"
        )
    bad = []
    for name, value in items:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not 0.0 <= value <= 1.0:
            bad.append(f"{name}={value!r}")
        else:
            values[features.index(name)] = float(value)
    if bad:
        parser.error(f"argument --features: each value must be a finite number in [0, 1]; got {', '.join(bad)}")
    return values, f"features from {args.features}"


def generate_photo_main(argv: list[str] | None = None) -> int:
    """``generate photo``: check the request, load the latent model, draw ``--n`` 256x256 photos
    with a progress bar, write them and the requested and measured features."""
    import json

    parser = build_generate_parser()
    args = parser.parse_args(argv)
    values, what = _requested_features(parser, args)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"argument --out: {args.out} is a file; name a folder")
    problem = _unwritable(args.out)
    if problem:
        parser.error(f"argument --out: cannot write into {args.out} ({problem})")
    import torch
    from tqdm.auto import tqdm

    from . import features, latent, photos
    from .files import atomic_write
    from .noise import PerSample

    try:
        model, record = latent.load_latent_model(args.model)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    mean = model.cond_mean.detach().float().cpu().clamp(0, 1).numpy()
    request = torch.from_numpy(np.where(np.isnan(values), mean, values).astype(np.float32))
    args.out.mkdir(parents=True, exist_ok=True)
    measured, names = [], []
    with tqdm(total=args.n, desc="photos", unit="img", disable=args.no_progress) as bar:
        for start in range(0, args.n, args.batch):
            count = min(args.batch, args.n - start)
            x = photos.generate(
                model,
                request,
                n=count,
                steps=args.steps,
                guidance_scale=args.guidance,
                generator=PerSample.from_seed(args.seed, count, start=start),
            )
            measured.append(features.extract_batch(x).cpu())
            for j, img in enumerate(((x.cpu() + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()):
                path = args.out / f"photo_{start + j:03d}.png"
                atomic_write(path, _png_bytes(img))
                names.append(path.name)
            bar.update(count)
    measured = torch.cat(measured)
    report = dict(
        request=what,
        model=args.model,
        autoencoder=record["recipe"]["extra"].get("autoencoder"),
        seed=args.seed,
        guidance=args.guidance,
        steps=args.steps,
        asked=[name for name, v in zip(features.FEATURE_NAMES, values) if not np.isnan(v)],
        requested=dict(zip(features.FEATURE_NAMES, [round(float(v), 4) for v in request])),
        images=[
            dict(file=name, measured=dict(zip(features.FEATURE_NAMES, [round(float(v), 4) for v in row])))
            for name, row in zip(names, measured)
        ],
    )
    atomic_write(args.out / "features.json", json.dumps(report, indent=1))
    asked = [features.index(n) for n in report["asked"]]
    mae = float((measured[:, asked] - request[asked]).abs().mean()) if asked else float("nan")
    print(f"wrote {args.n} 256x256 photos and features.json to {args.out} (mean |requested - measured| {mae:.3f})")
    return 0


def _png_bytes(img: np.ndarray) -> bytes:
    """An RGB uint8 image (H, W, 3) encoded as PNG."""
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("could not encode a PNG")
    return encoded.tobytes()


TOOLS = {
    "figures": "figures",
    "student-version": "student_version",
    "grade": "grading",
    "colab": "colab",
    "claims": "claims",
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; an error of the course's families prints one line (no traceback), exit 2."""
    from .errors import CourseError

    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(argv: list[str]) -> int:
    if argv and argv[0] in TOOLS:  # the instructors' tools keep their own options
        from importlib import import_module

        return import_module(f"{__package__}.{TOOLS[argv[0]]}").main(argv[1:])
    if argv[:2] == ["train", "photo"]:  # the feature-conditioned photo model has its own options
        return train_photo_main(argv[2:])
    if argv[:2] == ["generate", "photo"]:  # 256x256 photos from features: the latent photo model
        return generate_photo_main(argv[2:])
    if argv[:2] in (["train", "photo-ae"], ["train", "photo-latent"]):  # the latent model's two halves
        from .latent import train_main

        return train_main(argv[1], argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import config, data, pretrained

    if args.command == "list":
        for name in pretrained.names():
            r = pretrained.recipe(name)
            present = "present" if pretrained.checkpoint_path(name).is_file() else "not trained"
            print(f"{name:12s} {present:12s} {r.about}")
        return 0
    _check_name(args.subparser, args.name)
    if args.command == "sample":
        _check_sample(args.subparser, args)
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
            x = pretrained.generate(
                model,
                r,
                part.numel(),
                steps=args.steps,
                guidance_scale=args.guidance,
                labels=part if conditional else None,
                generator=generator,
            )
            chunks.append(data.to_unit(x).cpu()[:, 0])  # (b, 28, 28)
            bar.update(part.numel())
    images = torch.cat(chunks).numpy().astype(np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from .files import atomic_path

    steps = args.steps or r.sample_steps
    if args.out.suffix.lower() == ".png":
        tags = [str(int(c)) for c in labels] if conditional else [f"#{i}" for i in range(args.n)]
        write_png_grid(
            images, tags, args.out, title=f"{args.name}, {steps} step{'s' if steps > 1 else ''}, seed {args.seed}"
        )
        tag = "its digit" if conditional else "its index"
        print(f"wrote {args.out}: a grid of {args.n} images, each labelled with {tag}")
    else:
        with atomic_path(args.out) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=images, labels=labels.numpy().astype(np.int64))
        print(f"wrote {args.out}: images {images.shape} in [0, 1], labels {tuple(labels.shape)} ({config.device()})")
    if args.score:
        from . import metrics

        report = metrics.digit_quality(torch.from_numpy(images)[:, None], labels if conditional else None, scale="unit")
        guided = conditional and pretrained.distilled_guidance(r) is None  # CFG: two network passes per step
        nfe = steps * (2 if guided else 1)
        plural = "s" if steps > 1 else ""
        print(f"{args.name}: {metrics.format_quality(report)}  ({steps} step{plural}, NFE {nfe} per image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
