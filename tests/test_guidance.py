import torch

from course_utils import guidance


def toy_model(x, t, cond=None):
    """Output depends on the class (one-hot-ish shift), -1 / None meaning 'no class'."""
    if cond is None:
        cond = torch.full((x.shape[0],), -1)
    shift = torch.where(cond >= 0, cond.float() + 1.0, torch.zeros_like(cond, dtype=torch.float))
    return x * t[:, None, None, None] + shift[:, None, None, None]


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 1, 5, 5, generator=g), torch.rand(4, generator=g), torch.tensor([0, 3, 7, 9])


def test_cfg_scale_one_is_conditional_and_zero_unconditional():
    x, t, c = _inputs()
    torch.testing.assert_close(guidance.cfg(toy_model, 1.0)(x, t, c), toy_model(x, t, c))
    torch.testing.assert_close(guidance.cfg(toy_model, 0.0)(x, t, c), toy_model(x, t, torch.full_like(c, -1)))
    torch.testing.assert_close(guidance.cfg(toy_model, 3.0)(x, t, None), toy_model(x, t, None))


def test_cfg_extrapolates():
    x, t, c = _inputs()
    u, k = toy_model(x, t, torch.full_like(c, -1)), toy_model(x, t, c)
    torch.testing.assert_close(guidance.cfg(toy_model, 4.0)(x, t, c), u + 4.0 * (k - u))


def test_cfg_with_feature_vectors_uses_nan_rows():
    seen = []

    def model(x, t, cond=None):
        seen.append(cond)
        return x

    x = torch.zeros(2, 1, 3, 3)
    guidance.cfg(model, 2.0)(x, torch.ones(2), torch.rand(2, 32))
    cond = seen[-1]
    assert cond.shape == (4, 32) and torch.isnan(cond[:2]).all() and not torch.isnan(cond[2:]).any()


def test_negative_guidance():
    x, t, c = _inputs()
    neg = 5
    out = guidance.negative_guidance(toy_model, 2.0, neg)(x, t, c)
    eps_neg = toy_model(x, t, torch.full_like(c, neg))
    u = toy_model(x, t, torch.full_like(c, -1))
    torch.testing.assert_close(out, u + 2.0 * (toy_model(x, t, c) - eps_neg))
    away = guidance.negative_guidance(toy_model, 0.0, neg, negative_scale=1.5)(x, t, None)
    torch.testing.assert_close(away, u - 1.5 * (eps_neg - u))
