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


def test_noise_explorer_moves_the_log_snr_by_default():
    s = schedules.linear_schedule()
    ui = widgets.noise_explorer([torch.zeros(1, 8, 8)], s)
    assert ui.state["log_snr"] == 1.0 and 0.1 < ui.state["t"] < 0.3  # opens where the image is still visible
    ui.children[0].value = -2.0  # drag left: noisier
    assert float(s.log_snr(torch.tensor(ui.state["t"]))) == pytest.approx(-2.0, abs=1e-3)
    ts = []
    for lam in (6.0, 2.0, -2.0, -6.0):  # equal log-SNR steps reach far into t, unlike equal t steps
        ui.children[0].value = lam
        ts.append(ui.state["t"])
    assert ts == sorted(ts) and ts[0] < 0.05 and ts[-1] > 0.75


def test_noise_explorer_static_fallback_and_errors():
    fig = widgets.noise_explorer([torch.zeros(1, 4, 4)], schedules.FlowSchedule(), static=True)
    assert len(fig.axes) == 5
    with pytest.raises(ValueError):
        widgets.noise_explorer([], schedules.FlowSchedule())
    with pytest.raises(ValueError):
        widgets.noise_explorer([torch.zeros(1, 4, 4)], schedules.FlowSchedule(), t=2.0)


def _counting_sampler():
    calls = []

    def generate(steps, guidance=None):
        calls.append((steps, guidance))
        return torch.full((3, 1, 4, 4), steps / 100 + (guidance or 0) / 10)

    return generate, calls


def test_sampler_explorer_callbacks_and_cache_without_a_browser():
    generate, calls = _counting_sampler()
    ui = widgets.sampler_explorer(generate, steps=(1, 5, 20), guidance=(0.0, 3.0))
    assert ui.state["steps"] == 1 and ui.state["guidance"] == 0.0 and calls == [(1, 0.0)]
    assert ui.sliders["steps"].continuous_update is False
    ui.sliders["steps"].value = 20  # what releasing the slider does
    assert ui.state["steps"] == 20
    torch.testing.assert_close(ui.state["images"], torch.full((3, 1, 4, 4), 0.2))
    ui.sliders["guidance"].value = 3.0
    torch.testing.assert_close(ui.state["images"], torch.full((3, 1, 4, 4), 0.5))
    ui.sliders["steps"].value = 1
    ui.sliders["guidance"].value = 0.0  # back to the start: served from the cache
    assert calls == [(1, 0.0), (20, 0.0), (20, 3.0), (1, 3.0)] and ui.state["calls"] == 4
    assert set(ui.cache) == set(calls)


def test_steps_and_guidance_explorers_precompute_and_static():
    generate, calls = _counting_sampler()
    ui = widgets.steps_explorer(generate, steps=(2, 4), precompute=True)
    assert calls == [(2, None), (4, None)] and list(ui.sliders) == ["steps"]
    ui.sliders["steps"].value = 4
    assert ui.state["calls"] == 2 and ui.state["guidance"] is None
    generate, calls = _counting_sampler()
    ui = widgets.guidance_explorer(generate, scales=(1.0, 7.5), steps=10)
    assert list(ui.sliders) == ["guidance"] and calls == [(10, 1.0)]
    ui.sliders["guidance"].value = 7.5
    assert calls[-1] == (10, 7.5) and ui.state["steps"] == 10
    fig = widgets.guidance_explorer(generate, scales=(0.0, 1.0, 7.5), steps=(5, 10), static=True)
    assert len(fig.axes) == 6


def test_sampler_explorer_rejects_bad_values():
    generate, _ = _counting_sampler()
    with pytest.raises(ValueError):
        widgets.sampler_explorer(generate, steps=(0, 5))
    with pytest.raises(ValueError):
        widgets.sampler_explorer(generate, steps=())


def test_runs_under_the_ipywidgets_it_was_asked_for():
    """CI runs this file twice: under the environment's ipywidgets 8 and under Colab's 7.7.1."""
    import os

    import ipywidgets

    expected = os.environ.get("COURSE_EXPECT_IPYWIDGETS") or "8"
    assert ipywidgets.__version__.split(".")[0] == expected, ipywidgets.__version__
