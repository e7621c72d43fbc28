import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from course_utils import photos, pretrained
from course_utils.__main__ import main
from tests.conftest import mnist_available


def test_unknown_model_and_bad_numbers_fail_clearly(capsys):
    for argv in (
        ["sample", "mnist-gan"],
        ["sample", "mnist-cfg", "--n", "0"],
        ["sample", "mnist-cfg", "--steps", "0"],
        ["train", "nope"],
    ):
        with pytest.raises(SystemExit) as err:
            main(argv)
        assert err.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'mnist-gan'" in err and "must be at least 1" in err


def test_sample_without_checkpoint(tmp_course_dirs, capsys):
    assert main(["sample", "mnist-fm", "--n", "2", "--no-progress"]) == 1
    assert "python -m course_utils train mnist-fm" in capsys.readouterr().err


@pytest.mark.skipif(not mnist_available(), reason="MNIST not found")
def test_train_then_sample(tmp_course_dirs, monkeypatch):
    r = pretrained.recipe("mnist-cfg")
    monkeypatch.setitem(
        pretrained.REGISTRY,
        "mnist-cfg",
        dataclasses.replace(r, fast=dict(epochs=1, data_limit=32, hidden=4), sha256=None),
    )
    monkeypatch.setattr(pretrained.config, "repo_root", lambda: tmp_course_dirs)
    assert main(["train", "mnist-cfg", "--fast", "--no-progress"]) == 0
    out = tmp_course_dirs / "s.npz"
    assert (
        main(
            [
                "sample",
                "mnist-cfg",
                "--fast",
                "--n",
                "13",
                "--steps",
                "2",
                "--guidance",
                "3",
                "--batch",
                "5",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    saved = np.load(out)
    assert saved["images"].shape == (13, 28, 28) and saved["images"].dtype == np.float32
    assert 0 <= saved["images"].min() and saved["images"].max() <= 1
    assert saved["labels"].tolist() == [i % 10 for i in range(13)]


@pytest.mark.parametrize("tool", ["figures", "student-version", "colab"])
def test_instructor_tools_are_subcommands(tool, capsys):
    with pytest.raises(SystemExit) as err:
        main([tool, "--help"])
    assert err.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_colab_check_passes_on_the_shipped_notebooks():
    assert main(["colab", "--check"]) == 0


@pytest.mark.skipif(
    not (mnist_available() and pretrained.checkpoint_path("mnist-cfg").is_file()),
    reason="needs MNIST and the shipped mnist-cfg",
)
def test_sample_score_prints_the_classifier_report(tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert (
        main(
            [
                "sample",
                "mnist-cfg",
                "--n",
                "20",
                "--steps",
                "8",
                "--guidance",
                "3",
                "--score",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("mnist-cfg: n=20  FD=") and "confident=" in line and "accuracy=" in line
    accuracy = float(line.split("accuracy=")[1].split("%")[0])
    assert accuracy >= 80, line  # guided samples of the shipped model read as the requested digit


@pytest.mark.parametrize(
    "args, says",
    [
        (["--size", "4"], "at least 8 pixels"),
        (["--size", "30", "--model", "small"], "divisible by 4"),
        (["--size", "72", "--model", "full"], "divisible by 16"),
        (["--size", "72"], "divisible by 16"),  # 64 px and up default to the full model
        (["--epochs", "0"], "argument --epochs: must be at least 1"),
        (["--batch-size", "0"], "argument --batch-size: must be at least 1"),
        (["--p-uncond", "1.5"], "argument --p-uncond: must lie in [0, 1]"),
        (["--p-uncond", "-0.1"], "argument --p-uncond: must lie in [0, 1]"),
        (["--ema", "1"], "argument --ema: must lie strictly between 0 and 1"),
        (["--ema", "0"], "argument --ema: must lie strictly between 0 and 1"),
        (["--lr", "0"], "argument --lr: must be a positive number"),
        (["--fidelity", "1"], "at least 2 images"),
        (["--data", "/nonexistent/photos"], "is not a folder"),
    ],
)
def test_train_photo_refuses_bad_options_before_any_compute(args, says, tmp_course_dirs, monkeypatch, capsys):
    def no_compute(*a, **k):
        raise AssertionError("the options should have been refused before reading photos")

    monkeypatch.setattr(photos, "load_photos", no_compute)
    monkeypatch.setattr(photos, "train_photo_model", no_compute)
    with pytest.raises(SystemExit) as err:
        main(["train", "photo", "--size", "32", "--run-dir", str(tmp_course_dirs / "run"), *args])
    assert err.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and says in lines[0], lines  # one line that names the problem


def test_train_photo_refuses_an_unwritable_output(tmp_course_dirs, monkeypatch, capsys):
    monkeypatch.setattr(photos, "load_photos", lambda *a, **k: pytest.fail("read photos before checking --out"))
    blocker = tmp_course_dirs / "a-file"
    blocker.write_text("not a folder")
    for option, value in (
        ("--out", blocker / "photo-32.safetensors"),
        ("--run-dir", blocker / "run"),
        ("--out", tmp_course_dirs),
    ):
        with pytest.raises(SystemExit) as err:
            main(["train", "photo", "--size", "32", option, str(value)])
        assert err.value.code == 2
        assert f"argument {option}:" in capsys.readouterr().err


def test_photos_main_is_the_train_photo_command(capsys):
    with pytest.raises(SystemExit) as err:
        photos.main(["--help"])  # the old entry point calls the one in course_utils.__main__
    assert err.value.code == 0
    assert "python -m course_utils train photo" in capsys.readouterr().out
    assert photos.build_parser().parse_args(["--size", "16"]).size == 16
    run = subprocess.run(
        [sys.executable, "-m", "course_utils.photos", "--epochs", "0"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2 and "argument --epochs: must be at least 1" in run.stderr


def test_a_course_error_is_one_line_and_a_nonzero_exit(capsys, monkeypatch):
    from course_utils import __main__ as cli
    from course_utils import pretrained
    from course_utils.errors import CheckpointError

    def broken(*args, **kwargs):
        raise CheckpointError("data/checkpoints/mnist-fm.json is not a readable JSON record: restore it")

    monkeypatch.setattr(pretrained, "load", broken)
    assert cli.main(["sample", "mnist-fm", "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: data/checkpoints/mnist-fm.json is not a readable JSON record: restore it"


def test_the_command_line_seed_bound_is_the_samplers():
    from course_utils import __main__ as cli
    from course_utils import samplers

    assert cli.MAX_SEED == samplers.MAX_SEED  # the CLI keeps its own copy so --help needs no torch


def test_the_command_line_photo_guidance_is_the_latent_models():
    from course_utils import __main__ as cli
    from course_utils import latent

    assert cli.PHOTO_GUIDANCE == latent.GUIDANCE  # the same copy, for the same reason
