"""Nothing lost: two writers at once, killed writers, interrupted renames, corrupt caches.

Every entry point that writes is tried against each way its write can go wrong. Inventory:

===========================  ===============================  ======================================================
entry point                  failure family                   test
===========================  ===============================  ======================================================
files.lock                   holder record, release on error  test_lock_records_its_holder_and_releases_on_errors
files.lock                   same process locks twice         test_the_same_process_locking_twice_is_told_so
files.lock                   lock file cut short              test_an_unreadable_lock_is_busy_while_fresh_stale_when_old
files.lock                   take-over killed midway          test_a_lock_set_aside_by_a_killed_take_over_is_removed
files.lock                   file system without hard links   test_a_file_system_without_hard_links_still_locks
files.lock                   holder's liveness on Windows     test_a_holder_is_alive_on_windows_as_kernel32_says
training.train               second run at once (RunBusy)     test_two_runs_into_one_folder_the_second_is_busy
training.train               stale lock of a killed run       (same test: the first run is killed, the lock taken over)
training.train               stale lock of a dead pid         test_a_stale_lock_of_a_dead_process_is_taken_over
training.train               temp files of a killed run       (same test: removed when the next run takes the lock)
training.train               lock from another machine        test_a_lock_from_another_machine_is_never_taken_over
training.train               checkpoint rewrite interrupted   test_training_resumes_from_a_rolled_back_checkpoint
checkpoints.export_weights   SIGKILL at a random moment       test_killing_exports_never_leaves_the_pair_unloadable
checkpoints.save_checkpoint  stopped before any file step     test_an_export_stopped_at_any_step_loads_old_or_new
checkpoints.load_checkpoint  pair and backup both broken      test_no_pair_that_verifies_names_the_files_and_the_fix
checkpoints.last_checkpoint  backups are not checkpoints      test_training_resumes_from_a_rolled_back_checkpoint
features.extract_folder      truncated features.npz           test_a_truncated_feature_cache_is_rebuilt_with_a_warning
features.extract_folder      killed writer: lock, temp file   test_a_killed_cache_writer_leaves_nothing_in_the_way
photo_data.load_photos       bytes changed, mtime set back    test_a_changed_photo_with_an_old_mtime_gets_a_fresh_crop
photo_data.load_photos       a filled cache is only read      test_a_changed_photo_with_an_old_mtime_gets_a_fresh_crop
===========================  ===============================  ======================================================

Everything is written under ``tmp_path``; subprocesses stand in for a second notebook or a killed run.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from course_utils import checkpoints, errors, files, photo_data, training
from course_utils import features as F

ROOT = Path(__file__).resolve().parent.parent
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="needs fork and SIGKILL")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def _write_lock(lock_file: Path, pid: int, host: str | None = None) -> None:
    host = host or socket.gethostname()
    lock_file.write_text(json.dumps({"pid": pid, "host": host, "started": "2024-01-01T00:00:00+00:00", "argv": ["x"]}))


def _messages(caught) -> str:
    return "\n".join(str(w.message) for w in caught)


# ---------------------------------------------------------------------------------------------
# files.lock


def test_lock_records_its_holder_and_releases_on_errors(tmp_path):
    with files.lock(tmp_path, what="run folder") as lock_file:
        assert lock_file == tmp_path / ".lock"
        holder = json.loads(lock_file.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["argv"] == sys.argv and holder["started"].endswith("+00:00")
    assert not lock_file.exists()
    with pytest.raises(KeyError):
        with files.lock(tmp_path / "table.npz", what="feature cache") as lock_file:
            assert lock_file == tmp_path / "table.npz.lock" and lock_file.is_file()
            raise KeyError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_the_same_process_locking_twice_is_told_so(tmp_path):
    with files.lock(tmp_path, what="run folder"):
        with pytest.raises(errors.RunBusy, match=rf"already locked by this process \({os.getpid()} on "):
            with files.lock(tmp_path, what="run folder"):
                pass
        assert (tmp_path / ".lock").is_file()  # the failed second attempt left the first one's lock alone
    assert not (tmp_path / ".lock").exists()


def test_a_file_system_without_hard_links_still_locks(tmp_path, monkeypatch):
    """Some network and cloud-drive mounts refuse hard links: the lock falls back to O_CREAT | O_EXCL."""
    import errno

    tried = []

    def no_links(src, dst):
        tried.append(dst)
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with files.lock(tmp_path, what="run folder") as lock_file:
        assert tried == [lock_file]  # the hard link was tried first
        holder = json.loads(lock_file.read_text())  # the fallback wrote the whole record
        assert holder["pid"] == os.getpid() and holder["what"] == "run folder"
        assert not files._create_exclusively(lock_file, b"{}")  # a second taker is refused, the lock kept
        assert json.loads(lock_file.read_text()) == holder
        with pytest.raises(errors.RunBusy, match="already locked by this process"):
            with files.lock(tmp_path, what="run folder"):
                pass
    assert list(tmp_path.iterdir()) == []  # released, and no temporary file left behind


def test_an_unreadable_lock_is_busy_while_fresh_stale_when_old(tmp_path):
    lock_file = tmp_path / ".lock"
    lock_file.write_bytes(b"")  # created, not yet written: someone is taking it right now
    with pytest.raises(errors.RunBusy, match="being locked by another process"):
        with files.lock(tmp_path):
            pass
    old = time.time() - 60
    os.utime(lock_file, (old, old))  # still empty a minute later: its process was killed while taking it
    with pytest.warns(UserWarning, match="unreadable"):
        with files.lock(tmp_path):
            assert json.loads(lock_file.read_text())["pid"] == os.getpid()


# ---------------------------------------------------------------------------------------------
# training.train: one run per folder

TRAIN_CHILD = r"""
import sys, time, torch
from course_utils import training

def slow_loss(net, batch, generator=None):
    print("training", flush=True)  # the lock is held by now
    time.sleep(120)
    return net(batch[0]).pow(2).mean()

training.train(torch.nn.Linear(2, 1), slow_loss, torch.zeros(4, 2), epochs=1, batch_size=4, run_dir=sys.argv[1],
               progress=False)
"""


def _loss(net, batch, generator=None):
    return net(batch[0]).pow(2).mean()


def _train(run_dir, epochs=1, seed=0):
    torch.manual_seed(seed)
    data = torch.linspace(-1, 1, 16).reshape(8, 2)
    return training.train(nn.Linear(2, 1), _loss, data, epochs=epochs, batch_size=4, run_dir=run_dir, progress=False)


def _first_line(child: subprocess.Popen, timeout: float = 60.0) -> str:
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    line = child.stdout.readline() if ready else ""
    if not line:
        child.kill()
        pytest.fail(f"the child did not start: {child.stderr.read()}")
    return line.strip()


@POSIX
def test_two_runs_into_one_folder_the_second_is_busy(tmp_path):
    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", TRAIN_CHILD, str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert _first_line(child) == "training"
        with pytest.raises(errors.RunBusy) as busy:
            _train(run)
        message = str(busy.value)
        assert f"process {child.pid} on {socket.gethostname()}" in message
        assert "wait for it, or stop it" in message and str(run / ".lock") in message
        assert not list(run.glob("epoch_*"))  # the second run wrote nothing
    finally:
        child.send_signal(signal.SIGKILL)  # a run killed hard: its lock stays behind
        child.wait()
        child.stdout.close()
        child.stderr.close()
    assert json.loads((run / ".lock").read_text())["pid"] == child.pid
    temp = run / ".epoch_0001.safetensors.k1ll3d_x.tmp"  # what atomic_path leaves when killed mid-write
    temp.write_bytes(b"half a checkpoint")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _train(run)
    said = _messages(caught)
    assert f"took over the lock {run / '.lock'}: process {child.pid}" in said and "no longer runs" in said
    assert "removed 1 temporary file(s)" in said
    assert result.epoch == 1 and sorted(p.name for p in run.iterdir()) == ["epoch_0001.json", "epoch_0001.safetensors"]


def test_a_lock_from_another_machine_is_never_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _write_lock(run / ".lock", pid=_dead_pid(), host="colab-vm-elsewhere")  # its pid means nothing here
    before = (run / ".lock").read_text()
    with pytest.raises(errors.RunBusy) as busy:
        _train(run)
    message = str(busy.value)
    assert "another machine, colab-vm-elsewhere" in message and "never taken over automatically" in message
    assert f"delete the lock {run / '.lock'}" in message
    assert (run / ".lock").read_text() == before and not list(run.glob("epoch_*"))
    (run / ".lock").unlink()  # what the message tells the user to do
    assert _train(run).epoch == 1


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pid = _dead_pid()
    _write_lock(run / ".lock", pid=pid)
    with pytest.warns(UserWarning, match=rf"process {pid} on this machine .* no longer runs"):
        assert _train(run).epoch == 1
    assert not (run / ".lock").exists()


class _Kernel32:
    """A stand-in for ``ctypes.windll.kernel32``: process ``pid`` is running, has exited with
    ``exit_code``, or belongs to someone else (OpenProcess fails with access denied, error 5)."""

    def __init__(self, processes: dict):
        self.processes, self.error, self.open_handles = processes, 0, set()

    def OpenProcess(self, access, inherit, pid):  # the Windows API's names
        state = self.processes.get(pid)
        if state is None or state == "denied":
            self.error = 5 if state == "denied" else 87  # access denied / invalid parameter (no such pid)
            return 0
        self.open_handles.add(pid)
        return pid

    def GetLastError(self):
        return self.error

    def GetExitCodeProcess(self, handle, code_ref):
        code_ref._obj.value = 259 if self.processes[handle] == "running" else self.processes[handle]

    def CloseHandle(self, handle):
        self.open_handles.discard(handle)


def test_a_holder_is_alive_on_windows_as_kernel32_says(monkeypatch):
    """``files._alive`` on Windows (no ``os.kill(pid, 0)`` there): a running process is alive, one that
    exited is not, even with a code other than 0, someone else's is alive (access denied), an unknown
    pid is not; every handle opened is closed."""
    import ctypes

    kernel = _Kernel32({10: "running", 11: 0, 12: 3, 13: "denied"})
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "windll", type("WinDLL", (), {"kernel32": kernel})(), raising=False)
    assert [files._alive(pid) for pid in (10, 11, 12, 13, 14, 0)] == [True, False, False, True, False, False]
    assert not kernel.open_handles


def test_a_lock_set_aside_by_a_killed_take_over_is_removed(tmp_path):
    target = tmp_path / "model.safetensors"
    lock_file = files.lock_path_of(target)
    dead, alive = _dead_pid(), os.getpid()
    # what a process killed inside the take-over leaves: the stale lock moved aside, not yet deleted
    _write_lock(lock_file.with_name(f"{lock_file.name}.stale-{dead}"), pid=dead)
    _write_lock(lock_file.with_name(f"{lock_file.name}.stale-{alive}"), pid=dead)  # a take-over still running
    with pytest.warns(UserWarning, match="removed 1 temporary file"):
        with files.lock(target, what="weights"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"model.safetensors.lock.stale-{alive}"]


def test_training_resumes_from_a_rolled_back_checkpoint(tmp_path):
    run = tmp_path / "run"
    _train(run, epochs=1)
    ck = run / "epoch_0001.safetensors"
    # what a kill leaves in the middle of rewriting epoch_0001: the backup whole, new tensors beside the old record
    shutil.copy(ck.with_suffix(".json"), run / "epoch_0001.prev.json")
    os.replace(ck, run / "epoch_0001.prev.safetensors")
    ck.write_bytes(b"new tensors whose record was not renamed yet")
    (run / "epoch_0009.prev.safetensors").write_bytes(b"a backup without its record")  # not a checkpoint
    assert checkpoints.last_checkpoint(run) == ck
    with pytest.warns(UserWarning, match="rolled epoch_0001.safetensors and epoch_0001.json back"):
        resumed = _train(run, epochs=2, seed=1)
    assert resumed.resumed_from == 1 and resumed.epoch == 2
    assert sorted(p.name for p in run.iterdir()) == ["epoch_0002.json", "epoch_0002.safetensors"]


# ---------------------------------------------------------------------------------------------
# checkpoints: a pair is replaced as one unit


def _filled(value: float, n: int = 8) -> nn.Module:
    layer = nn.Linear(n, n)
    with torch.no_grad():
        for p in layer.parameters():
            p.fill_(value)
    return layer


def _version(path) -> int:
    tensors, record = checkpoints.load_checkpoint(path)
    assert all(bool((t == record["version"]).all()) for t in tensors.values()), "weights and record disagree"
    return record["version"]


class _Stopped(BaseException):
    """Stands for the process dying just before one file operation."""


def test_an_export_stopped_at_any_step_loads_old_or_new(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    real_replace, real_unlink = os.replace, Path.unlink
    outcomes = []
    for stop_at in range(1, 50):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the lock a stop in its release left behind is taken over
            checkpoints.export_weights(_filled(1), path, {"version": 1}, half=False)
        calls = []

        def step(real, calls=calls, stop_at=stop_at):
            def operation(*args, **kwargs):
                calls.append(real.__name__)
                if len(calls) == stop_at:
                    raise _Stopped
                return real(*args, **kwargs)

            return operation

        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", step(real_replace))
            patch.setattr(Path, "unlink", step(real_unlink))
            try:
                checkpoints.export_weights(_filled(2), path, {"version": 2}, half=False)
                finished = True
            except _Stopped:
                finished = False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            version = _version(path)
        rolled = "rolled" in _messages(caught)
        outcomes.append((version, rolled))
        assert version == 2 if finished else version in (1, 2)
        if finished:
            break
    assert finished and len(outcomes) > 5, outcomes
    assert {(1, False), (1, True), (2, False)} <= set(outcomes), outcomes  # kept, rolled back, replaced
    checkpoints.export_weights(_filled(3), path, {"version": 3}, half=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"] and _version(path) == 3


KILL_SUPERVISOR = r"""
import json, os, random, signal, sys, time, warnings
import torch
from course_utils import checkpoints

torch.set_num_threads(1)
path, kills, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)


def weights(v):
    layer = torch.nn.Linear(256, 256)
    with torch.no_grad():
        for p in layer.parameters():
            p.fill_(float(v))
    return layer


def export_forever(v, pipe):  # in a forked child, until it is killed
    warnings.simplefilter("ignore")  # taking over the lock of the child killed before
    os.write(pipe, b"start\n")
    while True:
        checkpoints.export_weights(weights(v), path, {"version": v}, half=False)
        os.write(pipe, b"%d\n" % v)
        v += 1


checkpoints.export_weights(weights(0), path, {"version": 0}, half=False)
version, seen = 0, {"old pair": 0, "new pair": 0, "rolled back": 0, "stale lock": 0, "temp files": 0, "exports": 0}
for kill in range(kills):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            export_forever(version + 1, write)
        finally:
            os._exit(1)
    os.close(write)
    child = os.fdopen(read, "rb", buffering=0)
    out = child.readline()  # "start": the child is about to take the lock and export
    if kill % 2:
        out += child.readline()  # every other child finishes one export first: kills land later in the loop
    time.sleep(rng.uniform(0.0, 0.03))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    out += child.read()
    child.close()
    done = [int(v) for v in out.split()[1:]]
    last = done[-1] if done else version
    seen["stale lock"] += os.path.exists(path + ".lock")
    seen["temp files"] += sum(name.startswith(".") for name in os.listdir(os.path.dirname(path)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tensors, record = checkpoints.load_checkpoint(path)  # must never fail
    v = record["version"]
    assert all(bool((t == v).all()) for t in tensors.values()), ("weights and record disagree", v)
    assert last <= v <= last + 1, ("neither the last export nor the one under way", last, v)
    if any("rolled" in str(w.message) for w in caught):
        seen["rolled back"] += 1
    else:
        seen["old pair" if v == last else "new pair"] += 1
    seen["exports"] += v - version
    version = v
print(json.dumps(seen))
"""


@POSIX
def test_killing_exports_never_leaves_the_pair_unloadable(tmp_path):
    path = tmp_path / "model.safetensors"
    kills, seed = 40, random.randrange(10**6)
    done = subprocess.run(
        [sys.executable, "-c", KILL_SUPERVISOR, str(path), str(kills), str(seed)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert done.returncode == 0, f"seed {seed}: {done.stderr[-3000:]}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{kills} kills (seed {seed}): {seen}")
    assert seen["old pair"] + seen["new pair"] + seen["rolled back"] == kills, seen
    assert seen["exports"] >= kills // 2, seen  # every other child was killed after an export at the earliest
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a last kill may leave a backup to roll back or a stale lock
        assert _version(path) >= 0
        checkpoints.export_weights(_filled(7, 256), path, {"version": 7}, half=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_no_pair_that_verifies_names_the_files_and_the_fix(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoints.export_weights(_filled(1), path, {"version": 1}, half=False)
    shutil.copy(path, tmp_path / "m.prev.safetensors")
    shutil.copy(path.with_suffix(".json"), tmp_path / "m.prev.json")
    for broken in (path, tmp_path / "m.prev.safetensors"):
        raw = bytearray(broken.read_bytes())
        raw[-3] ^= 0xFF
        broken.write_bytes(bytes(raw))
    with pytest.raises(errors.CheckpointError) as failed:
        checkpoints.load_checkpoint(path)
    message = str(failed.value)
    for name in ("m.safetensors", "m.json", "m.prev.safetensors", "m.prev.json", "SHA-256", "Delete"):
        assert name in message
    with pytest.raises(errors.BadRequest, match="kept for backups"):
        checkpoints.export_weights(_filled(1), tmp_path / "x.prev.safetensors", {})


# ---------------------------------------------------------------------------------------------
# Caches: keyed by content, rebuilt when broken


def _photos(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        img = np.full((24, 24, 3), 230, np.uint8)
        cv2.circle(img, (12, 12), 4 + 2 * i, tuple(int(v) for v in rng.integers(0, 200, 3)), -1)
        cv2.imwrite(str(folder / f"p{i}.png"), img)
    return folder


def test_a_truncated_feature_cache_is_rebuilt_with_a_warning(tmp_path):
    folder, cache = _photos(tmp_path / "photos"), tmp_path / "features.npz"
    first = F.extract_folder(folder, workers=1, cache=cache, progress=False)
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # a copy or a write cut short
    with pytest.warns(UserWarning, match=re.escape(f"the feature cache {cache} is truncated or corrupt")):
        again = F.extract_folder(folder, workers=1, cache=cache, progress=False)
    np.testing.assert_array_equal(again.features, first.features)
    assert len(F.load_cache(cache)) == 3  # rewritten whole
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and read back quietly from then on
        np.testing.assert_array_equal(
            F.extract_folder(folder, workers=1, cache=cache, progress=False).features, first.features
        )


def test_a_killed_cache_writer_leaves_nothing_in_the_way(tmp_path):
    folder, cache = _photos(tmp_path / "photos"), tmp_path / "features.npz"
    pid = _dead_pid()
    _write_lock(tmp_path / "features.npz.lock", pid=pid)
    (tmp_path / ".features.npz.ab12cd34.tmp").write_bytes(b"PK half a table")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = F.extract_folder(folder, workers=1, cache=cache, progress=False)
    said = _messages(caught)
    assert f"process {pid} on this machine" in said and "removed 1 temporary file(s)" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npz", "photos"] and len(table.paths) == 3


def test_a_changed_photo_with_an_old_mtime_gets_a_fresh_crop(tmp_path, tmp_course_dirs):
    folder = _photos(tmp_path / "photos", n=2)
    before = photo_data.load_photos(folder, size=16, progress=False, workers=1)
    target = folder / "p0.png"
    stamp = target.stat()
    img = np.full((24, 24, 3), 30, np.uint8)
    cv2.rectangle(img, (4, 4), (19, 19), (40, 200, 250), -1)
    cv2.imwrite(str(target), img)  # other bytes ...
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # ... the old modification time
    assert target.stat().st_mtime_ns == stamp.st_mtime_ns

    prepared = photo_data._prepared_folder(folder, 16)
    after = photo_data.load_photos(folder, size=16, progress=False, workers=1)
    row = [p.name for p in after.paths].index("p0.png")
    assert not torch.equal(after.images[row], before.images[row])
    torch.testing.assert_close(after.features, F.extract_batch(after.signed()))  # features of the new crop
    assert not torch.allclose(after.features[row], before.features[row])
    torch.testing.assert_close(after.images[1 - row], before.images[1 - row])  # the other photo: untouched
    index = json.loads((prepared / photo_data.CROP_INDEX).read_text())["crops"]
    assert index["p0.png"]["sha256"] == files.sha256_file(target) and index["p0.png"]["size"] == 16

    with files.lock(prepared, what="photo cache"):  # a filled cache is only read: no lock needed
        again = photo_data.load_photos(folder, size=16, progress=False, workers=1)
    torch.testing.assert_close(again.images, after.images)
