"""Named course checkpoints: load them if present (hash checked), else train them from their recipe.

Each name has a :class:`~course_utils.recipes.Recipe` (the course's one recipe type): the UNet
configuration, the objective (DDPM epsilon prediction or
flow-matching velocity), the schedule, the training hyper-parameters of a full run and the
smaller sizes of a fast one. The weights are ``NAME.safetensors`` (float16, EMA weights) beside
``NAME.json`` (the recipe, the loss history, how long training took and on what machine, and the
file's SHA-256), looked for in the checkpoint folder, then among the shipped ones
(:func:`course_utils.config.find_checkpoint`). Training writes them to the checkpoint folder
(``config.checkpoint_dir()``) and its runs to ``config.runs_dir()``, never into the installed package.

- A checkpoint shipped with the course is checked against the SHA-256 recorded here.
- One trained on your machine is checked against its own JSON record.
- ``load_or_train(name)`` trains and caches a missing checkpoint; in fast mode (``COURSE_FAST=1``)
  it trains the small fast recipe into ``NAME.fast.safetensors`` instead, so a quick run never
  stands in for a full one.

From the command line: ``python -m course_utils train mnist-ddpm`` (see ``__main__.py``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from . import checkpoints, config, data, guidance, losses, predictions, samplers, schedules, training
from .errors import BadRequest
from .noise import Generator, PerSample, check_streams, randn
from .recipes import Recipe
from .unet import UNetConfig, build_unet

REGISTRY: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="mnist-ddpm",
            about="unconditional DDPM on MNIST: epsilon prediction, linear betas 1e-4..0.02, T = 1000",
            unet=UNetConfig.mnist(32, time_embedding="sinusoidal"),
            objective="ddpm",
            schedule="linear",
            T=1000,
            epochs=10,
            fast=dict(epochs=1, data_limit=2000, hidden=16),
            sample_steps=34,
            sha256="42df1502f586dca53474aae27b5ee68e7c4ec62caf3ca68a211d09e6ba889d55",
            trained="10 epochs (4,690 steps), 58 min wall-clock on 1 thread of a 2-core Intel Xeon, torch 2.13 CPU",
        ),
        Recipe(
            name="mnist-fm",
            about="unconditional flow matching on MNIST: velocity on the straight path, Euler sampling",
            unet=UNetConfig.mnist(32, time_embedding="sinusoidal"),
            objective="flow",
            epochs=10,
            fast=dict(epochs=1, data_limit=2000, hidden=16),
            sha256="45ff0e0efa57ea01093e82d3e8e8299f0ce28f987281cda5910ef1c691b99eff",
            trained="10 epochs (4,690 steps), 61 min wall-clock on 1 thread of a 2-core Intel Xeon, torch 2.13 CPU",
        ),
        Recipe(
            name="mnist-cfg",
            about="class-conditional flow matching on MNIST with condition dropout p = 0.1 (CFG)",
            unet=UNetConfig.mnist(32, time_embedding="sinusoidal", cond="class"),
            objective="flow",
            p_uncond=0.1,
            epochs=2,
            fast=dict(epochs=1, data_limit=2000, hidden=16),
            sha256="03d8422fb802415bf9eb217e6517c31a5c3f64a801ff4a5813f4b6a7ef54e175",
            trained="2 epochs (938 steps), 45 min wall-clock on 1 thread of a shared 2-core Intel Xeon, torch 2.13 CPU",
        ),
        Recipe(
            name="mnist-fewstep",
            about="few-step student of mnist-cfg (guidance 3 distilled in): reflow on 5,000 teacher pairs, 1-4 steps",
            unet=UNetConfig.mnist(32, time_embedding="sinusoidal", cond="class"),
            objective="flow",
            epochs=60,
            lr=1e-3,
            lr_schedule="constant",
            fast=dict(epochs=1, hidden=16),
            sample_steps=2,
            extra=dict(
                teacher="mnist-cfg",  # its weights are the student's start; its guided samples the targets
                guidance=3.0,  # the teacher's CFG scale, distilled in: the student is called once per step
                teacher_steps=20,
                pairs=5000,
                fast_pairs=200,
                pair_seed=1000,  # noise of pair i: seed 1000 * 1,000,003 + i, never a sampling seed's
                p_one=0.5,  # share of training times at t = 1 (the one-step point); the rest uniform
            ),
            sha256="4a020ff8a1a5b220248331d5d7fdeb99523f486117bb765c59cb9865b844fd04",
            trained="60 epochs over the pairs (2,400 steps), 39 min wall-clock on 1 thread of a shared 2-core Intel "
            "Xeon, torch 2.13 CPU, after 33 min for the 5,000 teacher pairs",
        ),
    )
}


def names() -> list[str]:
    return sorted(REGISTRY)


def recipe(name: str) -> Recipe:
    """The registered recipe called ``name`` (a clear error lists the known ones)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown course model {name!r}; known: {', '.join(names())}")
    return REGISTRY[name]


def schedule_of(r: Recipe) -> schedules.Schedule:
    """The path a recipe's model was trained on (:meth:`Recipe.noise_schedule`)."""
    return r.noise_schedule()


def loss_of(r: Recipe):
    """The recipe's ``loss_fn(model, batch, generator=)``."""
    if r.objective == "ddpm":
        return functools.partial(losses.ddpm_loss, schedule=schedule_of(r), p_uncond=r.p_uncond)
    if r.objective == "flow":
        return functools.partial(losses.flow_matching_loss, p_uncond=r.p_uncond)
    raise ValueError(f"unknown objective {r.objective!r}")


def _file_name(name: str, fast: bool) -> str:
    return f"{name}.fast.safetensors" if fast else f"{name}.safetensors"


def checkpoint_path(name: str, *, fast: bool = False) -> Path:
    """The checkpoint of ``name``: the first one found (checkpoint folder, then shipped ones), else
    where training writes it (``config.checkpoint_dir()``)."""
    return config.find_checkpoint(_file_name(name, fast))


# ---------------------------------------------------------------------------------------------
# Sampling with a course model


def distilled_guidance(r: Recipe) -> float | None:
    """The guidance scale a few-step student learned from its teacher (None for the other models)."""
    return r.extra.get("guidance") if "teacher" in r.extra else None


def balanced_labels(n: int) -> torch.Tensor:
    """0, 1, ..., 9, 0, 1, ...: n class ids with every digit as equally often as possible."""
    return torch.arange(n) % 10


def _check_labels(labels, n: int, r: Recipe) -> torch.Tensor | None:
    """``labels`` for :func:`generate`: None, or n integer class ids in 0..9 for a class model."""
    if labels is None:
        return None
    if r.unet.cond != "class":
        raise BadRequest(f"labels: {r.name} is unconditional and takes no labels (leave labels=None)")
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise BadRequest(f"labels must be {n} class ids in 0..9, got {labels!r}") from None
    if labels.dtype == torch.bool or labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise BadRequest(f"labels must be integer class ids in 0..9, got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.numel() != n:
        raise BadRequest(f"labels must be one class id per image: shape ({n},), got {tuple(labels.shape)}")
    if labels.min() < 0 or labels.max() > 9:
        raise BadRequest(
            f"labels must be class ids in 0..9, got values from {labels.min().item()} to {labels.max().item()} "
            "(for unconditional samples use guidance_scale=0)"
        )
    return labels.long()


@torch.no_grad()
def generate(
    model: nn.Module,
    r: Recipe,
    n: int,
    *,
    steps: int | None = None,
    guidance_scale: float = 1.0,
    labels: torch.Tensor | None = None,
    generator: Generator | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """n images (n, 1, 28, 28) in [-1, 1] from a course model with its own sampler.

    DDPM models: ancestral sampling over ``steps`` evenly strided DDPM steps (clipped x0).
    Flow models: Euler over ``time_grid(steps)``; class-conditional ones use classifier-free
    guidance with ``guidance_scale`` and ``labels`` (default: balanced), except a few-step student
    (``mnist-fewstep``), which has its teacher's guidance distilled in: one network call per step,
    and ``guidance_scale`` stays 1.
    Randomness: ``generator`` (a ``torch.Generator``, or a :class:`~course_utils.noise.PerSample`
    with one stream per image), or ``seed``, which gives image i its own stream
    (``PerSample.from_seed``), so an image does not depend on how many are drawn with it.

    Every argument is checked before any compute (:class:`~course_utils.errors.BadRequest` names
    it): ``n`` >= 1; ``steps`` >= 1 (default: the recipe's), at most T for a DDPM model;
    ``guidance_scale`` finite; ``labels`` n class ids in 0..9, for class-conditional models only;
    ``seed`` in 0..2**32 - 1; a per-sample ``generator`` with n streams.
    """
    n = samplers.check_count(n, "n")
    steps = r.sample_steps if steps is None else steps
    if r.objective == "ddpm":
        steps = samplers.check_steps(steps, maximum=r.T, why=f"{r.name} is a DDPM with T = {r.T} steps")
    else:
        steps = samplers.check_steps(steps)
    samplers.check_scale(guidance_scale, "guidance_scale")
    if distilled_guidance(r) is not None and guidance_scale != 1.0:
        raise BadRequest(
            f"guidance_scale: {r.name} has guidance {distilled_guidance(r):g} distilled in and takes no other "
            "(leave guidance_scale at 1)"
        )
    labels = _check_labels(labels, n, r)
    if seed is not None:
        seed = samplers.check_seed(seed)
    check_streams(generator, n)
    if generator is None and seed is not None:
        generator = PerSample.from_seed(seed, n)
    device = predictions.device_of(model)
    x = randn((n, 1, r.unet.image_size, r.unet.image_size), generator, device)
    cond = None
    model_fn = predictions.with_prediction(model, r.prediction)
    if r.unet.cond == "class":
        cond = (balanced_labels(n) if labels is None else labels).to(device)
        if distilled_guidance(r) is None:  # a student has its teacher's guidance built in: one call per step
            model_fn = guidance.cfg(model_fn, guidance_scale)
    if r.objective == "ddpm":
        ts = schedules.step_times(steps, r.T)  # land on DDPM's integer steps
        return samplers.ddpm(
            model_fn, x, ts, schedule=schedule_of(r), cond=cond, generator=generator, clip_x0=True, progress=progress
        )
    return samplers.euler(model_fn, x, schedules.time_grid(steps), cond=cond, progress=progress)


# ---------------------------------------------------------------------------------------------
# Training, loading


def train_recipe(
    name: str,
    *,
    fast: bool | None = None,
    epochs: int | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
    device: torch.device | None = None,
) -> nn.Module:
    """Train a named model from its recipe (resuming ``config.runs_dir() / NAME`` if it holds a
    checkpoint) and export its EMA weights (float16) to the checkpoint folder; return the EMA model."""
    fast = config.is_fast() if fast is None else fast
    r = recipe(name).for_fast_mode() if fast else recipe(name)
    r = replace(r, sha256=None, trained="")  # those describe the shipped file, not the one trained now
    if epochs is not None:
        r = replace(r, epochs=epochs)
    device = device or config.device()
    if not run_dir:  # both folders are checked before any data is read
        run_dir = config.ensure_writable(config.runs_dir(), "COURSE_HOME") / (f"{name}.fast" if fast else name)
    run_dir = Path(run_dir)
    out = config.ensure_writable(config.checkpoint_dir(), "COURSE_CHECKPOINT_DIR") / _file_name(name, fast)
    if "teacher" in r.extra:  # a few-step student learns from its teacher's pairs (fewstep.py)
        from . import fewstep

        return fewstep.train_student(name, r, fast=fast, out=out, run_dir=run_dir, progress=progress, device=device)
    images, labels = data.load_mnist("train", scale="signed", limit=r.data_limit)
    train_data = (images, labels) if r.unet.cond == "class" else images
    torch.manual_seed(r.seed)
    model = build_unet(r.unet).to(device)

    def sample_fn(m: nn.Module, epoch: int) -> torch.Tensor:
        return generate(m, r, 20, guidance_scale=3.0, seed=1234).cpu()  # [-1, 1], the model's range

    from .plotting import sample_grid_saver  # the caller plots; the training loop never does

    started = time.perf_counter()
    result = training.train(
        model,
        loss_of(r),
        train_data,
        **r.train_kwargs(),
        run_dir=run_dir,
        sample_fn=sample_fn,
        sample_every=1,
        save_samples=sample_grid_saver(run_dir),
        progress=progress,
        recipe=dict(r.to_dict(), fast=fast),
    )
    seconds = time.perf_counter() - started
    final = result.final_model
    record = training.run_record(
        result,
        name=name,
        fast=fast,
        recipe=r.to_dict(),
        data=f"MNIST train, {images.shape[0]} digits, pixels in [-1, 1]",
        device=device,
        this_call_seconds=round(seconds, 1),
    )
    checkpoints.export_weights(final, out, record, half=True)
    return final.eval()


def load(name: str, *, fast: bool = False, device: torch.device | None = None) -> nn.Module:
    """Load a named checkpoint (EMA weights, eval mode) after checking its SHA-256.

    A shipped checkpoint is checked against the hash in the registry; one trained locally against
    its JSON record. Missing: ``FileNotFoundError`` saying how to train it.
    """
    r = recipe(name).for_fast_mode() if fast else recipe(name)
    path = checkpoint_path(name, fast=fast)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint {path}; train it with `python -m course_utils train {name}"
            f"{' --fast' if fast else ''}` or call pretrained.load_or_train({name!r})"
        )
    expected = None
    sidecar = path.with_suffix(".json")
    if r.sha256 and (not sidecar.is_file() or checkpoints.read_record(path).get("sha256") == r.sha256):
        expected = r.sha256  # the shipped file: trust the registry, not a file beside it
    model = build_unet(r.unet)
    checkpoints.load_weights(model, path, sha256=expected)
    predictions.with_prediction(model, r.prediction)  # samplers check it
    return model.to(device or config.device()).eval()


def load_or_train(
    name: str, *, fast: bool | None = None, progress: bool = True, device: torch.device | None = None
) -> nn.Module:
    """The named model: the full checkpoint if present; else, in fast mode, the fast one (trained
    and cached if missing); else the full recipe trained now and cached."""
    fast = config.is_fast() if fast is None else fast
    if checkpoint_path(name).is_file():
        return load(name, device=device)
    if fast and checkpoint_path(name, fast=True).is_file():
        return load(name, fast=True, device=device)
    train_recipe(name, fast=fast, progress=progress, device=device)
    return load(name, fast=fast, device=device)


def record(name: str, *, fast: bool = False) -> dict:
    """The JSON record of a checkpoint on disk (recipe, losses, training time and machine)."""
    return checkpoints.read_record(checkpoint_path(name, fast=fast))
