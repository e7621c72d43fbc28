"""Interactive explorers for the notebooks (ipywidgets), with a static fallback.

Each explorer is built by a function that returns an ``ipywidgets.interactive`` object: display it
in JupyterLab or Colab and move the sliders. The callbacks draw with ``plt.show()`` and record
what they computed in ``ui.state`` (a dict), which is what the unit tests check without a browser.
Where ipywidgets is missing (a plain script, a headless run), ``static=True`` draws the same
figure for a few fixed slider values instead.
"""

from __future__ import annotations

from typing import Callable, Sequence

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


def _computed(ui, state: dict, key: str):
    """Run the callback once now if building the widget did not (ipywidgets 7, Colab's version, waits
    until the widget is displayed; 8 calls it on construction), so ``ui.state`` is filled either way:
    ``key`` is what the callback writes into ``state``."""
    if key not in state:
        ui.update()
    return ui


def noise_explorer(
    images: Sequence[Tensor],
    schedule: Schedule,
    *,
    titles: Sequence[str] | None = None,
    t: float | None = None,
    log_snr: float = 1.0,
    seed: int = 0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    static: bool | None = None,
):
    """A slider over the noise level showing ``xt = alpha(t) x0 + sigma(t) eps`` for each image (C, H, W).

    By default the slider moves the log signal-to-noise ratio, log(alpha^2 / sigma^2), from +8
    (almost clean) to -8 (almost pure noise), starting at ``log_snr`` = 1: on a slider over t most of
    the visible change of a DDPM schedule is squeezed below t = 0.35, while equal steps of log-SNR
    change the picture about equally. The title shows the t that noise level falls on. Pass ``t``
    for a slider over t instead (starting there). The noise eps is drawn once (from ``seed``), so
    moving the slider shows the same noise fading in. Returns the ``interactive`` widget, or the
    static figure when ``static`` (default: when ipywidgets is unavailable).
    """
    if not images:
        raise ValueError("give at least one image")
    if t is not None and not 0.0 <= t <= 1.0:
        raise ValueError("t must lie in [0, 1]")
    if not -8.0 <= log_snr <= 8.0:
        raise ValueError("log_snr must lie in [-8, 8]")
    g = torch.Generator().manual_seed(seed)
    x0 = [img.detach().cpu().float() for img in images]
    eps = [torch.randn(img.shape, generator=g) for img in x0]
    state: dict = {}

    def show(t: float, lam: float):
        xt = [schedule.add_noise(a, torch.tensor(t), e) for a, e in zip(x0, eps)]
        ab = schedule.alpha_bar(torch.tensor(t)).item()
        state.update(t=t, log_snr=lam, alpha_bar=ab, xt=xt)
        labels = [f"{name}" for name in titles] if titles else None
        title = f"log SNR = {lam:.1f}   t = {t:.3f}   alpha_bar = {ab:.3f}"
        plotting.show_images(xt, labels, value_range=value_range, size=2.2, suptitle=title)
        plt.show()

    def draw_t(t: float = 0.0):
        show(t, float(schedule.log_snr(torch.tensor(t))))

    def draw_log_snr(log_snr: float = log_snr):
        show(float(schedule.time_at_log_snr(log_snr)), log_snr)

    if static is None:
        static = not _have_ipywidgets()
    if static:
        rows = []
        for value in (0.0, 0.25, 0.5, 0.75, 1.0):
            rows.append([schedule.add_noise(a, torch.tensor(value), e) for a, e in zip(x0, eps)])
        columns = list(zip(*rows))
        fig = plotting.noising_strip(
            columns, [f"t = {v}" for v in (0.0, 0.25, 0.5, 0.75, 1.0)], rows=titles, value_range=value_range
        )
        state.update(t=None, figure=fig)
        return fig

    import ipywidgets as widgets

    if t is not None:
        slider = widgets.FloatSlider(value=t, min=0.0, max=1.0, step=0.01, description="t", continuous_update=True)
        ui = _computed(widgets.interactive(draw_t, t=slider), state, "t")
    else:
        slider = widgets.FloatSlider(
            value=log_snr, min=-8.0, max=8.0, step=0.25, description="log SNR", continuous_update=True
        )
        ui = _computed(widgets.interactive(draw_log_snr, log_snr=slider), state, "t")
    ui.state = state
    return ui


def feature_explorer(
    generate_fn: Callable[[Tensor], Tensor],
    base: Sequence[float] | Tensor,
    *,
    names: Sequence[str] | None = None,
    groups: dict[str, Sequence[str]] | None = None,
    measure: Callable[[Tensor], Tensor] | None = None,
    static: bool | None = None,
):
    """Sliders for the 32 features, grouped (COLOR, LIGHTING, ...) in an accordion, driving a generator.

    ``generate_fn(features (32,)) -> image (3, H, W)`` in [-1, 1] is called whenever a slider is
    released (``continuous_update=False``: generation takes seconds); keep its seed fixed so that
    only the features change. ``measure(image) -> (32,)`` (e.g. ``features.extract_batch`` on one
    image) adds the measured features beside the requested ones. ``ui.state`` holds the last
    ``features``, ``image`` and ``measured``; ``ui.sliders`` maps names to sliders. Without
    ipywidgets (or ``static=True``) the figure for ``base`` is drawn and returned.
    """
    from . import features as feature_table

    names = list(names or feature_table.FEATURE_NAMES)
    groups = dict(groups or feature_table.FEATURE_GROUPS)
    base = [float(v) for v in base]
    if len(base) != len(names):
        raise ValueError(f"base has {len(base)} values for {len(names)} features")
    if any(not 0.0 <= v <= 1.0 for v in base):
        raise ValueError("base features must lie in [0, 1]")
    state: dict = {}

    def draw(**values: float):
        f = torch.tensor([float(values[name]) for name in names])
        image = generate_fn(f).detach().cpu()
        image = image[0] if image.dim() == 4 else image
        measured = measure(image).detach().cpu().reshape(-1) if measure is not None else None
        state.update(features=f, image=image, measured=measured)
        fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw=dict(width_ratios=[1, 3.2]))
        ax_img.imshow(plotting.to_numpy_image(image), interpolation="nearest")
        ax_img.axis("off")
        ax_img.set_title("generated")
        positions = range(len(names))
        ax_bar.bar(positions, f.numpy(), color="0.8", label="requested")
        if measured is not None:
            ax_bar.plot(positions, measured.numpy(), "o", color="C3", markersize=4, label="measured")
        ax_bar.set_xticks(list(positions), names, rotation=90, fontsize=7)
        ax_bar.set_ylim(0, 1)
        ax_bar.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        plt.show()
        return fig

    if static is None:
        static = not _have_ipywidgets()
    if static:
        fig = draw(**dict(zip(names, base)))
        state.update(figure=fig)
        return fig

    import ipywidgets as widgets

    style = {"description_width": "130px"}
    sliders = {
        name: widgets.FloatSlider(
            value=value,
            min=0.0,
            max=1.0,
            step=0.01,
            description=name,
            style=style,
            continuous_update=False,
            layout=widgets.Layout(width="420px"),
        )
        for name, value in zip(names, base)
    }
    accordion = widgets.Accordion(children=[widgets.VBox([sliders[n] for n in members]) for members in groups.values()])
    for i, group in enumerate(groups):
        accordion.set_title(i, f"{group} ({len(groups[group])})")
    output = widgets.interactive_output(draw, sliders)
    ui = widgets.VBox([accordion, output])
    ui.state = state
    ui.sliders = sliders
    return ui


def _options(values, name: str) -> tuple:
    options = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not options:
        raise ValueError(f"give at least one value for {name}")
    return options


def sampler_explorer(
    generate_fn: Callable[..., Tensor],
    *,
    steps: Sequence[int] | int = (1, 2, 5, 10, 20, 50),
    guidance: Sequence[float] | float | None = None,
    nrow: int = 8,
    precompute: bool = False,
    value_range: tuple[float, float] = (-1.0, 1.0),
    static: bool | None = None,
):
    """Sliders over the number of sampler steps and the guidance scale, showing the samples.

    ``generate_fn(steps=..., guidance=...) -> images (B, C, H, W)`` runs the sampler; it is called
    with ``guidance`` only when ``guidance`` is given, and should fix its own seed so that only
    the slider changes the picture. ``steps`` and ``guidance`` are a value or the values a slider
    offers (it starts at the first). Every result is cached per slider value, so moving back is
    instant; ``precompute=True`` computes all combinations up front. Sliders act on release
    (``continuous_update=False``): sampling takes seconds.

    Returns the ``interactive`` widget, with ``ui.state`` (``steps``, ``guidance``, ``images``,
    ``calls`` to ``generate_fn``), ``ui.cache`` and ``ui.sliders``; or, when ``static`` (default:
    ipywidgets missing), one figure with a panel per combination (rows: guidance, columns: steps).
    """
    step_options = _options(steps, "steps")
    if any(int(s) != s or s < 1 for s in step_options):
        raise ValueError("steps must be positive integers")
    scale_options = _options(guidance, "guidance") if guidance is not None else (None,)
    cache: dict = {}
    state: dict = {"calls": 0}

    def images_for(s: int, w: float | None) -> Tensor:
        if (s, w) not in cache:
            kwargs = {"steps": s} if w is None else {"steps": s, "guidance": w}
            cache[(s, w)] = generate_fn(**kwargs).detach().cpu()
            state["calls"] += 1
        return cache[(s, w)]

    def label(s: int, w: float | None) -> str:
        return f"{s} step{'s' if s != 1 else ''}" + ("" if w is None else f", guidance {w:g}")

    def draw(steps: int = step_options[0], guidance: float | None = scale_options[0]):
        images = images_for(steps, guidance)
        state.update(steps=steps, guidance=guidance, images=images)
        plotting.show_grid(images, nrow=nrow, title=label(steps, guidance), value_range=value_range)
        plt.show()

    if precompute:
        for w in scale_options:
            for s in step_options:
                images_for(s, w)
    if static is None:
        static = not _have_ipywidgets()
    if static:
        fig, axes = plt.subplots(
            len(scale_options),
            len(step_options),
            squeeze=False,
            figsize=(2.2 * len(step_options), 2.2 * len(scale_options)),
        )
        for r, w in enumerate(scale_options):
            for c, s in enumerate(step_options):
                grid = plotting.image_grid(images_for(s, w), nrow=nrow, value_range=value_range)
                axes[r, c].imshow(
                    grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"
                )
                axes[r, c].set_xticks([])
                axes[r, c].set_yticks([])
                if r == 0:
                    axes[r, c].set_title(f"{s} step{'s' if s != 1 else ''}", fontsize=9)
                if c == 0 and w is not None:
                    axes[r, c].set_ylabel(f"guidance {w:g}", fontsize=9)
        fig.tight_layout()
        state.update(figure=fig)
        return fig

    import ipywidgets as widgets

    def control(options, description):
        if len(options) == 1:
            return widgets.fixed(options[0])
        return widgets.SelectionSlider(
            options=list(options), value=options[0], description=description, continuous_update=False
        )

    controls = {"steps": control(step_options, "steps"), "guidance": control(scale_options, "guidance")}
    ui = _computed(widgets.interactive(draw, **controls), state, "steps")
    ui.state, ui.cache = state, cache
    ui.sliders = {name: c for name, c in controls.items() if not isinstance(c, widgets.fixed)}
    return ui


def steps_explorer(generate_fn: Callable[..., Tensor], steps: Sequence[int] = (1, 2, 5, 10, 20, 50), **kwargs):
    """Quality against the number of sampler steps: :func:`sampler_explorer` with a steps slider."""
    return sampler_explorer(generate_fn, steps=steps, **kwargs)


def guidance_explorer(
    generate_fn: Callable[..., Tensor],
    scales: Sequence[float] = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5),
    *,
    steps: int = 20,
    **kwargs,
):
    """Classifier-free guidance scale slider at a fixed number of steps: :func:`sampler_explorer`."""
    return sampler_explorer(generate_fn, steps=steps, guidance=scales, **kwargs)
