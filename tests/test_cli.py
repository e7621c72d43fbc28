import dataclasses

import numpy as np
import pytest

from course_utils import pretrained
from course_utils.__main__ import main
from tests.conftest import mnist_available


def test_unknown_model_and_bad_numbers_fail_clearly(capsys):
    for argv in (["sample", "mnist-gan"], ["sample", "mnist-cfg", "--n", "0"], ["sample", "mnist-cfg", "--steps", "0"],
                 ["train", "nope"]):
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
    monkeypatch.setitem(pretrained.REGISTRY, "mnist-cfg",
                        dataclasses.replace(r, fast=dict(epochs=1, data_limit=32, hidden=4), sha256=None))
    monkeypatch.setattr(pretrained.config, "repo_root", lambda: tmp_course_dirs)
    assert main(["train", "mnist-cfg", "--fast", "--no-progress"]) == 0
    out = tmp_course_dirs / "s.npz"
    assert main(["sample", "mnist-cfg", "--fast", "--n", "13", "--steps", "2", "--guidance", "3",
                 "--batch", "5", "--out", str(out), "--no-progress"]) == 0
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


@pytest.mark.skipif(not (mnist_available() and pretrained.checkpoint_path("mnist-cfg").is_file()),
                    reason="needs MNIST and the shipped mnist-cfg")
def test_sample_score_prints_the_classifier_report(tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["sample", "mnist-cfg", "--n", "20", "--steps", "8", "--guidance", "3", "--score",
                 "--out", str(out), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("mnist-cfg: n=20  FD=") and "confident=" in line and "accuracy=" in line
    accuracy = float(line.split("accuracy=")[1].split("%")[0])
    assert accuracy >= 80, line  # guided samples of the shipped model read as the requested digit
