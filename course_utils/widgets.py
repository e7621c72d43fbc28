"""Interactive explorers for the notebooks (ipywidgets), with a static fallback.

Each explorer is built by a function that returns an ``ipywidgets.interactive`` object: display it
in JupyterLab or Colab and move the sliders. The callbacks draw with ``plt.show()`` and record
what they computed in ``ui.state`` (a dict), which is what the unit tests check without a browser.
Where ipywidgets is missing (a plain script, a headless run), ``static=True`` draws the same
figure for a few fixed slider values instead.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from . import plotting
from .schedules import Schedule


def _have_ipywidgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def noise_explorer(
    images: Sequence[Tensor],
    schedule: Schedule,
    *,
    titles: Sequence[str] | None = None,
    t: float = 0.5,
    seed: int = 0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    static: bool | None = None,
):
    """A slider over t showing ``xt = alpha(t) x0 + sigma(t) eps`` for each image (C, H, W).

    The noise eps is drawn once (from ``seed``), so moving the slider shows the same noise fading
    in. Returns the ``interactive`` widget, or the static figure when ``static`` (default: when
    ipywidgets is unavailable).
    """
    if not images:
        raise ValueError("give at least one image")
    if not 0.0 <= t <= 1.0:
        raise ValueError("t must lie in [0, 1]")
    g = torch.Generator().manual_seed(seed)
    x0 = [img.detach().cpu().float() for img in images]
    eps = [torch.randn(img.shape, generator=g) for img in x0]
    state: dict = {}

    def draw(t: float = t):
        xt = [schedule.add_noise(a, torch.tensor(t), e) for a, e in zip(x0, eps)]
        ab = schedule.alpha_bar(torch.tensor(t)).item()
        state.update(t=t, alpha_bar=ab, xt=xt)
        labels = [f"{name}" for name in titles] if titles else None
        plotting.show_images(xt, labels, value_range=value_range, size=2.2, suptitle=f"t = {t:.2f}   alpha_bar = {ab:.3f}")
        plt.show()

    if static is None:
        static = not _have_ipywidgets()
    if static:
        rows = []
        for value in (0.0, 0.25, 0.5, 0.75, 1.0):
            rows.append([schedule.add_noise(a, torch.tensor(value), e) for a, e in zip(x0, eps)])
        columns = list(zip(*rows))
        fig = plotting.noising_strip(columns, [f"t = {v}" for v in (0.0, 0.25, 0.5, 0.75, 1.0)], rows=titles, value_range=value_range)
        state.update(t=None, figure=fig)
        return fig

    import ipywidgets as widgets

    slider = widgets.FloatSlider(value=t, min=0.0, max=1.0, step=0.01, description="t", continuous_update=True)
    ui = widgets.interactive(draw, t=slider)
    ui.state = state
    return ui
