"""Checkpoint files: one format for everything the course trains or ships.

A checkpoint is two files, written atomically (:mod:`course_utils.files`):

- ``NAME.safetensors``: tensors only, under prefixes: ``model.*`` (weights), ``ema.*`` (the EMA
  copy, training checkpoints), ``optim.<i>.<key>`` (the optimiser state flattened to tensors) and
  ``rng.*`` (generator states), so nothing is ever unpickled;
- ``NAME.json``: the record: the recipe (:class:`course_utils.recipes.Recipe` as a dict), the
  model configuration, epoch and step, loss history, timings, the machine, and the SHA-256 of the
  tensor file.

Training checkpoints (``runs/NAME/epoch_NNNN.*``, written by :func:`course_utils.training.train`)
and exported ones (``data/checkpoints/NAME.*``: EMA weights only, float16) share the format, and so
do the MNIST models, the classifier and the photo models. Loading checks the hash first (the
registry's for a shipped file, else the record's): a changed or half-written file fails with
:class:`~course_utils.errors.CheckpointError`.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .errors import CheckpointError
from .files import atomic_path, atomic_write, sha256_file

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "read_record",
    "load_checkpoint",
    "last_checkpoint",
    "load_weights",
    "export_weights",
    "machine_description",
]


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list[dict]]:
    """Optimiser state -> flat tensors ``optim.<param index>.<key>`` and JSON-able param groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def unflatten_optimizer(tensors: dict[str, Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], record: dict) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` record atomically; the record gets the hash."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    record = dict(record, file=path.name, sha256=sha256_file(path))
    atomic_write(path.with_suffix(".json"), json.dumps(record, indent=1))
    return path


def read_record(path: str | Path) -> dict:
    """The JSON record beside a checkpoint file."""
    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        raise CheckpointError(f"{sidecar} is missing: cannot verify {Path(path).name}")
    try:
        return json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{sidecar} is not a readable JSON record ({err}): it was cut short or edited; "
            "restore it, or delete both files to retrain"
        ) from err


def load_checkpoint(path: str | Path, *, sha256: str | None = None) -> tuple[dict[str, Tensor], dict]:
    """Read a checkpoint's tensors and record after checking its SHA-256.

    The expected hash is ``sha256`` if given (e.g. from the course registry), else the one in the
    JSON record. A mismatch raises :class:`CheckpointError`; nothing is unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    record = read_record(path) if path.with_suffix(".json").is_file() or sha256 is None else {}
    expected = sha256 or record.get("sha256")
    actual = sha256_file(path)
    if expected != actual:
        raise CheckpointError(
            f"checkpoint {path} does not match its recorded SHA-256 (expected {expected}, found {actual}): "
            "the file was changed or only partly written. Delete it to retrain, or restore the original."
        )
    return load_file(str(path)), record


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest ``epoch_NNNN.safetensors`` in ``run_dir`` that has its JSON record, or None."""
    run_dir = Path(run_dir)
    found = sorted(p for p in run_dir.glob("epoch_*.safetensors") if p.with_suffix(".json").is_file())
    return found[-1] if found else None


def prefixed(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    """A module's state dict under ``prefix.`` (``model.*``, ``ema.*``)."""
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def strip_prefix(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors under ``prefix.``, with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_weights(model: nn.Module, path: str | Path, *, ema: bool = True, sha256: str | None = None) -> dict:
    """Load weights from a training checkpoint or an exported file into ``model``; return the record.

    Takes the EMA weights when present and ``ema`` is True, else the raw model weights; tensors are
    cast to the model's dtype (exported course checkpoints are stored in float16).
    """
    tensors, record = load_checkpoint(path, sha256=sha256)
    prefix = "ema" if ema and any(k.startswith("ema.") for k in tensors) else "model"
    weights = strip_prefix(prefix, tensors)
    if not weights:
        raise CheckpointError(f"{path} holds no '{prefix}.*' tensors")
    reference = model.state_dict()
    weights = {k: v.to(reference[k].dtype) if k in reference else v for k, v in weights.items()}
    model.load_state_dict(weights)
    return record


def export_weights(model: nn.Module, path: str | Path, record: dict, *, half: bool = True) -> Path:
    """Save only the weights (``model.*``, float16 by default) with a JSON record: a shipped checkpoint."""
    tensors = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.half() if half and v.is_floating_point() else v
    return save_checkpoint(path, tensors, record)


def machine_description(device: torch.device | str = "cpu") -> str:
    """Where a run happened, for the record: CPU, cores and threads used, torch version, device."""
    cpu = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, device {device}"
    )
