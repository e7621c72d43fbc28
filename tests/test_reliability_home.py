"""A normal (non-editable) install, run from a folder that is not the repository: the shipped
checkpoints come from the package, and everything the course writes goes to the course home
(``COURSE_HOME``, else the per-user folder), never into the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, mnist_available

SHIPPED = ("mnist-ddpm", "mnist-fm", "mnist-cfg")


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The package installed with ``pip install --target`` from a copy of its sources (the build
    writes beside the sources it is given, so never into the repository)."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "course_utils", src / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shipped = src / "data" / "checkpoints"
    shipped.mkdir(parents=True)
    for path in (ROOT / "data" / "checkpoints").iterdir():
        if path.suffix in {".safetensors", ".json"}:
            shutil.copy(path, shipped / path.name)
    (shipped / "left-over.fast.safetensors").write_bytes(b"a fast-mode file trained in a clone")
    site = base / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    done = subprocess.run([*pip, "--target", str(site), str(src)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"could not install the package: {done.stderr[-2000:]}")
    work = base / "work"  # not the repository, nor inside it
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_") and k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(site),
        PYTHONDONTWRITEBYTECODE="1",
        HOME=str(base / "user"),
        XDG_DATA_HOME=str(base / "xdg"),
        MPLCONFIGDIR=str(base / "mpl"),
        COURSE_DEVICE="cpu",
        OMP_NUM_THREADS="1",
    )
    if "COURSE_DATA_DIR" in os.environ:  # the offline data sets
        env["COURSE_DATA_DIR"] = os.environ["COURSE_DATA_DIR"]
    return dict(base=base, site=site, work=work, env=env, before=_listing(site))


def _run(installed, args: list[str], **env) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=installed["work"],
        env=dict(installed["env"], **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _listing(installed["site"]) == installed["before"], "something was written into the installed package"
    return done


def test_the_wheel_ships_the_checkpoints_but_no_fast_ones(installed):
    shipped = installed["site"] / "course_utils" / "shipped"
    names = {p.name for p in shipped.iterdir()}
    for name in (*SHIPPED, "mnist-classifier", "photo-32"):
        assert {f"{name}.safetensors", f"{name}.json"} <= names
    assert not any(".fast." in name for name in names)


def test_list_and_sample_use_the_shipped_checkpoints(installed):
    listed = _run(installed, ["-m", "course_utils", "list"]).stdout
    for name in SHIPPED:
        assert any(line.split()[:2] == [name, "present"] for line in listed.splitlines()), listed
    out = installed["work"] / "OUT.npz"
    _run(installed, ["-m", "course_utils", "sample", "mnist-fm", "--n", "2", "--steps", "2", "--out", str(out)])
    with np.load(out) as saved:
        assert saved["images"].shape == (2, 28, 28) and np.isfinite(saved["images"]).all()


TRAIN = """
import dataclasses, json, os, shutil
from course_utils import classifier, config, photos, pretrained

found = {"package": pretrained.__file__, "user": str(config.user_data_dir())}
found["shipped"] = [str(pretrained.checkpoint_path(n)) for n in ("mnist-fm", "photo-32")]
found["classifier"] = str(classifier.checkpoint_path())
photos.load_photo_model(config.checkpoint_dir() / "photo-32.safetensors", image_size=32)  # as notebooks 08 and 11

r = pretrained.recipe("mnist-cfg")
tiny = dataclasses.replace(r, fast=dict(epochs=1, data_limit=32, hidden=4), sample_steps=2, sha256=None)
pretrained.REGISTRY["mnist-cfg"] = tiny
for label, home, checkpoints in (("default", None, None), ("home", "HOME_DIR", None), ("both", "HOME_DIR", "CK_DIR")):
    for variable, value in (("COURSE_HOME", home), ("COURSE_CHECKPOINT_DIR", checkpoints)):
        os.environ.pop(variable, None)
        if value:
            os.environ[variable] = value
    pretrained.train_recipe("mnist-cfg", fast=True, progress=False)
    found[label] = dict(home=str(config.home()), runs=str(config.runs_dir()),
                        trained=str(pretrained.checkpoint_path("mnist-cfg", fast=True)))

# a checkpoint in COURSE_CHECKPOINT_DIR comes before the shipped one of the same name
shipped = pretrained.checkpoint_path("mnist-fm")
for suffix in (".safetensors", ".json"):
    shutil.copy(shipped.with_suffix(suffix), config.checkpoint_dir() / shipped.with_suffix(suffix).name)
found["override"] = str(pretrained.checkpoint_path("mnist-fm"))
pretrained.load("mnist-fm")
print(json.dumps(found))
"""


@pytest.mark.skipif(not mnist_available(), reason="MNIST not found")
def test_training_writes_to_the_course_home_never_into_the_package(installed):
    base, site = installed["base"], installed["site"]
    home, ck = base / "course-home", base / "checkpoints"
    code = TRAIN.replace("HOME_DIR", str(home)).replace("CK_DIR", str(ck))
    found = json.loads(_run(installed, ["-c", code]).stdout.strip().splitlines()[-1])
    shipped = site / "course_utils" / "shipped"
    assert Path(found["package"]).parent == site / "course_utils"
    assert found["shipped"] == [str(shipped / "mnist-fm.safetensors"), str(shipped / "photo-32.safetensors")]
    assert found["classifier"] == str(shipped / "mnist-classifier.safetensors")

    user = base / "xdg" / "course-utils"  # no COURSE_HOME: the per-user folder
    assert found["user"] == str(user) and found["default"]["home"] == str(user)
    assert found["default"]["trained"] == str(user / "data" / "checkpoints" / "mnist-cfg.fast.safetensors")
    assert (user / "runs" / "mnist-cfg.fast").is_dir() and Path(found["default"]["trained"]).is_file()

    trained = home / "data" / "checkpoints" / "mnist-cfg.fast.safetensors"  # COURSE_HOME over the per-user folder
    assert found["home"] == dict(home=str(home), runs=str(home / "runs"), trained=str(trained))
    assert any((home / "runs" / "mnist-cfg.fast").glob("epoch_*.safetensors"))

    assert found["both"]["trained"] == str(ck / "mnist-cfg.fast.safetensors")  # COURSE_CHECKPOINT_DIR over the home
    assert found["both"]["runs"] == str(home / "runs")
    assert found["override"] == str(ck / "mnist-fm.safetensors")
    assert not (installed["work"] / "runs").exists() and not (site / "runs").exists()
