import math

import pytest
import torch

from course_utils import schedules


@pytest.fixture(params=["linear", "cosine"])
def vp(request):
    return schedules.linear_schedule() if request.param == "linear" else schedules.cosine_schedule()


def test_endpoints_and_monotone(vp):
    t = torch.linspace(0, 1, 2001)
    ab = vp.alpha_bar(t)
    assert ab[0] == 1.0
    assert ab[-1] < 1e-4  # almost pure noise at t = 1
    assert torch.all(ab[1:] < ab[:-1])  # strictly decreasing
    snr = vp.snr(t[1:])
    assert torch.all(snr[1:] < snr[:-1])


def test_variance_preserving(vp):
    t = torch.rand(100)
    torch.testing.assert_close(vp.alpha(t) ** 2 + vp.sigma(t) ** 2, torch.ones(100))


def test_linear_matches_cumulative_product():
    s = schedules.linear_schedule(T=1000, beta_start=1e-4, beta_end=0.02)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    expected = torch.cumprod(1 - betas, 0)
    for i in (1, 250, 500, 750, 1000):
        assert s.alpha_bar(i / 1000).item() == pytest.approx(expected[i - 1].item(), rel=1e-5)
    torch.testing.assert_close(s.betas.double(), betas, atol=1e-6, rtol=1e-4)
    assert s.T == 1000


def test_cosine_matches_closed_form():
    s = schedules.cosine_schedule(T=1000)
    t = torch.arange(0, 990) / 1000  # the last steps are clipped at beta = 0.999 by design
    closed = schedules.cosine_alpha_bar(t.double()).float()
    torch.testing.assert_close(s.alpha_bar(t), closed, rtol=1e-4, atol=1e-6)
    # the textbook formula at one point, written out
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert s.alpha_bar(0.5).item() == pytest.approx(f(0.5) / f(0.0), rel=1e-5)


def test_interpolation_between_steps_is_log_linear():
    s = schedules.linear_schedule(T=10)
    mid = s.alpha_bar(0.25)  # halfway between steps 2 and 3
    expected = math.sqrt(s.at_step(2).item() * s.at_step(3).item())
    assert mid.item() == pytest.approx(expected, rel=1e-5)


def test_forward_noising_has_unit_variance(vp):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(20000, generator=g)
    eps = torch.randn(20000, generator=g)
    for t in (0.1, 0.5, 0.9):
        xt = vp.add_noise(x0, torch.tensor(t), eps)
        assert xt.var().item() == pytest.approx(1.0, abs=0.03)


def test_add_noise_broadcasts_per_sample(vp):
    x0, eps = torch.ones(3, 1, 2, 2), torch.zeros(3, 1, 2, 2)
    t = torch.tensor([0.0, 0.5, 1.0])
    xt = vp.add_noise(x0, t, eps)
    torch.testing.assert_close(xt[:, 0, 0, 0], vp.alpha(t))


def test_flow_schedule_is_straight_line():
    f = schedules.FlowSchedule()
    t = torch.tensor([0.0, 0.3, 1.0])
    torch.testing.assert_close(f.alpha(t), 1 - t)
    torch.testing.assert_close(f.sigma(t), t)
    x0, eps = torch.full((3, 1), 2.0), torch.full((3, 1), -1.0)
    torch.testing.assert_close(f.add_noise(x0, t, eps)[:, 0], 2 - 3 * t)


def test_time_and_step_grids():
    g = schedules.time_grid(4)
    torch.testing.assert_close(g, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    steps = schedules.step_grid(1000, 990, 30)
    assert steps[0].item() == pytest.approx(0.99) and steps[-1] == 0 and len(steps) == 34
    with pytest.raises(ValueError):
        schedules.time_grid(0)
    with pytest.raises(ValueError):
        schedules.step_grid(1000, 0, 30)


def test_time_outside_unit_interval_is_rejected(vp):
    with pytest.raises(ValueError):
        vp.alpha_bar(torch.tensor([1.5]))


@pytest.mark.parametrize("make", [schedules.linear_schedule, schedules.cosine_schedule])
def test_alpha_bar_at_float32_step_times_is_the_table_value(make):
    s = make(1000)
    steps = torch.arange(1001)
    # i / T rounded to float32 used to land between two steps (up to 9e-5 relative at the last cosine step)
    torch.testing.assert_close(s.alpha_bar(steps.float() / 1000), s.alpha_bars, atol=0, rtol=1e-6)


@pytest.mark.parametrize(
    "vp", [schedules.linear_schedule(1000), schedules.cosine_schedule(1000), schedules.FlowSchedule()]
)
def test_step_to_step_coefficients_compose(vp):
    t, s = torch.tensor([0.7, 0.3, 0.95]), torch.tensor([0.2, 0.1, 0.5])
    alpha_ts, sigma_ts2 = vp.transition(t, s)
    torch.testing.assert_close(alpha_ts * vp.alpha(s), vp.alpha(t))  # means compose
    torch.testing.assert_close(alpha_ts**2 * vp.sigma(s) ** 2 + sigma_ts2, vp.sigma(t) ** 2)  # variances add
    a, b = vp.posterior_mean_coefs(t, s)  # the posterior mean is exact for a noiseless x_t = alpha_t x0
    torch.testing.assert_close(a + b * vp.alpha(t), vp.alpha(s), atol=1e-5, rtol=1e-5)


def test_step_times_land_on_integer_steps():
    ts = schedules.step_times(7, 1000)
    assert ts[0] == 1 and ts[-1] == 0 and len(ts) == 8
    torch.testing.assert_close(ts * 1000, torch.round(ts * 1000))
    with pytest.raises(ValueError):
        schedules.step_times(0)


@pytest.mark.parametrize(
    "vp", [schedules.linear_schedule(1000), schedules.cosine_schedule(1000), schedules.FlowSchedule()]
)
def test_time_at_log_snr_inverts_log_snr(vp):
    lam = torch.tensor([6.0, 2.0, 0.0, -2.0, -6.0])
    t = vp.time_at_log_snr(lam)
    assert torch.all(t[1:] > t[:-1])
    torch.testing.assert_close(vp.log_snr(t), lam, atol=1e-3, rtol=0)


def test_a_time_tensor_follows_the_images_device():
    # add_noise(x0 on a GPU, torch.tensor(t)) made on the CPU must not mix devices
    from course_utils.schedules import _as_time

    like = torch.zeros(2, device="meta")
    assert _as_time(torch.tensor(0.5), like).device == like.device
    assert _as_time(0.5, like).device == like.device
