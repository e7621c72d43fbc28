"""One explicit training loop for every model in the course, with EMA, checkpoints and resume.

::

    result = train(model, partial(losses.ddpm_loss, schedule=s), (images, labels),
                   epochs=5, batch_size=128, lr=1e-3, ema_decay=0.999, seed=0, run_dir="runs/ddpm")

Reproducibility: the order of the data in epoch e is a pure function of (seed, e) (a
``torch.Generator`` seeded from both), the loss draws its times and noise from one generator
seeded with ``seed``, and a checkpoint stores that generator's state and torch's global one.
A run resumed from a checkpoint therefore produces the same losses as one that never stopped.

Checkpoints (``run_dir/epoch_NNNN.safetensors`` + ``.json``) use the course's one format,
:mod:`course_utils.checkpoints`; its functions stay importable from here. The loop never plots:
``sample_fn`` draws images during training and ``save_samples`` (for example
:func:`course_utils.plotting.sample_grid_saver`) stores them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from . import predictions, progress

# the checkpoint format lives in checkpoints.py; these names stay importable from here
from .checkpoints import (  # noqa: F401
    CheckpointError,
    backup_of,
    export_weights,
    flatten_optimizer,
    last_checkpoint,
    load_checkpoint,
    load_weights,
    machine_description,
    prefixed,
    read_record,
    save_checkpoint,
    strip_prefix,
    unflatten_optimizer,
)
from .files import lock


def run_record(result: TrainResult, *, name: str, fast: bool, recipe: dict, data: str, device, **extra) -> dict:
    """The JSON record shipped beside a trained model: what, on which data, how long, on what machine."""
    record = dict(
        name=name,
        fast=fast,
        recipe=recipe,
        data=data,
        epochs=result.epoch,
        steps=result.step,
        final_epoch_loss=result.epoch_losses[-1] if result.epoch_losses else None,
        epoch_losses=result.epoch_losses,
        epoch_seconds=[round(s, 1) for s in result.epoch_seconds],
        train_seconds_total=round(sum(result.epoch_seconds), 1),
    )
    record.update(extra)
    record.update(machine=machine_description(device), losses=[round(v, 5) for v in result.losses])
    return record


# ---------------------------------------------------------------------------------------------
# Which code a run was trained with


def _code_parts(code) -> list[bytes]:
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts += _code_parts(const) if hasattr(const, "co_code") else [repr(const).encode()]
    return parts


def code_fingerprint(*fns) -> str:
    """Eight hex digits that change when the code of any of ``fns`` (functions or classes) changes.

    A notebook that trains with a student's function keys its run folder with it
    (``run_dir=runs / f"04_fm_{code_fingerprint(loss)}"``), so a corrected function trains afresh
    instead of resuming the checkpoints of the earlier one, and neither run is lost.
    """
    digest = hashlib.sha256()
    for fn in fns:
        if isinstance(fn, type):
            members = [m for _, m in sorted(vars(fn).items()) if hasattr(m, "__code__")]
        else:
            members = [fn]
        if not members or not all(hasattr(m, "__code__") for m in members):
            raise TypeError(f"code_fingerprint needs Python functions or classes, got {type(fn).__name__}")
        for member in members:
            for part in _code_parts(member.__code__):
                digest.update(part)
    return digest.hexdigest()[:8]


# ---------------------------------------------------------------------------------------------
# EMA


def ema_decay_at(decay: float, step: int | None) -> float:
    """The decay used at update number ``step`` (0, 1, ...): min(decay, (1 + step) / (10 + step)).

    The warm-up keeps the average from clinging to the random initial weights in short runs:
    with a fixed 0.999, 60% of the average would still be the initialisation after 500 steps.
    """
    return decay if step is None else min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int | None = None) -> None:
    """theta_ema <- d * theta_ema + (1 - d) * theta, d = ``ema_decay_at(decay, step)``; buffers
    (BatchNorm statistics) copied."""
    decay = ema_decay_at(decay, step)
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


# ---------------------------------------------------------------------------------------------
# Data order


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that shuffles epoch ``epoch``: a pure function of (seed, epoch)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def _as_tensors(data) -> tuple[Tensor, ...] | None:
    """Tensors (N, ...) or a tuple of them or a TensorDataset -> tuple of tensors; else None."""
    if torch.is_tensor(data):
        return (data,)
    if isinstance(data, torch.utils.data.TensorDataset):
        return tuple(data.tensors)
    if isinstance(data, (tuple, list)) and data and all(torch.is_tensor(d) for d in data):
        if len({d.shape[0] for d in data}) != 1:
            raise ValueError("all data tensors must have the same length")
        return tuple(data)
    return None


def batches(tensors: tuple[Tensor, ...], batch_size: int, seed: int, epoch: int) -> Iterable[tuple[Tensor, ...]]:
    """Shuffled mini-batches of an epoch; the order depends only on (seed, epoch)."""
    order = torch.randperm(tensors[0].shape[0], generator=epoch_generator(seed, epoch))
    for start in range(0, order.numel(), batch_size):
        idx = order[start : start + batch_size]
        yield tuple(t[idx] for t in tensors)


def _describe(data) -> str:
    tensors = _as_tensors(data)
    if tensors is None:
        return f"{type(data).__name__} of {len(data)} batches" if hasattr(data, "__len__") else type(data).__name__
    return ", ".join(f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in tensors)


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model, its EMA copy, losses and timings."""

    model: nn.Module
    ema: nn.Module | None
    losses: list[float] = field(default_factory=list)  # one per step, the whole run (resumed included)
    epoch_losses: list[float] = field(default_factory=list)  # mean per epoch
    epoch_seconds: list[float] = field(default_factory=list)
    step: int = 0
    epoch: int = 0
    run_dir: Path | None = None
    resumed_from: int | None = None  # the epoch of the checkpoint the run continued from

    @property
    def final_model(self) -> nn.Module:
        """The EMA model when there is one (what samplers should use), else the model."""
        return self.ema if self.ema is not None else self.model


def _make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam or AdamW; on a CPU the fused update where torch has it (2.4 and later): one kernel for
    all parameters instead of a loop over them, 5.4 -> 1.6 ms per step for the D = 16 MNIST UNet."""
    if name not in ("adam", "adamw"):
        raise ValueError(f"optimizer must be 'adam' or 'adamw', not {name!r}")
    kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    params = list(params)
    if params and all(p.device.type == "cpu" for p in params):
        try:
            return kind(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError):  # an older torch: no fused update on the CPU
            pass
    return kind(params, lr=lr, weight_decay=weight_decay)


#: On a CPU, train convolutional models with their weights in the channels-last layout (NHWC),
#: which the CPU convolution kernels run faster. Per training step on the 2-core CI machine
#: (``benchmarks/bench_channels_last.py``, ``benchmarks/results/channels_last.json``): 62 -> 50 ms
#: for the D = 16 MNIST UNet (batch 32), 96 -> 78 ms with classes (batch 64), 495 -> 385 ms for
#: D = 32 (batch 128), 967 -> 944 ms for the latent UNet; the losses agree to 3e-5. The model is
#: handed back in the usual layout.
CPU_CHANNELS_LAST = True


def _set_layout(modules, opt: torch.optim.Optimizer, channels_last: bool) -> None:
    """Put the 4-D weights of ``modules`` (and the optimiser's moments for them) in the channels-last
    layout, or back in the usual one. Values are unchanged; only the order in memory differs."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in modules:
        if m is not None:
            m.to(memory_format=fmt)
    for state in opt.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() == 4:
                state[key] = value.contiguous(memory_format=fmt)


LR_SCHEDULES = ("constant", "exponential", "cosine")


def lr_at(epoch: int, lr: float, lr_schedule: str, gamma: float | None, *, progress: float = 0.0) -> float:
    """Learning rate: constant; exponential decay lr * gamma^epoch (ExponentialLR, per epoch); or
    cosine decay lr * (1 + cos(pi * progress)) / 2 with ``progress`` = step / total steps
    (CosineAnnealingLR to 0, per step)."""
    if lr_schedule == "constant":
        return lr
    if lr_schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    if lr_schedule == "exponential":
        if gamma is None or not 0 < gamma <= 1:
            raise ValueError("an exponential schedule needs 0 < gamma <= 1")
        return lr * gamma**epoch
    raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, not {lr_schedule!r}")


def _tensorboard(run_dir: Path | None):
    if run_dir is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(
    model: nn.Module,
    loss_fn: Callable[..., Tensor],
    data,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    lr_schedule: str = "constant",
    gamma: float | None = None,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    ema_decay: float | None = None,
    seed: int = 0,
    run_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = True,
    sample_fn: Callable[[nn.Module, int], Tensor] | None = None,
    sample_every: int | None = None,
    save_samples: Callable[[Tensor, int], None] | None = None,
    progress: bool = True,
    recipe: dict | None = None,
    amp: bool = False,
    ddp: bool | None = None,
) -> TrainResult:
    """Train ``model`` with ``loss_fn(model, batch, generator=g)`` for ``epochs`` epochs.

    ``data`` is an image tensor, a tuple ``(images, conds)``, a ``TensorDataset`` (shuffled from
    (seed, epoch)), or any iterable of batches such as a ``DataLoader`` (used as it is; resuming
    it reproduces the run only if its order is seeded). With ``run_dir``, a checkpoint is written
    every ``checkpoint_every`` epochs and, if ``resume``, training continues from the newest one.
    ``sample_fn(model, epoch) -> images`` in [-1, 1] (given the EMA model when there is one) is called every
    ``sample_every`` epochs, and its images are handed to ``save_samples(images, epoch)``
    (``plotting.sample_grid_saver(run_dir)`` writes ``run_dir/samples_epoch_NNNN.png``); it should
    use its own generator (the global RNG is restored around it anyway). ``lr_schedule``: one of
    :data:`LR_SCHEDULES` (``"cosine"`` is applied per step; it needs tensor data or a sized iterable).

    ``amp``: mixed precision on CUDA (``torch.autocast`` in bfloat16 where the GPU has it, else
    float16 with a ``GradScaler``, whose loss scale is saved with each checkpoint and restored on
    resume); ignored on other devices. Several processes (``torchrun``, a
    process group initialised; ``ddp=False`` opts out): the model is wrapped in PyTorch's
    ``DistributedDataParallel`` so gradients are averaged over the ranks; tensor data is split
    (rank r takes rows r, r + W, ... of every batch), an iterable of batches must give each rank
    its own share; the loss logged is the mean over ranks; rank 0 alone writes checkpoints,
    samples and progress.
    """
    from tqdm.auto import tqdm

    if epochs < 0 or batch_size < 1:
        raise ValueError("need epochs >= 0 and batch_size >= 1")
    tensors = _as_tensors(data)
    device = predictions.device_of(model)
    run_dir = Path(run_dir) if run_dir is not None else None
    opt = _make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if ema_decay is not None else None
    loss_generator = torch.Generator().manual_seed(seed)  # times, noise, condition dropout
    torch.manual_seed(seed)  # whatever the model draws itself (dropout)
    hparams = dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_schedule=lr_schedule,
        gamma=gamma,
        optimizer=optimizer,
        weight_decay=weight_decay,
        ema_decay=ema_decay,
        seed=seed,
    )
    config = getattr(model, "cfg", None)
    base_record = {
        "model_config": config.to_dict() if hasattr(config, "to_dict") else None,
        "hyperparameters": hparams,
        "data": _describe(data),
        "recipe": recipe or {},
        "machine": machine_description(device),
    }
    result = TrainResult(model=model, ema=ema, run_dir=run_dir)

    rank, world = _distributed(ddp)
    with ExitStack() as held:
        if run_dir is not None and rank == 0:  # the process that writes checkpoints owns the folder
            run_dir.mkdir(parents=True, exist_ok=True)
            held.enter_context(lock(run_dir, what="run folder"))
        checkpoint = last_checkpoint(run_dir) if run_dir is not None and resume else None
        if checkpoint is not None:
            saved, record = load_checkpoint(checkpoint)
            _check_same_run(record, base_record, checkpoint)
            model.load_state_dict(strip_prefix("model", saved))
            if ema is not None:
                ema.load_state_dict(strip_prefix("ema", saved) or strip_prefix("model", saved))
            opt.load_state_dict(unflatten_optimizer(saved, record["optimizer_param_groups"]))
            loss_generator.set_state(saved["rng.loss"])
            torch.set_rng_state(saved["rng.torch"])
            result.losses, result.epoch_losses = record["losses"], record["epoch_losses"]
            result.epoch_seconds = record.get("epoch_seconds", [])
            result.step, result.epoch = record["step"], record["epoch"]
            result.resumed_from = record["epoch"]

        channels_last = (
            CPU_CHANNELS_LAST
            and device.type == "cpu"
            and world == 1
            and any(isinstance(m, nn.Conv2d) for m in model.modules())
        )
        if channels_last:
            _set_layout((model, ema), opt, True)
            held.callback(_set_layout, (model, ema), opt, False)  # the usual layout again, however the loop ends
        net = _wrap_ddp(model, device) if world > 1 else model  # forward/backward through DDP; weights stay in model
        use_amp, amp_dtype, scaler = _mixed_precision(amp, device)
        if checkpoint is not None and scaler.is_enabled() and record.get("grad_scaler"):
            scaler.load_state_dict(record["grad_scaler"])  # the loss scale it had reached, not the initial 65536
        progress = progress and rank == 0
        writer = _tensorboard(run_dir) if progress else None
        per_epoch = (
            math.ceil(tensors[0].shape[0] / batch_size)
            if tensors is not None
            else (len(data) if hasattr(data, "__len__") else None)
        )
        if lr_schedule == "cosine" and per_epoch is None:
            raise ValueError("a cosine learning-rate schedule needs data of known length (tensors or a sized iterable)")
        total_steps = epochs * per_epoch if per_epoch is not None else None
        timer = _StepTimer(total_steps, result.step, device) if progress else None
        for epoch in range(result.epoch, epochs):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch, lr, lr_schedule, gamma)
            model.train()
            started = time.perf_counter()
            epoch_batches = batches(tensors, batch_size, seed, epoch) if tensors is not None else data
            total = per_epoch
            bar = tqdm(
                epoch_batches, total=total, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False
            )
            running = []
            for batch in bar:
                batch = tuple(b.to(device) for b in batch) if isinstance(batch, (tuple, list)) else batch.to(device)
                if world > 1 and tensors is not None:
                    if batch[0].shape[0] < world:  # too small to split: every rank skips it alike
                        continue
                    batch = tuple(b[rank::world] for b in batch)
                if lr_schedule == "cosine":  # per step, from the step count (so a resumed run continues it)
                    for group in opt.param_groups:
                        group["lr"] = lr_at(epoch, lr, lr_schedule, gamma, progress=result.step / (epochs * per_epoch))
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss = loss_fn(net, batch, generator=loss_generator)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # without amp: loss.backward(), opt.step()
                scaler.step(opt)
                scaler.update()
                if ema is not None:
                    ema_update(ema, model, ema_decay, step=result.step)
                value = _mean_over_ranks(loss.detach().float(), world)
                running.append(value)
                result.losses.append(value)
                result.step += 1
                if timer is not None:
                    timer.tick(result.step)
                if writer is not None:
                    writer.add_scalar("loss", value, result.step)
                if len(running) % 20 == 0:
                    bar.set_postfix(loss=f"{sum(running[-20:]) / 20:.4f}")
            result.epoch = epoch + 1
            result.epoch_losses.append(sum(running) / max(1, len(running)))
            result.epoch_seconds.append(time.perf_counter() - started)
            if progress:
                print(
                    f"epoch {result.epoch}/{epochs}: loss {result.epoch_losses[-1]:.4f} "
                    f"({result.epoch_seconds[-1]:.0f} s, lr {opt.param_groups[0]['lr']:.2e})"
                )
            if sample_fn is not None and sample_every and result.epoch % sample_every == 0 and rank == 0:
                _draw_samples(sample_fn, save_samples, result.final_model, result.epoch)
                model.train()
            if run_dir is not None and (result.epoch % checkpoint_every == 0 or result.epoch == epochs):
                if rank == 0:
                    _write_checkpoint(run_dir, model, ema, opt, loss_generator, result, base_record, scaler)
                if world > 1:
                    torch.distributed.barrier()  # no rank runs ahead of the checkpoint it may resume from
        if writer is not None:
            writer.close()
        model.eval()
        return result


class _StepTimer:
    """Prints, once, how long the whole run will take on this device, measured from a few steps
    (the first step is left out: it pays for warm-up), so a student knows whether to wait."""

    first, measured = 1, 10  # steps left out, steps timed

    def __init__(self, total_steps: int | None, done: int, device: torch.device):
        self.total, self.done, self.device = total_steps, done, device
        self.started: float | None = None
        self.printed = False

    def tick(self, step: int) -> None:
        if self.total is None or self.printed:
            return
        ran = step - self.done
        if ran == self.first:
            self.started = time.perf_counter()
        elif ran == self.first + self.measured and self.started is not None:
            per_step = (time.perf_counter() - self.started) / self.measured
            print(estimate_line(per_step, self.total - self.done, self.device), flush=True)
            self.printed = True


def estimate_line(per_step: float, steps: int, device) -> str:
    """``"estimated time for this run: about 4 min ..."`` from a measured time per step."""
    return (
        f"estimated time for this run: about {progress.span(per_step * steps)} on {progress.device_name(device)} "
        f"({steps:,} steps at {per_step * 1000:.0f} ms "
        f"each, measured over the first steps; samples and checkpoints between epochs come on top)"
    )


def _check_same_run(record: dict, base_record: dict, checkpoint: Path) -> None:
    """Resume only the run that wrote ``checkpoint``: the same model and hyper-parameters (only the
    number of epochs may change). Otherwise a changed cell would silently continue someone else's run."""

    def settings(r: dict) -> dict:
        hparams = {k: v for k, v in (r.get("hyperparameters") or {}).items() if k != "epochs"}
        return json.loads(json.dumps(dict(hparams, model=r.get("model_config"))))  # tuples as JSON lists

    then, now = settings(record), settings(base_record)
    changed = [
        f"{k} {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(then.keys() | now.keys()) if then.get(k) != now.get(k)
    ]
    if changed:
        raise ValueError(
            f"{checkpoint.parent} holds a run with other settings ({'; '.join(changed)}): resuming it would "
            f"mix two runs. Use another run_dir, or delete {checkpoint.parent} (or pass resume=False) to start over."
        )


def _mixed_precision(amp: bool, device: torch.device) -> tuple[bool, torch.dtype, torch.amp.GradScaler]:
    """(autocast on?, its dtype, the gradient scaler): bfloat16 where the GPU has it (no scaling
    needed), else float16 with a ``GradScaler``; everything off unless ``amp`` and CUDA."""
    use_amp = amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    return use_amp, amp_dtype, torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless a process group is initialised (torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _distributed(ddp: bool | None) -> tuple[int, int]:
    """(rank, world size): (0, 1) unless a process group is initialised (torchrun) and ddp is not False."""
    rank, world = rank_and_world()
    if ddp and world == 1 and not _initialised():
        raise RuntimeError("ddp=True needs torch.distributed.init_process_group() first (run under torchrun)")
    return (0, 1) if ddp is False else (rank, world)


def _initialised() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """PyTorch DDP: same initial weights on every rank (broadcast from rank 0), gradients all-reduced."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(
            model, device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
        )
    return DistributedDataParallel(model)


def _mean_over_ranks(loss: Tensor, world: int) -> float:
    if world > 1:
        torch.distributed.all_reduce(loss, op=torch.distributed.ReduceOp.SUM)
        loss = loss / world
    return loss.item()


def _draw_samples(sample_fn, save_samples, model: nn.Module, epoch: int) -> None:
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        images = sample_fn(model, epoch)
    model.train(was_training)
    if save_samples is not None and images is not None:
        save_samples(images, epoch)


def _write_checkpoint(
    run_dir: Path,
    model,
    ema,
    opt,
    loss_generator,
    result: TrainResult,
    base_record: dict,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    tensors = prefixed("model", model)
    if ema is not None:
        tensors.update(prefixed("ema", ema))
    optim_tensors, groups = flatten_optimizer(opt)
    tensors.update(optim_tensors)
    tensors["rng.loss"] = loss_generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    record = dict(
        base_record,
        epoch=result.epoch,
        step=result.step,
        optimizer_param_groups=groups,
        losses=result.losses,
        epoch_losses=result.epoch_losses,
        epoch_seconds=result.epoch_seconds,
        grad_scaler=scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    )
    path = save_checkpoint(run_dir / f"epoch_{result.epoch:04d}.safetensors", tensors, record)
    for old in run_dir.glob("epoch_*.safetensors"):  # keep only the newest checkpoint (older backups go too)
        if old not in (path, backup_of(path)):
            old.with_suffix(".json").unlink(missing_ok=True)
            old.unlink(missing_ok=True)
    return path
