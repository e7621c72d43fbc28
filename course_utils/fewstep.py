"""Few-step generation: teacher pairs, reflow, one-step distillation, and the few-step sampler.

Rectified flow (Liu et al. 2023, "Flow Straight and Fast") trains a velocity model on
the straight path between noise and data. Its ODE paths bend, so Euler needs many steps. **Reflow**
(2-rectified flow) draws noise z, runs the trained model's ODE from z to get a sample x, and trains
again on the straight path between these *pairs*::

    x_t = (1 - t) x + t z,        u = z - x,        loss = || v(x_t, t) - u ||^2

The pairs are a deterministic coupling, so the new model's paths are nearly straight and a few
Euler steps land where the teacher's twenty did. **One-step distillation** on the same pairs
(InstaFlow, Liu et al. 2024) trains only the first step: ``x_hat = z - v(z, 1)`` against
``x``. Guidance is distilled in: the teacher runs with classifier-free guidance at a fixed scale w,
the student is called once per step with the class alone.

Time runs from 0 (data) to 1 (noise), as everywhere in the course; ``z`` is the sample at t = 1.
A model here is ``model(x, t, cond=None)`` predicting the velocity ``dx/dt``.

- :func:`make_pairs` draws (z, label, x) with the teacher, in chunks cached in the course's
  checkpoint format (atomic files, a folder lock): an interrupted run resumes where it stopped;
- :func:`reflow_loss` and :func:`distillation_loss` are ``loss_fn(model, batch, generator=)``
  for :func:`course_utils.training.train`, with ``batch = (z, labels, x)``;
- :func:`sample` is Euler over ``time_grid(steps)``: one step is ``z - v(z, 1)``;
- :class:`CountEvaluations` counts network evaluations per image (guidance passes included);
- :func:`straightness` measures how far a trajectory bends from the line between its ends.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from . import checkpoints, files, predictions, samplers, schedules
from .errors import BadRequest
from .noise import PerSample

ModelFn = Callable[..., Tensor]


# ---------------------------------------------------------------------------------------------
# The straight path and the sampler


def straight_path(x: Tensor, z: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t) x + t z for per-image times t (B,): the line from data x (t = 0) to noise z (t = 1)."""
    t = t.view(-1, *([1] * (x.dim() - 1)))  # (B, 1, 1, 1)
    return (1 - t) * x + t * z


@torch.no_grad()
def sample(model_fn: ModelFn, z: Tensor, steps: int, *, cond=None, progress: bool = False) -> Tensor:
    """Euler from noise ``z`` (t = 1) to data over ``time_grid(steps)``: ``steps`` model calls.

    One step is ``x = z - v(z, 1)``; two steps go through t = 1/2. For a reflowed or distilled
    model the paths are nearly straight, so a few steps suffice.
    """
    steps = samplers.check_steps(steps)
    return samplers.euler(model_fn, z, schedules.time_grid(steps), cond=cond, progress=progress)


class CountEvaluations(nn.Module):
    """Wrap a network and count its evaluations: every image passed through it counts once.

    ``nfe(n)`` is the number of evaluations per image for n images drawn: guided sampling calls the
    network on the conditional and the unconditional batch, so 20 guided Euler steps are 40.
    """

    def __init__(self, model: ModelFn):
        super().__init__()
        self.model = model
        self.images = 0
        self.prediction = getattr(model, "prediction", None)

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        self.images += x.shape[0]
        return self.model(x, t, cond)

    def nfe(self, n: int) -> float:
        return self.images / n


def straightness(trajectory: list[Tensor], ts: Tensor) -> Tensor:
    """Per image: the mean over steps of ||step velocity - (x_end - x_start)||^2 (per pixel).

    The straightness S of Liu et al. 2023 on a discrete trajectory ``[x(ts[0]), ..., x(ts[-1])]``: zero when
    every step moves along the straight line from start to end at constant speed, as a single
    Euler step needs.
    """
    ts = samplers.check_times(ts)
    if len(trajectory) != len(ts):
        raise BadRequest(f"a trajectory of {len(trajectory)} states needs {len(trajectory)} times, got {len(ts)}")
    total = (trajectory[0] - trajectory[-1]) / (ts[0] - ts[-1])  # the straight line's velocity
    dims = tuple(range(1, trajectory[0].dim()))
    s = torch.zeros(trajectory[0].shape[0])
    for k in range(len(ts) - 1):
        dt = ts[k] - ts[k + 1]
        step = (trajectory[k] - trajectory[k + 1]) / dt
        s += dt * (step - total).pow(2).mean(dim=dims).cpu()
    return s / (ts[0] - ts[-1])


# ---------------------------------------------------------------------------------------------
# A closed-form case: Gaussian data N(mu, s^2) in every pixel, noise N(0, 1)


def gaussian_velocity(mu: float, s: float) -> ModelFn:
    """The flow-matching velocity (1-rectified flow) for data N(mu, s^2), noise N(0, 1), independent pairs:
    ``v(x, t) = E[z - x0 | x_t = x] = -mu + c(t) (x - (1 - t) mu)``, c(t) = (t - (1 - t) s^2) / ((1 - t)^2 s^2 + t^2).

    Its ODE paths ``x_t = (1 - t) mu + sqrt((1 - t)^2 s^2 + t^2) z`` bend unless s = 1; one Euler step
    from z lands on the mean mu, whatever z is: the blurry "average digit".
    """

    def v(x: Tensor, t: Tensor, cond=None) -> Tensor:
        t = t.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        c = (t - (1 - t) * s**2) / ((1 - t) ** 2 * s**2 + t**2)
        return -mu + c * (x - (1 - t) * mu)

    return v


def gaussian_ode_map(z: Tensor, mu: float, s: float) -> Tensor:
    """Where :func:`gaussian_velocity`'s ODE takes noise z from t = 1 to t = 0: ``mu + s z``
    (monotone, so also the optimal-transport map)."""
    return mu + s * z


def gaussian_reflow_velocity(mu: float, s: float) -> ModelFn:
    """The reflowed velocity for the pairs (z, mu + s z): on the straight path x_t = (1 - t)(mu + s z) + t z
    it is the constant ``z - x = (1 - s) z - mu``, with z = (x_t - (1 - t) mu) / ((1 - t) s + t).
    Its paths are straight: one Euler step is exact."""

    def v(x: Tensor, t: Tensor, cond=None) -> Tensor:
        t = t.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        z = (x - (1 - t) * mu) / ((1 - t) * s + t)
        return (1 - s) * z - mu

    return v


# ---------------------------------------------------------------------------------------------
# The losses: loss_fn(model, batch, generator=) with batch = (z, labels, x)


def _unpack(batch) -> tuple[Tensor, Tensor | None, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise BadRequest("a batch of pairs is (z, x) or (z, labels, x)")
    if len(batch) == 2:
        return batch[0], None, batch[1]
    return batch[0], batch[1], batch[2]


def reflow_times(n: int, *, p_one: float = 0.0, generator: torch.Generator | None = None, device=None) -> Tensor:
    """n training times: uniform in [0, 1], except a share ``p_one`` set to t = 1, the one-step point."""
    if not 0.0 <= p_one <= 1.0:
        raise BadRequest(f"p_one must lie in [0, 1], got {p_one}")
    t = torch.rand(n, generator=generator, device=generator.device if generator is not None else None)
    one = torch.rand(n, generator=generator, device=t.device) < p_one
    return torch.where(one, torch.ones_like(t), t).to(device if device is not None else t.device)


def reflow_loss(model: ModelFn, batch, *, generator: torch.Generator | None = None, p_one: float = 0.0) -> Tensor:
    """2-rectified flow (Liu et al. 2023, the reflow of Algorithm 1) on pairs: ``|| v(x_t, t) - (z - x) ||^2`` on the
    straight path x_t = (1 - t) x + t z, t uniform (a share ``p_one`` at t = 1)."""
    z, labels, x = _unpack(batch)
    t = reflow_times(z.shape[0], p_one=p_one, generator=generator, device=z.device)
    u = z - x  # the straight path's velocity
    return (model(straight_path(x, z, t), t, labels) - u).pow(2).mean()


def distillation_loss(model: ModelFn, batch, *, generator: torch.Generator | None = None) -> Tensor:
    """One-step distillation (InstaFlow, Liu et al. 2024): ``|| (z - v(z, 1)) - x ||^2``:
    the one-step sample against the teacher's. The same number as :func:`reflow_loss` at t = 1."""
    z, labels, x = _unpack(batch)
    t = torch.ones(z.shape[0], device=z.device)
    x_hat = z - model(z, t, labels)  # one Euler step from t = 1 to t = 0
    return (x_hat - x).pow(2).mean()


# ---------------------------------------------------------------------------------------------
# Pairs from a teacher, cached in chunks


def weights_digest(model: nn.Module) -> str:
    """A short SHA-256 of a model's weights: names a teacher in a pair cache's settings, so pairs made by
    other weights (a fast-mode teacher, a retrained one) are never taken for these."""
    import hashlib

    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def pair_folder(name: str) -> Path:
    """Where the pairs called ``name`` are cached: ``<cache>/pairs/NAME`` (outside the repository's files)."""
    from . import config

    return config.cache_dir() / "pairs" / name


def _chunk_path(folder: Path, k: int) -> Path:
    return folder / f"chunk_{k:05d}.safetensors"


def _read_chunk(path: Path, settings: dict, start: int, count: int) -> tuple[Tensor, Tensor, Tensor] | None:
    """The finished chunk of images start..start + count - 1, or None if it is missing or covers
    other images; a chunk made with other settings is refused."""
    if not path.is_file():
        return None
    tensors, record = checkpoints.load_checkpoint(path)
    if record.get("settings") != settings:
        raise BadRequest(
            f"{path.parent} holds pairs made with other settings ({record.get('settings')}, asked for {settings}); "
            "delete the folder or choose another name"
        )
    if record.get("start") != start or record.get("count") != count:
        return None
    return tensors["z"], tensors["labels"], tensors["x"]


@torch.no_grad()
def make_pairs(
    teacher: ModelFn,
    n: int,
    *,
    steps: int = 20,
    seed: int = 0,
    folder: str | Path | None = None,
    settings: dict | None = None,
    chunk: int = 250,
    progress: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` pairs ``(z, labels, x)``: noise z (n, 1, 28, 28) from per-image seeds, balanced labels
    (i % 10), and the teacher's Euler solution x over ``time_grid(steps)`` from z.

    ``teacher(x, t, cond)`` is the velocity model as sampled (wrap it in ``guidance.cfg`` for a
    guided teacher). With ``folder`` the pairs are written in chunks of ``chunk`` images, each an
    atomic checkpoint file recording ``settings`` (what made them: teacher, scale, steps, seed),
    under a lock on the folder: a later call reads the finished chunks and makes only the missing
    ones, so an interrupted run resumes. Image i depends only on (seed, i), never on the chunk.
    """
    n = samplers.check_count(n, "n")
    steps = samplers.check_steps(steps)
    chunk = samplers.check_count(chunk, "chunk")
    seed = samplers.check_seed(seed)
    settings = dict(settings or {}, steps=steps, seed=seed)
    device = predictions.device_of(teacher)

    def one_chunk(start: int, count: int) -> tuple[Tensor, Tensor, Tensor]:
        path = _chunk_path(Path(folder), start // chunk) if folder is not None else None
        done = _read_chunk(path, settings, start, count) if path is not None else None
        if done is not None:
            return done
        z = PerSample.from_seed(seed, count, start=start).randn((count, 1, 28, 28)).to(device)
        labels = (torch.arange(start, start + count) % 10).to(device)
        x = samplers.euler(teacher, z, schedules.time_grid(steps), cond=labels)
        z, labels, x = z.cpu(), labels.cpu(), x.cpu()
        if path is not None:  # written whole or not at all
            checkpoints.save_checkpoint(
                path, dict(z=z, labels=labels, x=x), dict(settings=settings, start=start, count=count)
            )
        return z, labels, x

    def all_chunks() -> list[tuple[Tensor, Tensor, Tensor]]:
        parts = []
        with ExitStack() as stack:
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = stack.enter_context(tqdm(total=n, desc="teacher pairs", unit="pair"))
            for start in range(0, n, chunk):
                parts.append(one_chunk(start, min(chunk, n - start)))
                if bar is not None:
                    bar.update(parts[-1][0].shape[0])
        return parts

    if folder is None:
        parts = all_chunks()
    else:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with files.lock(folder, what="pair cache"):
            parts = all_chunks()
    return tuple(torch.cat(p) for p in zip(*parts))


# ---------------------------------------------------------------------------------------------
# The shipped student: its recipe's extra says how it was made


def teacher_of(r, *, device: torch.device | None = None) -> ModelFn:
    """The guided teacher of a few-step recipe ``r``: ``guidance.cfg(teacher, w)``."""
    from . import guidance, predictions, pretrained

    model = pretrained.load(r.extra["teacher"], device=device)
    return guidance.cfg(predictions.with_prediction(model, "velocity"), r.extra["guidance"])


def pairs_of(r, *, fast: bool = False, progress: bool = True, device: torch.device | None = None):
    """The teacher pairs of a few-step recipe ``r`` (made and cached if missing)."""
    e = r.extra
    n = e["fast_pairs"] if fast else e["pairs"]
    settings = dict(teacher=e["teacher"], guidance=e["guidance"])
    name = f"{r.name}.fast" if fast else r.name
    return make_pairs(
        teacher_of(r, device=device),
        n,
        steps=e["teacher_steps"],
        seed=e["pair_seed"],
        folder=pair_folder(name),
        settings=settings,
        progress=progress,
    )


def loss_of(r) -> Callable[..., Tensor]:
    """The student's ``loss_fn`` from its recipe: reflow with a share ``p_one`` of times at t = 1."""
    import functools

    return functools.partial(reflow_loss, p_one=r.extra.get("p_one", 0.0))


def train_student(
    name: str,
    r,
    *,
    fast: bool,
    out: Path,
    run_dir: Path,
    progress: bool = True,
    device: torch.device | None = None,
) -> nn.Module:
    """Train the few-step student of recipe ``r``: teacher pairs, the teacher's weights as the start,
    :func:`reflow_loss` with the recipe's ``p_one``; export its EMA weights (float16) to ``out``."""
    from . import config, pretrained, training
    from .unet import build_unet

    device = device or config.device()
    started = time.perf_counter()
    z, labels, x = pairs_of(r, fast=fast, progress=progress, device=device)
    pair_seconds = time.perf_counter() - started
    teacher_recipe = pretrained.recipe(r.extra["teacher"])
    student = build_unet(r.unet).to(device)
    if teacher_recipe.unet == r.unet:  # the teacher's weights as the start (the fast recipe's smaller UNet: none)
        student.load_state_dict(pretrained.load(r.extra["teacher"], device=device).float().state_dict())
    result = training.train(
        student,
        loss_of(r),
        (z, labels, x),
        **r.train_kwargs(),
        run_dir=run_dir,
        progress=progress,
        recipe=dict(r.to_dict(), fast=fast),
    )
    record = training.run_record(
        result,
        name=name,
        fast=fast,
        recipe=r.to_dict(),
        data=f"{len(z)} pairs (z, label, x) from {r.extra['teacher']} at guidance {r.extra['guidance']}, "
        f"{r.extra['teacher_steps']} Euler steps",
        device=device,
        pair_seconds_this_call=round(pair_seconds, 1),
    )
    checkpoints.export_weights(result.final_model, out, record, half=True)
    return result.final_model.eval()


def student_recipe(r, **extra):
    """``r`` with its ``extra`` updated (for trying variants of a few-step recipe)."""
    return replace(r, extra=dict(r.extra, **extra))
