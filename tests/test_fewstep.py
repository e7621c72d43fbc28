"""Few-step generation against closed forms: Gaussian data, where the teacher's ODE map and the
reflowed (straight) velocity are known exactly; the pair cache; the losses; the evaluation count."""

import pytest
import torch

from course_utils import checkpoints, fewstep, guidance, metrics, pretrained
from course_utils.errors import BadRequest
from course_utils.noise import PerSample
from tests.conftest import mnist_available

MU, S = 0.3, 0.5  # data N(0.3, 0.5^2) in every pixel


def _z(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# The closed forms


def test_the_teacher_ode_map_is_mu_plus_s_z_and_one_teacher_step_gives_the_mean():
    z = _z()
    v = fewstep.gaussian_velocity(MU, S)
    x = fewstep.sample(v, z, 400)
    torch.testing.assert_close(x, fewstep.gaussian_ode_map(z, MU, S), atol=1e-2, rtol=0)  # Euler: error ~ 1 / steps
    torch.testing.assert_close(fewstep.sample(v, z, 1), torch.full_like(z, MU))  # the "average digit"


def test_the_teacher_paths_bend_and_the_reflowed_ones_are_straight():
    z = _z()
    ts = torch.linspace(1, 0, 41)
    bent = fewstep.samplers.euler(fewstep.gaussian_velocity(MU, S), z, ts, return_trajectory=True)[1]
    straight = fewstep.samplers.euler(fewstep.gaussian_reflow_velocity(MU, S), z, ts, return_trajectory=True)[1]
    assert fewstep.straightness(straight, ts).max() < 1e-10
    assert fewstep.straightness(bent, ts).min() > 1e-3
    with pytest.raises(BadRequest, match="needs"):
        fewstep.straightness(bent[:-1], ts)


def test_reflow_on_exact_pairs_has_zero_loss_and_one_exact_step():
    z = _z()
    x = fewstep.gaussian_ode_map(z, MU, S)
    v2 = fewstep.gaussian_reflow_velocity(MU, S)
    g = torch.Generator().manual_seed(0)
    for p_one in (0.0, 0.5, 1.0):
        assert fewstep.reflow_loss(v2, (z, x), generator=g, p_one=p_one).item() < 1e-10
    assert fewstep.distillation_loss(v2, (z, x)).item() < 1e-10
    for steps in (1, 2, 4):
        torch.testing.assert_close(fewstep.sample(v2, z, steps), x, atol=1e-5, rtol=0)
    # the teacher itself does not fit the straight pairs: its paths bend
    assert fewstep.reflow_loss(fewstep.gaussian_velocity(MU, S), (z, x), generator=g).item() > 1e-3


# ---------------------------------------------------------------------------------------------
# The losses on hand-computed cases


def test_losses_of_a_constant_model():
    z = torch.tensor([1.0, -2.0]).view(2, 1, 1, 1)
    x = torch.tensor([0.5, 0.5]).view(2, 1, 1, 1)

    def const(xt, t, cond=None):
        return torch.full_like(xt, 0.25)

    # u = z - x = (0.5, -2.5): ((0.25 - 0.5)^2 + (0.25 + 2.5)^2) / 2 = (0.0625 + 7.5625) / 2
    assert fewstep.reflow_loss(const, (z, x), generator=torch.Generator().manual_seed(1)).item() == pytest.approx(
        3.8125
    )
    # x_hat = z - 0.25 = (0.75, -2.25): ((0.25)^2 + (2.75)^2) / 2
    assert fewstep.distillation_loss(const, (z, x)).item() == pytest.approx(3.8125)


def test_distillation_is_reflow_at_t_1_and_the_label_reaches_the_model():
    z, x, labels = _z(3), _z(3, seed=1), torch.tensor([4, 7, 1])
    seen = {}

    def model(xt, t, cond=None):
        seen["t"], seen["cond"] = t, cond
        return 0.3 * xt + t.view(-1, 1, 1, 1) * cond.view(-1, 1, 1, 1).float() / 10

    a = fewstep.reflow_loss(model, (z, labels, x), generator=torch.Generator().manual_seed(0), p_one=1.0)
    torch.testing.assert_close(seen["t"], torch.ones(3))
    assert seen["cond"].tolist() == [4, 7, 1]
    torch.testing.assert_close(a, fewstep.distillation_loss(model, (z, labels, x)))
    with pytest.raises(BadRequest, match="pairs"):
        fewstep.reflow_loss(model, z)


def test_reflow_times():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(fewstep.reflow_times(50, p_one=1.0, generator=g), torch.ones(50))
    t = fewstep.reflow_times(4000, p_one=0.5, generator=g)
    assert 0.45 < (t == 1).float().mean() < 0.55 and t.min() >= 0
    t = fewstep.reflow_times(4000, generator=g)
    assert (t < 1).all() and 0.45 < t.mean() < 0.55
    with pytest.raises(BadRequest, match="p_one"):
        fewstep.reflow_times(3, p_one=1.5)


# ---------------------------------------------------------------------------------------------
# Counting network evaluations


def test_each_step_is_one_evaluation_and_guidance_doubles_it():
    z = _z(6)
    for steps in (1, 2, 4):
        counted = fewstep.CountEvaluations(fewstep.gaussian_reflow_velocity(MU, S))
        fewstep.sample(counted, z, steps)
        assert counted.nfe(6) == steps
    counted = fewstep.CountEvaluations(fewstep.gaussian_velocity(MU, S))
    fewstep.sample(guidance.cfg(counted, 3.0), z, 2, cond=torch.arange(6))
    assert counted.nfe(6) == 4  # conditional and unconditional pass at each of 2 steps
    with pytest.raises(BadRequest, match="steps"):
        fewstep.sample(counted, z, 0)


# ---------------------------------------------------------------------------------------------
# Pairs: per-image noise, the cache, resuming


class _Teacher(torch.nn.Module):
    """The Gaussian teacher as a module that counts its calls and can be told to fail at call k."""

    def __init__(self, fail_at: int | None = None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.calls, self.fail_at = 0, fail_at
        self.v = fewstep.gaussian_velocity(MU, S)

    def forward(self, x, t, cond=None):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise KeyboardInterrupt("interrupted")
        return self.v(x, t) + 0 * self.w


def test_pairs_are_the_teacher_map_of_per_image_noise():
    z, labels, x = fewstep.make_pairs(_Teacher(), 5, steps=200, seed=3, chunk=2, progress=False)
    torch.testing.assert_close(z, PerSample.from_seed(3, 5).randn((5, 1, 28, 28)))
    assert labels.tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(x, fewstep.gaussian_ode_map(z, MU, S), atol=2e-2, rtol=0)
    again = fewstep.make_pairs(_Teacher(), 5, steps=3, seed=3, chunk=5, progress=False)
    other = fewstep.make_pairs(_Teacher(), 5, steps=3, seed=3, chunk=2, progress=False)
    for a, b in zip(again, other):  # image i depends on (seed, i) alone, not on the chunk
        torch.testing.assert_close(a, b)


def test_the_pair_cache_resumes_after_an_interruption(tmp_path):
    folder = tmp_path / "pairs"
    whole = fewstep.make_pairs(_Teacher(), 7, steps=3, seed=1, chunk=2, progress=False)
    broken = _Teacher(fail_at=3 * 2 + 2)  # 3 calls per chunk: dies inside the third chunk
    with pytest.raises(KeyboardInterrupt):
        fewstep.make_pairs(broken, 7, steps=3, seed=1, chunk=2, folder=folder, settings=dict(w=3), progress=False)
    assert sorted(p.name for p in folder.glob("*.safetensors")) == [
        "chunk_00000.safetensors",
        "chunk_00001.safetensors",
    ]
    assert not list(folder.glob("*.tmp")) and not (folder / ".lock").exists()
    teacher = _Teacher()
    resumed = fewstep.make_pairs(
        teacher, 7, steps=3, seed=1, chunk=2, folder=folder, settings=dict(w=3), progress=False
    )
    assert teacher.calls == 2 * 3  # only chunks 2 and 3 were made
    for a, b in zip(whole, resumed):
        torch.testing.assert_close(a, b)
    cached = _Teacher()
    fewstep.make_pairs(cached, 7, steps=3, seed=1, chunk=2, folder=folder, settings=dict(w=3), progress=False)
    assert cached.calls == 0
    _, record = checkpoints.load_checkpoint(folder / "chunk_00003.safetensors")
    assert record["settings"] == dict(w=3, steps=3, seed=1) and record["count"] == 1
    with pytest.raises(BadRequest, match="other settings"):
        fewstep.make_pairs(_Teacher(), 7, steps=3, seed=1, chunk=2, folder=folder, settings=dict(w=2), progress=False)


def test_weights_digest_names_the_weights():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert fewstep.weights_digest(a) != fewstep.weights_digest(b)
    b.load_state_dict(a.state_dict())
    assert fewstep.weights_digest(a) == fewstep.weights_digest(b) and len(fewstep.weights_digest(a)) == 16


# ---------------------------------------------------------------------------------------------
# The registered student


def test_the_student_recipe_names_its_teacher_and_takes_no_other_guidance():
    r = pretrained.recipe("mnist-fewstep")
    teacher = pretrained.recipe(r.extra["teacher"])
    assert teacher.unet == r.unet and teacher.p_uncond > 0 and r.p_uncond == 0
    assert pretrained.distilled_guidance(r) == 3.0 and pretrained.distilled_guidance(teacher) is None
    assert r.prediction == "velocity" and r.lr_schedule == "constant"  # so a longer run resumes a shorter one
    model = fewstep.CountEvaluations(fewstep.gaussian_reflow_velocity(MU, S))
    model.w = torch.nn.Parameter(torch.zeros(()))  # generate reads the device from the parameters
    pretrained.generate(model, r, 3, steps=2, seed=0)
    assert model.nfe(3) == 2  # no guidance pass
    with pytest.raises(BadRequest, match="distilled in"):
        pretrained.generate(model, r, 3, steps=2, guidance_scale=2.0)


def _shipped() -> bool:
    return mnist_available() and pretrained.checkpoint_path("mnist-fewstep").is_file()


@pytest.mark.skipif(not _shipped(), reason="mnist-fewstep is not shipped here")
def test_the_shipped_student_draws_digits_in_one_and_two_steps():
    r = pretrained.recipe("mnist-fewstep")
    record = pretrained.record("mnist-fewstep")
    assert record["sha256"] == r.sha256 and not record["fast"] and record["epochs"] == r.epochs
    model = pretrained.load("mnist-fewstep", device=torch.device("cpu"))  # checked against the registry's SHA-256
    n = 200
    for steps, min_accuracy in ((1, 0.85), (2, 0.93)):
        x = pretrained.generate(model, r, n, steps=steps, seed=0)
        report = metrics.digit_quality(x, pretrained.balanced_labels(n))
        assert report["accuracy"] >= min_accuracy and report["confident"] >= 0.7, metrics.format_quality(report)
