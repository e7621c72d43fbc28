import pytest
import torch

from course_utils import samplers, schedules, targets

from . import oracles

X_STAR = torch.linspace(-0.9, 0.9, 16).reshape(1, 1, 4, 4)  # the one data point


def eps_oracle(schedule, x_star=X_STAR):
    return oracles.eps_oracle(schedule, x_star)


velocity_oracle = oracles.velocity_oracle(X_STAR)


def gaussian_eps_oracle(schedule, m, s):
    """Exact E[eps | xt] when the data are N(m, s^2) per pixel."""

    def model(xt, t, cond=None):
        a, sg = targets.coef(schedule.alpha(t), xt), targets.coef(schedule.sigma(t), xt)
        return sg * (xt - a * m) / (a**2 * s**2 + sg**2)

    return model


def gaussian_velocity_oracle(m, s):
    """Exact E[eps - x0 | xt] on the flow path for data N(m, s^2)."""

    def model(xt, t, cond=None):
        t = targets.coef(t, xt)
        var = (1 - t) ** 2 * s**2 + t**2
        centred = xt - (1 - t) * m
        return t * centred / var - (m + (1 - t) * s**2 * centred / var)

    return model


def _noise(n=3, seed=0):
    return torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


LINEAR = schedules.linear_schedule(1000)


@pytest.mark.parametrize("ts", [schedules.time_grid(1000), schedules.step_grid(1000, 990, 30), schedules.time_grid(10)])
def test_ddpm_with_an_oracle_recovers_the_point(ts):
    g = torch.Generator().manual_seed(1)
    x = samplers.ddpm(eps_oracle(LINEAR), _noise(), ts, schedule=LINEAR, generator=g)
    torch.testing.assert_close(x, X_STAR.expand_as(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_with_an_oracle_recovers_the_point(eta):
    cosine = schedules.cosine_schedule(1000)
    ts = schedules.time_grid(20, t_start=0.999)
    x = samplers.ddim(
        eps_oracle(cosine), _noise(), ts, schedule=cosine, eta=eta, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(x, X_STAR.expand_as(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("sampler", [samplers.euler, samplers.heun])
def test_flow_solvers_with_an_oracle_recover_the_point(sampler):
    x = sampler(velocity_oracle, _noise(), schedules.time_grid(7))
    torch.testing.assert_close(x, X_STAR.expand_as(x), atol=1e-5, rtol=0)


def test_ddim_eta0_many_steps_follows_the_probability_flow_ode():
    m, s = 0.3, 0.5  # Gaussian data: the ODE maps x1 to x0 = m + s (x1 - alpha_1 m) / sqrt(alpha_1^2 s^2 + sigma_1^2)
    x1 = _noise(8, seed=4)
    a1, s1 = LINEAR.alpha(1.0), LINEAR.sigma(1.0)
    exact = m + s * (x1 - a1 * m) / torch.sqrt(a1**2 * s**2 + s1**2)
    coarse = samplers.ddim(gaussian_eps_oracle(LINEAR, m, s), x1, schedules.time_grid(10), schedule=LINEAR)
    fine = samplers.ddim(gaussian_eps_oracle(LINEAR, m, s), x1, schedules.time_grid(1000), schedule=LINEAR)
    err_coarse, err_fine = (coarse - exact).abs().max().item(), (fine - exact).abs().max().item()
    assert err_fine < 5e-3 and err_fine < err_coarse


def test_heun_beats_euler_on_the_gaussian_flow():
    m, s = -0.2, 0.4
    x1 = _noise(8, seed=5)
    exact = m + s * x1  # on the flow path alpha_1 = 0, sigma_1 = 1
    ts = schedules.time_grid(10)
    err_euler = (samplers.euler(gaussian_velocity_oracle(m, s), x1, ts) - exact).abs().max().item()
    err_heun = (samplers.heun(gaussian_velocity_oracle(m, s), x1, ts) - exact).abs().max().item()
    fine = samplers.euler(gaussian_velocity_oracle(m, s), x1, schedules.time_grid(2000))
    assert err_heun < err_euler / 5
    assert (fine - exact).abs().max().item() < 2e-3


def test_ddim_eta1_is_ddpm():
    model = gaussian_eps_oracle(LINEAR, 0.1, 0.6)
    ts = schedules.step_grid(1000, 990, 30)
    a = samplers.ddpm(model, _noise(), ts, schedule=LINEAR, generator=torch.Generator().manual_seed(3))
    b = samplers.ddim(model, _noise(), ts, schedule=LINEAR, eta=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_posterior_variance_matches_ddpm_betas():
    i = 500
    var = samplers.posterior_variance(LINEAR, i / 1000, (i - 1) / 1000)
    beta = LINEAR.betas[i - 1]
    expected = (1 - LINEAR.at_step(i - 1)) / (1 - LINEAR.at_step(i)) * beta  # Ho et al. beta-tilde
    torch.testing.assert_close(var, expected, atol=1e-6, rtol=1e-3)


def test_determinism_shapes_and_trajectory():
    model = gaussian_eps_oracle(LINEAR, 0.0, 0.5)
    ts = schedules.time_grid(12)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return samplers.ddpm(model, _noise(), ts, schedule=LINEAR, generator=g, return_trajectory=True)

    (a, traj), (b, _), (c, _) = run(0), run(0), run(1)
    assert a.shape == (3, 1, 4, 4) and len(traj) == 13 and traj[-1] is a
    assert torch.equal(a, b) and not torch.equal(a, c)
    x, traj = samplers.heun(velocity_oracle, _noise(), ts, return_trajectory=True)
    assert len(traj) == 13 and traj[0].shape == x.shape


def test_ddim_on_the_flow_path_is_euler():
    flow = schedules.FlowSchedule()
    model = gaussian_velocity_oracle(0.1, 0.5)
    ts = schedules.time_grid(8, t_start=0.999)
    a = samplers.euler(model, _noise(), ts)
    b = samplers.ddim(samplers.eps_from_velocity_model(model), _noise(), ts, schedule=flow)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    u_back = samplers.velocity_from_eps_model(samplers.eps_from_velocity_model(model))
    t = torch.full((3,), 0.4)
    torch.testing.assert_close(u_back(_noise(), t), model(_noise(), t), atol=1e-5, rtol=1e-5)


def test_clip_x0_keeps_estimates_in_range():
    far = torch.full((1, 1, 4, 4), 3.0)  # a point outside [-1, 1]: clipped estimates end at 1
    x = samplers.ddim(eps_oracle(LINEAR, far), _noise(), schedules.time_grid(10), schedule=LINEAR, clip_x0=True)
    assert x.max().item() <= 1.0 + 1e-5


def test_bad_grids_fail_clearly():
    with pytest.raises(ValueError, match="decreasing"):
        samplers.euler(velocity_oracle, _noise(), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_the_start_and_condition_move_to_the_models_device(name):
    # Noise and conditions are made on the CPU in the notebooks; a model on a GPU must still run.
    # The meta device stands in for the GPU here: it computes shapes only, on any machine (the
    # schedules' value checks cannot run on it, so DDPM and DDIM are covered by the next test).
    from torch import nn

    from course_utils import predictions

    seen = {}

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1, device="meta"))

        def forward(self, x, t, cond=None):
            seen.update(x=x.device, t=t.device, cond=None if cond is None else cond.device)
            return x * self.w

    model = predictions.with_prediction(Model(), "velocity")
    out = getattr(samplers, name)(model, torch.randn(2, 1, 4, 4), schedules.time_grid(2), cond=torch.tensor([1, 2]))
    assert out.device.type == "meta"
    assert seen == {"x": torch.device("meta"), "t": torch.device("meta"), "cond": torch.device("meta")}


def test_every_sampler_walks_from_the_start_on_the_models_device(monkeypatch):
    # DDPM and DDIM hand the model's device to the shared loop, which moves the checked start there
    from torch import nn

    net = nn.Conv2d(1, 1, 1).to("meta")
    device, cond = samplers._on_model_device(net, torch.tensor([3]))
    assert device.type == "meta" and cond.device.type == "meta"
    assert samplers._on_model_device(lambda x, t, c=None: x, torch.tensor([3]))[0] is None  # unknown: left alone
    moved = samplers._walk(
        lambda x, t, s: x, torch.zeros(1, 1, 2, 2), schedules.time_grid(2), "test", False, False, device
    )
    assert moved.device.type == "meta"
    calls = []
    monkeypatch.setattr(samplers, "_walk", lambda *a: calls.append(a[-1]))
    for name in ("ddpm", "ddim"):
        getattr(samplers, name)(
            net, torch.zeros(1, 1, 2, 2), schedules.time_grid(2), schedule=schedules.linear_schedule()
        )
    assert [d.type for d in calls] == ["meta", "meta"]
