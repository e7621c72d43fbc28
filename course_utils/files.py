"""Safe file writing and content hashes, used for checkpoints, caches and downloads.

Every file the course writes goes through :func:`atomic_write`: the bytes land in a temporary
file in the same folder, are flushed to disk, and the temporary file is renamed over the target.
A run killed half-way therefore leaves either the old file or the new one, never half of one.

A folder or a cache file that a run writes into is held with :func:`lock` for as long as it
writes: a second run into the same place gets :class:`~course_utils.errors.RunBusy` naming the
first (its process id and machine) instead of both writing at once. The lock is a small JSON file,
``FOLDER/.lock`` or ``FILE.lock``, holding the holder's ``pid``, ``host``, ``started`` (UTC,
ISO 8601) and ``argv``. It is created atomically and only if absent: written beside its place and
hard-linked into it, so it appears whole or not at all (``O_CREAT | O_EXCL`` where the file system
has no hard links). A lock left by a process of this machine that no longer runs is taken over
with a warning. A lock from another machine (two Colab sessions can share a Drive folder) is never
taken over automatically: this machine cannot tell whether that process still runs, so the error
says how to remove it by hand. Whoever takes a lock owns the place: temporary files that
:func:`atomic_path` left there when a run was killed are removed then.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from .errors import RunBusy


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Use it for writers that want a file name (``safetensors.torch.save_file``, ``np.savez``)::

        with atomic_path("model.safetensors") as tmp:
            save_file(tensors, tmp)
    """
    with temp_path(path) as tmp:
        yield tmp
        finish_temp(tmp)  # the bytes on disk, the usual permissions, before the rename
        os.replace(tmp, path)


@contextmanager
def temp_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary file beside ``path``, named as :func:`atomic_path` names them; it is
    removed on leaving the block unless the caller moved it (``os.replace``) meanwhile. For writers
    that must rename several files in an order of their own; call :func:`finish_temp` before."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def finish_temp(tmp: str | os.PathLike) -> None:
    """Flush a temporary file's bytes to disk and give it the usual permissions, ready to be renamed."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_bytes(data: bytes) -> str:
    """Hex MD5 of some bytes (the checksum MNIST's mirrors publish)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# ---------------------------------------------------------------------------------------------
# Locks: one writer per run folder or cache file

_HELD: set[str] = set()  # the lock files this process holds now
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what atomic_path's mkstemp names look like
_WRITER_TEMP = re.compile(r"^\.tmp[A-Za-z0-9]{6}$")  # what safetensors' save_file writes before its rename
_UNREADABLE_GRACE_S = 10.0  # a lock file still empty after this long was left by a killed process


def lock_path_of(path: str | os.PathLike) -> Path:
    """The lock file of a folder (``FOLDER/.lock``) or of a file (``FILE.lock``, beside it)."""
    path = Path(path)
    return path / ".lock" if path.is_dir() else path.with_name(path.name + ".lock")


@contextmanager
def lock(
    path: str | os.PathLike, what: str = "folder", *, wait: float = 0.0, covers: Iterable[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Hold ``path`` (an existing folder, or a file that may not exist yet) for one writer.

    ::

        with files.lock(run_dir, what="run folder"):
            ...  # nobody else writes into run_dir meanwhile

    Raises :class:`~course_utils.errors.RunBusy` when another process holds it (naming its pid,
    machine and start, and the lock file), when this process already holds it, or when the
    lock comes from another machine. ``wait`` seconds: keep trying while a process of this
    machine holds it (for short holds such as a cache write). A stale lock (a process of this
    machine that no longer runs) is taken over with a warning. Once held, the temporary files
    :func:`atomic_path` left in the folder (or beside the file, and beside each of ``covers``)
    are removed, and so is a stale lock that a killed take-over left set aside, with a warning
    saying how many. The lock is released on leaving the block, also on an exception; yields the
    lock file's path.
    """
    path = Path(path)
    lock_file = lock_path_of(path)
    mine = _acquire(lock_file, path, what, wait)
    try:
        removed = remove_temps(path, [*covers, lock_file]) + _remove_stale_asides(lock_file)
        if removed:
            warnings.warn(f"removed {removed} temporary file(s) left in {path} by an interrupted run", stacklevel=3)
        yield lock_file
    finally:
        _release(lock_file, mine)


def remove_temps(path: str | os.PathLike, covers: Iterable[str | os.PathLike] = ()) -> int:
    """Delete the temporary files :func:`atomic_path` leaves when a writer is killed: every
    ``.NAME.XXXXXXXX.tmp`` in a folder and its sub-folders (and safetensors' ``.tmpXXXXXX``), or
    those of one file (and of ``covers``).
    Only the holder of the lock should call this; returns how many were removed."""
    path = Path(path)
    if path.is_dir():
        found = [p for p in path.rglob(".*.tmp") if _TEMP_NAME.match(p.name)]
        found += [p for p in path.rglob(".tmp*") if _WRITER_TEMP.match(p.name) and p.is_file()]
    else:
        found = []
        for target in [path, *map(Path, covers)]:
            if target.parent.is_dir():
                prefix = f".{target.name}."
                found += [
                    p
                    for p in target.parent.iterdir()
                    if p.name.startswith(prefix) and _TEMP_NAME.match(p.name) and len(p.name) == len(prefix) + 12
                ]
    removed = 0
    for temp in found:
        try:
            temp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _acquire(lock_file: Path, path: Path, what: str, wait: float) -> dict:
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        "argv": list(sys.argv),
        "what": what,
    }
    deadline = time.monotonic() + wait
    while True:
        if _create_exclusively(lock_file, json.dumps(me).encode()):
            _HELD.add(str(lock_file.absolute()))
            return me
        busy = _busy_or_take_over(lock_file, path, what)
        if busy is None:
            continue  # the lock vanished or a stale one was taken over: try again
        retry, error = busy
        if not retry or time.monotonic() >= deadline:
            raise error
        time.sleep(0.05)


def _create_exclusively(lock_file: Path, payload: bytes) -> bool:
    """Create ``lock_file`` holding ``payload`` unless it exists (then False). The bytes are written
    to a temporary file first and hard-linked into place, which fails if the name exists, like
    ``O_CREAT | O_EXCL``, and shows the lock whole or not at all, so a process killed while taking
    it leaves no empty lock. Where the file system has no hard links (some network and cloud-drive
    mounts) the lock is created with ``O_CREAT | O_EXCL`` and then written."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{lock_file.name}.", suffix=".tmp", dir=lock_file.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        try:
            os.link(tmp_name, lock_file)
            return True
        except FileExistsError:
            return False
        except OSError:
            pass  # no hard links here
    finally:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
    try:
        fd = os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _busy_or_take_over(lock_file: Path, path: Path, what: str) -> tuple[bool, RunBusy] | None:
    """None to try again (the lock is gone or was stale and taken over), else (may retry later, error)."""
    try:
        raw = lock_file.read_bytes()
        age = time.time() - lock_file.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(raw)
        pid, host = int(holder["pid"]), str(holder["host"])
    except (ValueError, KeyError, TypeError):
        if age < _UNREADABLE_GRACE_S:  # a process is writing it right now
            return True, RunBusy(f"{what} {path} is being locked by another process right now; the lock is {lock_file}")
        _take_over(lock_file, raw, f"the lock {lock_file} was unreadable (its process was killed while taking it)")
        return None
    started = holder.get("started", "?")
    command = " ".join(map(str, holder.get("argv") or [])) or "?"
    here = socket.gethostname()
    if host != here:
        return False, RunBusy(
            f"{what} {path} is locked by process {pid} on another machine, {host} (started {started}, "
            f"command: {command}). A lock from another machine is never taken over automatically: this one "
            f"cannot tell whether that process still runs (Colab sessions can share a Drive folder). Wait for it, "
            f"or stop it; if you are sure it has ended, delete the lock {lock_file}"
        )
    if pid == os.getpid() and str(lock_file.absolute()) in _HELD:
        return False, RunBusy(
            f"{what} {path} is already locked by this process ({pid} on {host}, since {started}): a run into it "
            f"has not finished here (a second one was started inside or beside it). Wait for it, or stop it; "
            f"the lock is {lock_file}"
        )
    if pid == os.getpid():  # not held now: left by an interrupted release, or an earlier process with this id
        _take_over(
            lock_file,
            raw,
            f"took over the lock {lock_file}: left by process {pid} (this one) on {host}, "
            f"started {started}, which no longer holds it",
        )
        return None
    if not _alive(pid):
        _take_over(
            lock_file,
            raw,
            f"took over the lock {lock_file}: process {pid} on this machine ({host}), "
            f"started {started}, no longer runs",
        )
        return None
    return True, RunBusy(
        f"{what} {path} is in use by process {pid} on {host} (started {started}, command: {command}): "
        f"wait for it, or stop it; the lock is {lock_file}"
    )


def _remove_stale_asides(lock_file: Path) -> int:
    """Delete the ``LOCK.stale-PID`` files that :func:`_take_over` leaves when it is killed between
    moving a stale lock aside and deleting it; an aside whose process still runs is left alone."""
    removed = 0
    for aside in lock_file.parent.glob(f"{glob.escape(lock_file.name)}.stale-*"):
        pid = aside.name.rpartition("-")[2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            aside.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _take_over(lock_file: Path, raw: bytes, message: str) -> None:
    """Remove a stale lock whose bytes were ``raw``, unless another process replaced it meanwhile."""
    aside = lock_file.with_name(f"{lock_file.name}.stale-{os.getpid()}")
    try:
        os.replace(lock_file, aside)  # atomic: exactly one process moves any one lock file
        moved = aside.read_bytes()
    except FileNotFoundError:
        return
    if moved != raw:  # someone took it over and locked it in between: put theirs back
        if not lock_file.exists():
            os.replace(aside, lock_file)
        else:
            aside.unlink(missing_ok=True)
        return
    aside.unlink(missing_ok=True)
    warnings.warn(message, stacklevel=5)


def _release(lock_file: Path, mine: dict) -> None:
    _HELD.discard(str(lock_file.absolute()))
    try:
        if json.loads(lock_file.read_bytes()) == json.loads(json.dumps(mine)):
            lock_file.unlink()
    except (FileNotFoundError, ValueError):
        pass  # already gone, or no longer ours: leave it


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs (a zombie, killed but not yet reaped, does not)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel = ctypes.windll.kernel32
        handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel.GetLastError() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        kernel.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
