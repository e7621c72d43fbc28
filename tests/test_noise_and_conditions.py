"""Per-sample noise (an image does not depend on its batch) and the one "no condition" rule."""

import pytest
import torch

from course_utils import conditions, guidance, losses, noise, samplers, schedules
from course_utils.errors import BadRequest

from . import oracles

X_STAR = torch.linspace(-0.9, 0.9, 16).reshape(1, 1, 4, 4)


def test_per_sample_draws_do_not_depend_on_the_batch():
    four = noise.PerSample.from_seed(7, 4).randn((4, 1, 3, 3))
    last_two = noise.PerSample.from_seed(7, 2, start=2).randn((2, 1, 3, 3))
    torch.testing.assert_close(four[2:], last_two, atol=0, rtol=0)
    assert not torch.equal(four[0], four[1])
    with pytest.raises(BadRequest, match="3 images was asked for 2"):
        noise.PerSample.from_seed(0, 3).randn((2, 5))


def test_a_sampled_image_is_the_same_alone_or_in_a_batch():
    schedule = schedules.linear_schedule(1000)
    model = oracles.eps_oracle(schedule, X_STAR)
    ts = schedules.step_times(5)

    def draw(n, start):
        g = noise.PerSample.from_seed(3, n, start=start)
        x1 = noise.randn((n, 1, 4, 4), g)
        return samplers.ddpm(model, x1, ts, schedule=schedule, generator=g)

    torch.testing.assert_close(draw(3, 0)[1], draw(1, 1)[0], atol=1e-6, rtol=0)


def test_the_no_condition_rule_lives_in_one_place():
    assert losses.drop_condition is conditions.drop_condition and losses.null_condition is conditions.null_condition
    ids, feats = torch.tensor([3, 5]), torch.rand(2, 32)
    assert conditions.null_condition(ids).tolist() == [-1, -1]
    assert conditions.is_null(conditions.null_condition(feats)).all()
    assert not conditions.is_null(feats).any() and not conditions.is_null(ids).any()
    g = torch.Generator().manual_seed(0)
    assert conditions.is_null(conditions.drop_condition(ids, 1.0, g)).all()
    assert torch.equal(conditions.drop_condition(feats, 0.0, g), feats)
    with pytest.raises(BadRequest, match="p must lie"):
        conditions.drop_condition(ids, 1.5)


def test_per_sample_conditions_broadcast_and_refuse_a_wrong_batch():
    assert conditions.per_sample(4, 3).tolist() == [4, 4, 4]
    assert conditions.per_sample(torch.rand(32), 2).shape == (2, 32)
    assert conditions.per_sample(None, 2) is None
    with pytest.raises(BadRequest, match="batch of 2"):
        conditions.per_sample(torch.tensor([1, 2, 3]), 2)
    calls = []

    def model(x, t, cond):
        calls.append(cond.clone())
        return x

    guidance.negative_guidance(model, 2.0, 1)(torch.zeros(2, 1, 4, 4), torch.ones(2), torch.tensor([3, 4]))
    assert calls[0].tolist() == [-1, -1, 3, 4, 1, 1]  # uncond, cond, negative: one batched call
