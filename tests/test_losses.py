import functools

import pytest
import torch

from course_utils import losses, schedules, targets


def _data(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)


def test_flow_matching_target_on_a_known_path():
    x0, _ = _data()
    seen = {}

    def model(xt, t, cond=None):  # record what the loss asks; reconstruct the target from it
        seen["xt"], seen["t"] = xt, t
        return torch.zeros_like(xt)

    g = torch.Generator().manual_seed(3)
    loss = losses.flow_matching_loss(model, x0, generator=g)
    g = torch.Generator().manual_seed(3)
    t = torch.rand(6, generator=g)
    eps = torch.randn(x0.shape, generator=g)
    torch.testing.assert_close(seen["t"], t)
    torch.testing.assert_close(seen["xt"], (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * eps)
    torch.testing.assert_close(loss, ((eps - x0) ** 2).mean())


def test_flow_matching_loss_zero_for_the_true_velocity():
    x0, _ = _data(1, n=1)  # one-point data: u = (xt - x0) / t exactly
    oracle = lambda xt, t, cond=None: (xt - x0) / targets.coef(t, xt)  # noqa: E731
    assert losses.flow_matching_loss(oracle, x0, generator=torch.Generator().manual_seed(0)).item() < 1e-8


@pytest.mark.parametrize("make", [schedules.linear_schedule, schedules.cosine_schedule])
def test_ddpm_loss_zero_for_an_oracle(make):
    s = make(50)
    x0, _ = _data(2, n=1)

    def oracle(xt, t, cond=None):  # one-point data: eps = (xt - alpha x0) / sigma
        assert torch.allclose(t * s.T, torch.round(t * s.T), atol=1e-4) and torch.all(
            t > 0
        )  # integer steps i / T, i >= 1
        return targets.eps_from_x0(xt, x0, targets.coef(s.alpha(t), xt), targets.coef(s.sigma(t), xt))

    loss = losses.ddpm_loss(oracle, x0.expand(16, -1, -1, -1), schedule=s, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-8


def test_min_snr_weighting_caps_the_clean_steps_and_keeps_the_noisy_ones():
    s = schedules.cosine_schedule(1000)
    x0, _ = _data(5, n=64)
    seen = {}

    def model(xt, t, cond=None):  # a constant error of 1 per value: each image's term is its weight
        seen["t"] = t
        return 1 + targets.eps_from_x0(xt, x0, targets.coef(s.alpha(t), xt), targets.coef(s.sigma(t), xt))

    simple = losses.ddpm_loss(model, x0, schedule=s, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(simple, torch.tensor(1.0))
    weighted = losses.ddpm_loss(model, x0, schedule=s, generator=torch.Generator().manual_seed(1), snr_gamma=5.0)
    snr = s.snr(seen["t"])
    want = torch.where(snr > 5, 5 / snr, torch.ones_like(snr)).mean()  # min(SNR, 5) / SNR per image
    torch.testing.assert_close(weighted, want)
    assert (snr > 5).any() and (snr < 5).any() and weighted < simple  # both kinds of step were drawn
    huge = losses.ddpm_loss(model, x0, schedule=s, generator=torch.Generator().manual_seed(1), snr_gamma=1e12)
    torch.testing.assert_close(huge, simple)  # a cap above every SNR is the simple loss


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan")])
def test_min_snr_weighting_refuses_a_gamma_that_is_not_positive(gamma):
    called = []
    model = lambda x, t, cond=None: called.append(1) or x  # noqa: E731
    with pytest.raises(ValueError, match="snr_gamma"):
        losses.ddpm_loss(model, _data()[0], schedule=schedules.cosine_schedule(100), snr_gamma=gamma)
    assert not called  # refused before the model runs


def test_losses_are_deterministic_under_a_generator():
    x0, y = _data(3)
    model = lambda x, t, cond=None: x * 0.5  # noqa: E731
    fn = functools.partial(losses.ddpm_loss, schedule=schedules.linear_schedule(100), p_uncond=0.2)
    a = fn(model, (x0, y), generator=torch.Generator().manual_seed(7))
    b = fn(model, (x0, y), generator=torch.Generator().manual_seed(7))
    c = fn(model, (x0, y), generator=torch.Generator().manual_seed(8))
    assert a.item() == b.item() != c.item()


def test_denoising_loss_inputs():
    x0, _ = _data(4)
    seen = {}

    def model(z, t, cond=None):
        seen["z"] = z
        return x0

    assert losses.denoising_loss(model, x0, sigma=0.5, generator=torch.Generator().manual_seed(1)).item() == 0
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(seen["z"], x0 + 0.5 * eps)
    losses.denoising_loss(model, x0, pure_noise=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(seen["z"], eps)


def test_drop_condition_classes_and_vectors():
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(1000) % 10
    dropped = losses.drop_condition(ids, 0.1, g)
    frac = (dropped == -1).float().mean().item()
    assert 0.07 < frac < 0.13
    assert torch.equal(dropped[dropped >= 0], ids[dropped >= 0])
    feats = torch.rand(500, 32, generator=g)
    out = losses.drop_condition(feats, 0.5, g)
    rows = torch.isnan(out).all(dim=1)
    assert torch.isnan(out).any(dim=1).eq(rows).all()  # whole rows or nothing
    assert 0.4 < rows.float().mean().item() < 0.6
    assert torch.equal(out[~rows], feats[~rows])
    assert torch.equal(losses.drop_condition(ids, 0.0, g), ids)
    assert torch.all(losses.drop_condition(ids, 1.0, g) == -1)
    assert losses.drop_condition(None, 0.5, g) is None
    with pytest.raises(ValueError):
        losses.drop_condition(ids, 1.5, g)


def test_condition_dropout_happens_in_the_loss():
    x0, y = _data(5, n=200)
    seen = {}

    def model(x, t, cond=None):
        seen["cond"] = cond
        return torch.zeros_like(x)

    losses.flow_matching_loss(model, (x0, y), p_uncond=0.5, generator=torch.Generator().manual_seed(0))
    assert 50 < (seen["cond"] == -1).sum().item() < 150
