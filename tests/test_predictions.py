"""Prediction types: conversions between eps, x0, v and velocity, and samplers that check them."""

import pytest
import torch

from course_utils import guidance, predictions, samplers, schedules
from course_utils.errors import BadRequest

from . import oracles

X_STAR = torch.linspace(-0.9, 0.9, 16).reshape(1, 1, 4, 4)
LINEAR = schedules.linear_schedule(1000)
FLOW = schedules.FlowSchedule()


def _x(n=3, seed=0):
    return torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_every_kind_gives_the_same_estimates():
    eps_model = predictions.with_prediction(oracles.eps_oracle(LINEAR, X_STAR), "eps")
    x, t = _x(), torch.full((3,), 0.4)
    x0_ref, eps_ref = predictions.denoise(eps_model, x, t, LINEAR)
    torch.testing.assert_close(x0_ref, X_STAR.expand(3, -1, -1, -1), atol=1e-4, rtol=0)
    for kind in ("x0", "v"):
        other = predictions.convert(eps_model, kind, LINEAR)
        assert predictions.prediction_of(other) == kind
        plain = predictions.with_prediction(lambda x, t, c=None, m=other: m(x, t, c), kind)  # no unwrapping
        x0_hat, eps_hat = predictions.denoise(plain, x, t, LINEAR)
        torch.testing.assert_close(x0_hat, x0_ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(eps_hat, eps_ref, atol=1e-4, rtol=1e-4)


def test_velocity_and_eps_on_the_flow_path_round_trip():
    u_model = predictions.with_prediction(oracles.velocity_oracle(X_STAR), "velocity")
    eps_model = samplers.eps_from_velocity_model(u_model)
    back = samplers.velocity_from_eps_model(predictions.with_prediction(lambda x, t, c=None: eps_model(x, t, c), "eps"))
    x, t = _x(), torch.full((3,), 0.6)
    torch.testing.assert_close(back(x, t), u_model(x, t), atol=1e-5, rtol=1e-5)


def test_ddim_on_the_flow_path_from_t_1_is_finite_and_equals_euler():
    # alpha(1) = 0 on the flow path: x0 = (x - sigma eps) / alpha is 0/0 there; the converted model
    # is unwrapped to its velocity, which gives x0 = x - t u without a division.
    u_model = predictions.with_prediction(oracles.velocity_oracle(X_STAR), "velocity")
    x1, ts = _x(), schedules.time_grid(10)
    ddim = samplers.ddim(samplers.eps_from_velocity_model(u_model), x1, ts, schedule=FLOW)
    assert torch.isfinite(ddim).all()
    torch.testing.assert_close(ddim, samplers.euler(u_model, x1, ts), atol=1e-5, rtol=0)
    direct = samplers.ddim(u_model, x1, ts, schedule=FLOW)  # DDIM takes the velocity model as it is
    torch.testing.assert_close(direct, ddim, atol=1e-5, rtol=0)


def test_heun_and_euler_run_on_a_ddpm_model_through_the_flow_path():
    eps_model = predictions.with_prediction(oracles.eps_oracle(LINEAR, X_STAR), "eps")
    velocity = predictions.as_flow_velocity(eps_model, LINEAR)
    x1 = _x()
    for sampler in (samplers.euler, samplers.heun):
        out = sampler(velocity, x1, schedules.time_grid(8))
        torch.testing.assert_close(out, X_STAR.expand(3, -1, -1, -1), atol=2e-3, rtol=0)


def test_flow_time_is_inverted():
    for schedule in (LINEAR, schedules.cosine_schedule(1000), FLOW):
        t = torch.linspace(0.01, 0.99, 25)
        tau = schedule.flow_time(t)
        assert torch.all(tau[1:] > tau[:-1])
        torch.testing.assert_close(schedule.time_at_flow_time(tau), t, atol=1e-5, rtol=0)


def test_samplers_refuse_the_wrong_kind_with_the_fix():
    eps_model = predictions.with_prediction(oracles.eps_oracle(LINEAR, X_STAR), "eps")
    with pytest.raises(BadRequest, match="as_flow_velocity"):
        samplers.euler(eps_model, _x(), schedules.time_grid(4))
    with pytest.raises(BadRequest, match="as_flow_velocity"):
        samplers.heun(guidance.cfg(eps_model, 2.0), _x(), schedules.time_grid(4))  # wrappers keep the kind
    u_model = predictions.with_prediction(oracles.velocity_oracle(X_STAR), "velocity")
    with pytest.raises(BadRequest, match="flow path"):
        samplers.ddim(u_model, _x(), schedules.step_times(10), schedule=LINEAR)
    with pytest.raises(BadRequest, match="unknown prediction"):
        predictions.with_prediction(eps_model, "noise")


def test_course_models_record_what_they_predict():
    from course_utils import pretrained

    model = pretrained.load("mnist-ddpm", device="cpu")
    assert predictions.prediction_of(model) == "eps"
    assert predictions.prediction_of(pretrained.load("mnist-fm", device="cpu")) == "velocity"
    with pytest.raises(BadRequest, match="predicts 'eps'"):
        samplers.euler(model, torch.randn(1, 1, 28, 28), schedules.time_grid(2))


def test_denoise_clips_x0_to_one_or_to_a_given_bound_and_keeps_eps_consistent():
    from course_utils import schedules, targets

    schedule = schedules.cosine_schedule(1000)
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * 5
    t = torch.full((3,), 0.999)  # alpha nearly 0: x0 = (x - sigma eps) / alpha is huge

    def model(x, t, cond=None):
        return torch.zeros_like(x)  # eps_hat = 0: x0_hat = x / alpha

    model = predictions.with_prediction(model, "eps")
    free, _ = predictions.denoise(model, x, t, schedule)
    assert free.abs().max() > 100
    for clip, bound in ((True, 1.0), (2.5, 2.5)):
        x0, eps = predictions.denoise(model, x, t, schedule, clip_x0=clip)
        assert x0.abs().max() <= bound and x0.abs().max() == pytest.approx(bound)
        alpha, sigma = schedule.alpha(t).view(-1, 1, 1, 1), schedule.sigma(t).view(-1, 1, 1, 1)
        torch.testing.assert_close(eps, targets.eps_from_x0(x, x0, alpha, sigma))


def test_wrappers_remember_the_device_of_the_model_they_wrap():
    # make_pairs and the samplers put their noise where the model is; a guided wrapper is a plain
    # function, so it carries the device of the model inside it (a GPU notebook found this).
    from torch import nn

    net = nn.Conv2d(1, 1, 1).to("meta")
    assert predictions.device_of(net) == torch.device("meta")
    guided = guidance.cfg(net, 2.0)
    assert predictions.device_of(guided) == torch.device("meta")
    assert predictions.device_of(guidance.cfg(guided, 1.5)) == torch.device("meta")
    assert predictions.device_of(lambda x, t, c=None: x) == torch.device("cpu")
