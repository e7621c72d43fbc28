"""Editing: SDEdit, inpainting, anagram and hybrid wrappers, against closed-form answers."""

import functools

import pytest
import torch
from torch import nn

from course_utils import editing, samplers, schedules

from . import oracles

LINEAR = schedules.linear_schedule(1000)
FLOW = schedules.FlowSchedule()
TS = schedules.step_grid(1000, 990, 30)  # 0.99, 0.96, ..., 0.0 (34 times)
X_STAR = torch.linspace(-0.9, 0.9, 64).reshape(1, 1, 8, 8)  # the one data point


def eps_oracle(schedule, x_star=X_STAR):
    return oracles.eps_oracle(schedule, x_star)


velocity_oracle = oracles.velocity_oracle(X_STAR)


class TinyModel(nn.Module):
    """A small random conv net with a class embedding: model(x, t, cond) shaped like x."""

    def __init__(self, channels=1, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, channels, 3, padding=1)
        self.embed = nn.Embedding(11, 8)  # ids 0..9, and 10 for "no class" (-1)

    def forward(self, x, t, cond=None):
        cond = torch.full((x.shape[0],), -1) if cond is None else cond
        e = self.embed(torch.where(cond < 0, 10, cond))[:, :, None, None]  # (B, 8, 1, 1)
        h = torch.tanh(self.conv1(x) + e + t[:, None, None, None])
        return self.conv2(h)


def pixelwise_model(x, t, cond=None):
    """Acts on each pixel alone, so it commutes with every flip and rotation."""
    shift = 0.0 if cond is None else cond.float()[:, None, None, None] / 10
    return torch.sin(3 * x) * t[:, None, None, None] + shift


def _image(seed=0, shape=(2, 1, 8, 8)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# SDEdit


def test_sdedit_without_noise_returns_the_input():
    x0 = _image()
    out = editing.sdedit(TinyModel(), x0, TS, len(TS) - 1, schedule=LINEAR, generator=_gen())
    assert torch.equal(out, x0)


@pytest.mark.parametrize("i_start", [0, 1, 5, 10, 20, 32])
def test_sdedit_with_the_one_point_oracle_returns_the_point(i_start):
    x0 = _image(1)
    out = editing.sdedit(eps_oracle(LINEAR), x0, TS, i_start, schedule=LINEAR, generator=_gen())
    torch.testing.assert_close(out, X_STAR.expand_as(out), atol=1e-4, rtol=0)


@pytest.mark.parametrize("i_start", [1, 7, 20])
def test_sdedit_with_a_velocity_model_and_euler(i_start):
    x0 = _image(2)
    out = editing.sdedit(velocity_oracle, x0, TS, i_start, schedule=FLOW, sampler=samplers.euler, generator=_gen())
    torch.testing.assert_close(out, X_STAR.expand_as(out), atol=1e-5, rtol=0)


def test_sdedit_is_the_forward_noise_then_the_sampler():
    x0, model, i = _image(3), TinyModel(), 10
    g = _gen(4)
    xt = LINEAR.add_noise(x0, TS[i].item(), torch.randn(x0.shape, generator=g))
    expected = samplers.ddpm(model, xt, TS[i:], schedule=LINEAR, generator=g)
    out, trajectory = editing.sdedit(model, x0, TS, i, schedule=LINEAR, generator=_gen(4), return_trajectory=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(trajectory[0], xt)
    assert len(trajectory) == len(TS) - i


def test_sdedit_is_deterministic_under_a_seed():
    x0, model = _image(), TinyModel()
    a = editing.sdedit(model, x0, TS, 5, schedule=LINEAR, generator=_gen(7))
    b = editing.sdedit(model, x0, TS, 5, schedule=LINEAR, generator=_gen(7))
    c = editing.sdedit(model, x0, TS, 5, schedule=LINEAR, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sdedit_passes_the_condition_through():
    seen = []

    def model(x, t, cond=None):
        seen.append(cond)
        return torch.zeros_like(x)

    editing.sdedit(model, _image(), TS, 30, schedule=FLOW, sampler=samplers.euler, cond=torch.tensor([8, 8]))
    assert len(seen) == len(TS) - 1 - 30 and all(torch.equal(c, torch.tensor([8, 8])) for c in seen)


@pytest.mark.parametrize("i_start", [-1, len(TS), 2.0, True, None])
def test_sdedit_refuses_a_bad_start_index(i_start):
    with pytest.raises(ValueError, match="i_start"):
        editing.sdedit(TinyModel(), _image(), TS, i_start, schedule=LINEAR)


@pytest.mark.parametrize(
    "x0, match",
    [
        (torch.rand(2, 1, 8, 8) * 4, r"\[-1, 1\]"),
        (torch.zeros(1, 8, 8), "shape"),
        (torch.full((1, 1, 8, 8), float("nan")), "NaN"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.int64), "float"),
        ([[0.0]], "Tensor"),
    ],
)
def test_sdedit_refuses_bad_images(x0, match):
    with pytest.raises(ValueError, match=match):
        editing.sdedit(TinyModel(), x0, TS, 5, schedule=LINEAR)


@pytest.mark.parametrize(
    "ts", [torch.tensor([0.5]), torch.tensor([0.2, 0.5, 0.0]), torch.tensor([0.9, 0.1]), torch.tensor([1.5, 0.0])]
)
def test_sdedit_refuses_bad_grids(ts):
    with pytest.raises(ValueError, match="ts"):
        editing.sdedit(TinyModel(), _image(), ts, 0, schedule=LINEAR)


# ---------------------------------------------------------------------------------------------
# Inpainting


def _known(shape=(1, 1, 8, 8)):
    known = torch.ones(shape)
    known[..., 2:6, 3:7] = 0  # a hole to fill
    return known


@pytest.mark.parametrize(
    "sampler, schedule",
    [
        (None, LINEAR),
        (functools.partial(samplers.ddim, schedule=LINEAR, eta=0.5), LINEAR),
        (samplers.euler, FLOW),
    ],
)
def test_inpainting_keeps_the_known_pixels_exactly(sampler, schedule):
    x0, known = _image(5), _known()
    out = editing.inpaint(TinyModel(), x0, known, TS, schedule=schedule, sampler=sampler, generator=_gen())
    kept = known.expand_as(x0).bool()
    assert torch.equal(out[kept], x0[kept])
    assert not torch.equal(out[~kept], x0[~kept])


def test_inpainting_with_resampling_keeps_the_known_pixels_too():
    x0, known = _image(6), _known((2, 1, 8, 8))
    out = editing.inpaint(TinyModel(), x0, known, TS, schedule=LINEAR, generator=_gen(), resample=3)
    kept = known.bool()
    assert torch.equal(out[kept], x0[kept])


def test_inpainting_with_the_oracle_fills_in_the_point():
    x0 = X_STAR.expand(2, 1, 8, 8).clone()
    out = editing.inpaint(eps_oracle(LINEAR), x0, _known(), TS, schedule=LINEAR, generator=_gen())
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def test_inpainting_is_the_repaint_step_written_out():
    x0, known, model = _image(7), _known(), TinyModel()
    g = _gen(3)
    z = torch.randn(x0.shape, generator=g)  # the unknown region starts as pure noise
    x = known * LINEAR.add_noise(x0, TS[0].item(), torch.randn(x0.shape, generator=g)) + (1 - known) * z
    steps = [x]
    for t, s in zip(TS[:-1].tolist(), TS[1:].tolist()):
        x = samplers.ddpm_step(model, x, t, s, LINEAR, generator=g)
        x_known = x0 if s == 0 else LINEAR.add_noise(x0, s, torch.randn(x0.shape, generator=g))
        x = known * x_known + (1 - known) * x
        steps.append(x)
    out, trajectory = editing.inpaint(model, x0, known, TS, schedule=LINEAR, generator=_gen(3), return_trajectory=True)
    torch.testing.assert_close(out, x)
    assert len(trajectory) == len(TS)
    torch.testing.assert_close(trajectory[0], steps[0])


def test_inpainting_with_a_soft_mask_blends():
    x0 = _image(8)
    known = torch.full((8, 8), 0.5)
    out = editing.inpaint(pixelwise_model, x0, known, TS, schedule=FLOW, sampler=samplers.euler, generator=_gen())
    assert out.shape == x0.shape and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "mask, match",
    [
        (torch.ones(1, 1, 4, 4), "broadcast"),
        (torch.ones(3, 1, 8, 8), "broadcast"),
        (torch.full((1, 1, 8, 8), 2.0), r"\[0, 1\]"),
        (torch.full((8, 8), -0.5), r"\[0, 1\]"),
        (torch.full((8, 8), float("nan")), r"\[0, 1\]"),
        ("everything", "Tensor"),
    ],
)
def test_inpainting_refuses_bad_masks(mask, match):
    with pytest.raises(ValueError, match=match):
        editing.inpaint(TinyModel(), _image(), mask, TS, schedule=LINEAR)


def test_inpainting_accepts_bool_and_2d_masks_and_refuses_bad_resample():
    x0 = _image()
    out = editing.inpaint(pixelwise_model, x0, _known()[0, 0].bool(), TS, schedule=FLOW, sampler=samplers.euler)
    assert out.shape == x0.shape
    with pytest.raises(ValueError, match="resample"):
        editing.inpaint(pixelwise_model, x0, _known(), TS, schedule=FLOW, sampler=samplers.euler, resample=0)


# ---------------------------------------------------------------------------------------------
# Anagrams and hybrids


def _call(model_fn, x, t=0.5):
    return model_fn(x, torch.full((x.shape[0],), t))


@pytest.mark.parametrize("view", [editing.flip_vertical, editing.rotate_180])
def test_anagram_of_an_equivariant_model_with_itself_is_the_model(view):
    x = torch.randn(3, 1, 8, 8, generator=_gen())
    wrapped = editing.anagram(pixelwise_model, 4, 4, view=view)
    torch.testing.assert_close(_call(wrapped, x), pixelwise_model(x, torch.full((3,), 0.5), torch.tensor([4, 4, 4])))


def test_anagram_averages_the_upright_and_the_flipped_estimates():
    model, x = TinyModel(), torch.randn(2, 1, 8, 8, generator=_gen())
    t = torch.full((2,), 0.3)
    a = model(x, t, torch.tensor([6, 6]))
    b = torch.flip(model(torch.flip(x, dims=(2, 3)), t, torch.tensor([9, 9])), dims=(2, 3))
    torch.testing.assert_close(editing.anagram(model, 6, 9)(x, t), (a + b) / 2)


def test_anagram_and_hybrid_sample_with_the_right_shape_and_a_seed():
    model = TinyModel()
    for wrapped in (
        editing.anagram(model, 6, 9),
        editing.hybrid(model, 3, 8),
        editing.anagram(model, torch.tensor([1, 2]), torch.tensor([7, 5]), view=editing.flip_vertical),
    ):
        runs = [
            samplers.ddpm(wrapped, torch.randn(2, 1, 8, 8, generator=_gen(s)), TS, schedule=LINEAR, generator=_gen(s))
            for s in (0, 0, 1)
        ]
        assert runs[0].shape == (2, 1, 8, 8) and torch.isfinite(runs[0]).all()
        assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_hybrid_is_lowpass_of_one_plus_highpass_of_the_other():
    model, x, t = TinyModel(), torch.randn(2, 1, 28, 28, generator=_gen()), torch.full((2,), 0.7)
    low, high = model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([8, 8]))
    blur = functools.partial(editing.gaussian_lowpass, sigma=0.875, ksize=15)
    torch.testing.assert_close(editing.hybrid(model, 3, 8)(x, t), blur(low) + high - blur(high))
    # the same condition twice gives the model back: lowpass + highpass = identity
    torch.testing.assert_close(editing.hybrid(model, 5, 5)(x, t), model(x, t, torch.tensor([5, 5])), atol=1e-6, rtol=0)


def test_lowpass_keeps_constants_and_matches_opencv_inside():
    import cv2

    torch.testing.assert_close(
        editing.gaussian_lowpass(torch.full((1, 2, 9, 9), 0.3), 1.5), torch.full((1, 2, 9, 9), 0.3)
    )
    x = torch.randn(1, 1, 28, 28, generator=_gen())
    ours = editing.gaussian_lowpass(x, 2.0, 13)
    theirs = cv2.GaussianBlur(x[0, 0].numpy(), (13, 13), sigmaX=2.0, borderType=cv2.BORDER_REFLECT_101)
    torch.testing.assert_close(ours[0, 0], torch.from_numpy(theirs), atol=1e-5, rtol=0)  # same border rule too
    assert editing.hybrid_sigma(64) == 2.0 and editing.hybrid_kernel_size(64) == 33
    assert editing.hybrid_kernel_size(28) == 15


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigma=float("nan")), "sigma"),
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=1.0, ksize=4), "odd"),
        (dict(sigma=1.0, ksize=17), "too large"),
    ],
)
def test_lowpass_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        editing.gaussian_lowpass(torch.zeros(1, 1, 8, 8), **kwargs)


def test_wrappers_refuse_bad_conditions():
    with pytest.raises(ValueError, match="cond_a"):
        editing.anagram(TinyModel(), "six", 9)
    with pytest.raises(ValueError, match="cond_high"):
        editing.hybrid(TinyModel(), 3, 8.5)
    with pytest.raises(ValueError, match="sigma"):
        editing.hybrid(TinyModel(), 3, 8, sigma=0.0)
    with pytest.raises(ValueError, match="own conditions"):
        editing.anagram(TinyModel(), 6, 9)(torch.zeros(1, 1, 8, 8), torch.ones(1), torch.tensor([3]))
    with pytest.raises(ValueError, match="batch"):
        editing.hybrid(TinyModel(), torch.tensor([1, 2, 3]), 8)(torch.zeros(2, 1, 8, 8), torch.ones(2))
