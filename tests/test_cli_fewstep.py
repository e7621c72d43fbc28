"""The command line with the few-step student: --steps 1 and 2, --score, and --out NAME.png grids."""

import numpy as np
import pytest
from matplotlib import image as mpimg

from course_utils import pretrained
from course_utils.__main__ import main, write_png_grid
from tests.conftest import mnist_available


def _shipped(name: str) -> bool:
    return pretrained.checkpoint_path(name).is_file()


def test_the_student_is_listed(capsys):
    assert main(["list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("mnist-fewstep"))
    assert "guidance 3 distilled in" in line


def test_the_student_refuses_another_guidance_before_loading(capsys, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["sample", "mnist-fewstep", "--guidance", "2", "--out", str(tmp_path / "x.png")])
    assert err.value.code == 2
    assert "guidance 3 distilled in" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_png_grid_has_a_tile_and_a_label_strip_per_image(tmp_path):
    images = np.zeros((13, 28, 28), dtype=np.float32)
    images[:, 10:18, 10:18] = 1.0
    path = write_png_grid(images, [str(i % 10) for i in range(13)], tmp_path / "g.png", title="t")
    grid = mpimg.imread(path)
    assert grid.shape[:2] == (20 + 2 * (28 * 2 + 14), 10 * (28 * 2 + 4))  # title, 2 rows of 10 tiles
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.skipif(not (mnist_available() and _shipped("mnist-fewstep")), reason="mnist-fewstep not shipped here")
@pytest.mark.parametrize("steps", [1, 2])
def test_sample_the_student_in_one_and_two_steps(steps, tmp_path, capsys):
    out = tmp_path / "s.npz"
    argv = ["sample", "mnist-fewstep", "--n", "20", "--steps", str(steps), "--out", str(out), "--score"]
    assert main([*argv, "--no-progress"]) == 0
    saved = np.load(out)
    assert saved["images"].shape == (20, 28, 28) and saved["labels"].tolist() == [i % 10 for i in range(20)]
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("mnist-fewstep: n=20  FD=") and "accuracy=" in line
    assert line.endswith(f"NFE {steps} per image)")  # no guidance pass: one evaluation per step


@pytest.mark.parametrize("name", ["mnist-fm", "mnist-cfg", "mnist-fewstep"])
def test_every_model_writes_a_labelled_png(name, tmp_path, capsys):
    if not _shipped(name):
        pytest.skip(f"{name} not shipped here")
    out = tmp_path / "grid.png"
    assert main(["sample", name, "--n", "3", "--steps", "1", "--out", str(out), "--no-progress"]) == 0
    assert mpimg.imread(out).shape[:2] == (20 + 70, 3 * 60)
    assert not (tmp_path / "samples.npz").exists()
    said = capsys.readouterr().out
    assert "its digit" in said if pretrained.recipe(name).unet.cond == "class" else "its index" in said
