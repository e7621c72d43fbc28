import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from course_utils import plotting


def test_image_grid_tiles_and_scales():
    batch = torch.stack([torch.full((1, 2, 2), v) for v in (-1.0, 0.0, 1.0)])
    grid = plotting.image_grid(batch, nrow=2, padding=1)
    assert grid.shape == (1 + 2 * 3, 1 + 2 * 3)
    assert grid[1, 1] == 0.0 and grid[1, 4] == 0.5 and grid[4, 1] == 1.0
    assert grid[0, 0] == 1.0  # padding is white


def test_to_numpy_image_ranges():
    x = torch.tensor([[[-1.0, 1.0]]])
    np.testing.assert_allclose(plotting.to_numpy_image(x), [[0.0, 1.0]])
    np.testing.assert_allclose(plotting.to_numpy_image(np.array([[0.0, 2.0]]), (0, 1)), [[0.0, 1.0]])


def test_figures_saved_under_one_folder(tmp_course_dirs):
    fig = plotting.show_images([torch.zeros(1, 4, 4), np.ones((4, 4, 3))], ["a", "b"])
    path = plotting.save_figure("00_test", fig)
    assert path.parent == tmp_course_dirs / "figures" and path.stat().st_size > 0
    fig = plotting.loss_curve({"a": np.linspace(1, 0.1, 100), "b": np.linspace(2, 0.2, 100)}, smooth=10)
    assert len(fig.axes[0].lines) == 4
    fig = plotting.noising_strip([[torch.zeros(1, 4, 4)] * 3], ["t=0", "t=.5", "t=1"], rows=["x"])
    assert len(fig.axes) == 3
    with pytest.raises(ValueError):
        plotting.save_figure("a/b", fig)
    with pytest.raises(ValueError):
        plotting.show_images([])
