import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from course_utils import schedules, widgets


def test_noise_explorer_callback_runs_without_a_browser():
    x0 = torch.zeros(1, 8, 8)
    s = schedules.linear_schedule()
    ui = widgets.noise_explorer([x0], s, titles=["zeros"], t=0.3)
    ui.children[0].value = 0.8  # what dragging the slider does
    assert ui.state["t"] == pytest.approx(0.8)
    assert ui.state["alpha_bar"] == pytest.approx(s.alpha_bar(0.8).item())
    eps = ui.state["xt"][0] / s.sigma(0.8)
    ui.children[0].value = 0.5  # same noise, other level
    torch.testing.assert_close(ui.state["xt"][0], s.sigma(0.5) * eps)


def test_noise_explorer_static_fallback_and_errors():
    fig = widgets.noise_explorer([torch.zeros(1, 4, 4)], schedules.FlowSchedule(), static=True)
    assert len(fig.axes) == 5
    with pytest.raises(ValueError):
        widgets.noise_explorer([], schedules.FlowSchedule())
    with pytest.raises(ValueError):
        widgets.noise_explorer([torch.zeros(1, 4, 4)], schedules.FlowSchedule(), t=2.0)
