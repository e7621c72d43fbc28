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

Replacing a pair is one unit. Each file is renamed into place atomically, but a pair takes two
renames, and a run killed between them would leave new tensors beside the old record. So
:func:`save_checkpoint` (and :func:`export_weights`) replace an existing pair in this order, holding
the pair's lock (``NAME.safetensors.lock``, :func:`course_utils.files.lock`) throughout:

1. the new tensors and the new record are written to temporary files beside the pair and flushed
   to disk; the record holds the tensors' SHA-256;
2. if the current pair verifies, it becomes the backup: its record is copied to ``NAME.prev.json``,
   then ``NAME.safetensors`` is renamed to ``NAME.prev.safetensors`` (from here on the backup is
   whole); a current pair that does not verify is dropped and an earlier whole backup kept;
3. the new tensors are renamed to ``NAME.safetensors``, then the new record to ``NAME.json``;
4. the new pair is checked (the record names the hash of the tensors now in place), and the backup
   is removed, tensors first.

At every instant either ``NAME.*`` or ``NAME.prev.*`` is a whole pair that verifies. When
:func:`load_checkpoint` finds ``NAME.*`` missing or not matching its hash but a backup that
verifies, it restores the backup (record copied back first, then the tensors renamed back) with a
warning, and returns those weights: the rewrite that was interrupted is rolled back. With no pair
that verifies, the error names both files and the fix. ``NAME.prev.*`` files are never checkpoints
of their own: :func:`last_checkpoint` and the training loop's clean-up of older epochs skip them.
Temporary files of a killed writer (``.NAME.safetensors.XXXXXXXX.tmp``) are removed by the next
writer when it takes the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import Tensor, nn

from .errors import BadRequest, CheckpointError, RunBusy
from .files import atomic_write, finish_temp, lock, sha256_file, temp_path

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "read_record",
    "load_checkpoint",
    "last_checkpoint",
    "backup_of",
    "is_backup",
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


def backup_of(path: str | Path) -> Path:
    """``NAME.prev.safetensors``: where the previous pair waits while ``NAME.*`` is replaced."""
    path = Path(path)
    return path.with_suffix(".prev" + path.suffix)


def _pair_files(path: Path) -> list[Path]:
    """The record, the backup and its record: whose temporary files the pair's lock holder removes."""
    return [path.with_suffix(".json"), backup_of(path), backup_of(path).with_suffix(".json")]


def is_backup(path: str | Path) -> bool:
    """Whether ``path`` is the backup half of a pair being replaced (``NAME.prev.*``), not a checkpoint."""
    return Path(path).with_suffix("").suffix == ".prev"


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], record: dict) -> Path:
    """Write ``path`` (.safetensors) and its ``.json`` record as one unit; the record gets the hash.

    An existing pair is replaced by the protocol in this module's docstring: a run killed at any
    point leaves the old pair or the new one loadable. Raises :class:`~course_utils.errors.RunBusy`
    if another process is writing the same pair for more than 30 s.
    """
    path = Path(path)
    if is_backup(path):
        raise BadRequest(f"{path.name}: names ending in .prev.safetensors are kept for backups; choose another name")
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    sidecar = path.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock(path, what="checkpoint", wait=30.0, covers=_pair_files(path)):
        with temp_path(path) as new_tensors, temp_path(sidecar) as new_record:
            payload = save_bytes(tensors)  # not save_file: it leaves a temporary file of its own when killed
            new_tensors.write_bytes(payload)
            finish_temp(new_tensors)
            digest = hashlib.sha256(payload).hexdigest()
            del payload
            new_record.write_text(json.dumps(dict(record, file=path.name, sha256=digest), indent=1))
            finish_temp(new_record)
            _replace_pair(path, new_tensors, new_record, digest)
    return path


def _replace_pair(path: Path, new_tensors: Path, new_record: Path, digest: str) -> None:
    """Steps 2-4 of the protocol (module docstring); the caller holds the pair's lock."""
    sidecar = path.with_suffix(".json")
    prev = backup_of(path)
    prev_record = prev.with_suffix(".json")
    if _verifies(path):  # the current pair is whole: it becomes the backup
        prev.unlink(missing_ok=True)
        prev_record.unlink(missing_ok=True)
        atomic_write(prev_record, sidecar.read_bytes())
        os.replace(path, prev)
    size = new_tensors.stat().st_size
    os.replace(new_tensors, path)
    os.replace(new_record, sidecar)
    try:
        in_place = json.loads(sidecar.read_text()).get("sha256") == digest and path.stat().st_size == size
    except (OSError, ValueError):
        in_place = False
    if not in_place:
        raise CheckpointError(
            f"{path} and {sidecar.name} changed while they were written (another program writing them?): "
            f"{'the previous pair is kept as ' + prev.name if prev.is_file() else 'write them again'}"
        )
    prev.unlink(missing_ok=True)
    prev_record.unlink(missing_ok=True)


def _verifies(path: Path) -> bool:
    """Whether ``path`` and its record form a whole pair (the tensors have the recorded hash)."""
    try:
        return path.is_file() and read_record(path).get("sha256") == sha256_file(path)
    except (CheckpointError, OSError):
        return False


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
    JSON record; nothing is unpickled. A pair that is missing or does not match while a backup
    ``NAME.prev.*`` verifies (its rewrite was interrupted) is rolled back to that backup with a
    warning. Otherwise a mismatch raises :class:`CheckpointError` naming both files and the fix.
    """
    path = Path(path)
    try:
        return _read_verified(path, sha256)
    except CheckpointError as problem:
        prev = backup_of(path)
        if is_backup(path) or not prev.is_file():
            raise
        try:
            backup = _read_verified(prev, sha256)
        except CheckpointError as also:
            raise CheckpointError(
                f"{problem} The backup {prev.name} + {prev.with_suffix('.json').name} from an interrupted "
                f"rewrite does not verify either ({also}). Delete all four files to retrain or export again."
            ) from problem
        return _roll_back(path, backup, sha256, problem)


def _roll_back(path: Path, backup, sha256: str | None, problem: CheckpointError):
    """Put the verified backup pair back in place of ``path`` (module docstring) and return it."""
    prev, sidecar = backup_of(path), path.with_suffix(".json")
    try:
        with lock(path, what="checkpoint", covers=_pair_files(path)):
            try:  # a rewrite may have finished meanwhile
                return _read_verified(path, sha256)
            except CheckpointError:
                pass
            backup = _read_verified(prev, sha256)
            atomic_write(sidecar, prev.with_suffix(".json").read_bytes())  # record first, then the tensors
            os.replace(prev, path)
            prev.with_suffix(".json").unlink(missing_ok=True)
    except (RunBusy, OSError) as busy:  # being rewritten right now, or a read-only folder: read the backup
        warnings.warn(f"{problem} Using the previous pair {prev.name} without moving it ({busy}).", stacklevel=3)
        return backup
    warnings.warn(
        f"{problem} The previous pair was complete and verified: rolled {path.name} and {sidecar.name} back "
        "to it (the rewrite that was interrupted is lost; run it again).",
        stacklevel=3,
    )
    return backup


def _read_verified(path: Path, sha256: str | None = None) -> tuple[dict[str, Tensor], dict]:
    """One pair's tensors and record, read once and checked against the expected hash."""
    sidecar = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found"
            + (
                f" (its record {sidecar.name} is there: the tensors were deleted or never finished)"
                if sidecar.is_file()
                else ""
            )
        )
    record = read_record(path) if sidecar.is_file() or sha256 is None else {}
    expected = sha256 or record.get("sha256")
    raw = path.read_bytes()  # hashed and parsed from the same bytes
    actual = hashlib.sha256(raw).hexdigest()
    if expected != actual:
        raise CheckpointError(
            f"checkpoint {path} does not match its recorded SHA-256 (expected {expected}, found {actual}; "
            f"record {sidecar.name}): the file was changed or only partly written. Delete {path.name} and "
            f"{sidecar.name} to retrain, or restore the original pair."
        )
    try:
        return load_bytes(raw), record
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{path} matches its hash but is not a safetensors file ({err})") from err


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest ``epoch_NNNN.safetensors`` in ``run_dir`` that has its JSON record, or None.

    Backups (``epoch_NNNN.prev.*``) are not checkpoints of their own; a whole backup whose pair is
    missing (its rewrite was interrupted) counts as that epoch: :func:`load_checkpoint` restores it.
    """
    run_dir = Path(run_dir)
    found = set()
    for p in run_dir.glob("epoch_*.safetensors"):
        if not p.with_suffix(".json").is_file():
            continue
        found.add(p.with_name(p.name.replace(".prev.", ".")) if is_backup(p) else p)
    return max(found) if found else None


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
