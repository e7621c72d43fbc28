import torch

from course_utils import schedules, targets


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(8, 1, 4, 4, generator=g),
        torch.randn(8, 1, 4, 4, generator=g),
        torch.rand(8, generator=g) * 0.98 + 0.01,
    )


def test_eps_x0_round_trip():
    x0, eps, t = _batch()
    s = schedules.cosine_schedule()
    a, sg = targets.coef(s.alpha(t), x0), targets.coef(s.sigma(t), x0)
    xt = s.add_noise(x0, t, eps)
    torch.testing.assert_close(targets.x0_from_eps(xt, eps, a, sg), x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(targets.eps_from_x0(xt, x0, a, sg), eps, atol=1e-4, rtol=1e-4)


def test_v_round_trip():
    x0, eps, t = _batch(1)
    s = schedules.linear_schedule()
    a, sg = targets.coef(s.alpha(t), x0), targets.coef(s.sigma(t), x0)
    xt = s.add_noise(x0, t, eps)
    v = targets.v_from_eps_x0(eps, x0, a, sg)
    x0_hat, eps_hat = targets.x0_eps_from_v(xt, v, a, sg)
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps_hat, eps, atol=1e-5, rtol=1e-5)


def test_velocity_is_time_derivative_of_flow_path():
    x0, eps, t = _batch(2)
    f = schedules.FlowSchedule()
    h = 1e-3
    tb = targets.coef(t, x0)
    finite_difference = (f.add_noise(x0, t + h, eps) - f.add_noise(x0, t - h, eps)) / (2 * h)
    u = targets.velocity_from_eps_x0(eps, x0)
    torch.testing.assert_close(finite_difference, u, atol=1e-3, rtol=1e-3)
    xt = f.add_noise(x0, t, eps)
    torch.testing.assert_close(targets.x0_from_velocity(xt, u, tb), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(targets.eps_from_velocity(xt, u, tb), eps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(targets.velocity_from_eps(xt, eps, tb), u, atol=1e-4, rtol=1e-4)
