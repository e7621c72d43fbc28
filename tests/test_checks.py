"""Every exercise checker passes the right answer and fails the typical wrong ones, saying why."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils import checks


def _raises(*args):
    raise RuntimeError("shapes do not match")


def _stub(*args):
    raise NotImplementedError("exercise: write the body")


# --- right answers, written the way a student would -----------------------------------------


def forward_noise(x0, alpha_bar, eps):
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def denoising_loss(model, x0, sigma, eps):
    return F.mse_loss(model(x0 + sigma * eps), x0)


def _x0_hat(x_t, eps_hat, ab_t):
    return (x_t - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()


def ddpm_step(x_t, eps_hat, ab_t, ab_s, z):
    alpha, x0_hat = ab_t / ab_s, _x0_hat(x_t, eps_hat, ab_t)
    beta = 1 - alpha
    mean = ab_s.sqrt() * beta / (1 - ab_t) * x0_hat + alpha.sqrt() * (1 - ab_s) / (1 - ab_t) * x_t
    return mean + (beta * (1 - ab_s) / (1 - ab_t)).sqrt() * z


def flow_pair(x0, eps, t):
    return (1 - t) * x0 + t * eps, eps - x0


def cfg(out_uncond, out_cond, w):
    return out_uncond + w * (out_cond - out_uncond)


def ddim_step(x_t, eps_hat, ab_t, ab_s, eta, z):
    c = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
    return ab_s.sqrt() * _x0_hat(x_t, eps_hat, ab_t) + (1 - ab_s - c**2).sqrt() * eps_hat + c * z


def inpaint(x, x_known, mask, ab, eps):
    return mask * (ab.sqrt() * x_known + (1 - ab).sqrt() * eps) + (1 - mask) * x


def temperature(rgb):
    return float(np.clip(0.5 + np.mean(rgb[..., 0] - rgb[..., 2]), 0.0, 1.0))


# --- the typical mistakes --------------------------------------------------------------------

WRONG = {
    "forward_noising": {
        "sqrt forgotten": lambda x0, ab, eps: ab * x0 + (1 - ab) * eps,
        "sign flipped": lambda x0, ab, eps: ab.sqrt() * x0 - (1 - ab).sqrt() * eps,
        "coefficients swapped": lambda x0, ab, eps: (1 - ab).sqrt() * x0 + ab.sqrt() * eps,
        "batch dimension dropped": lambda x0, ab, eps: forward_noise(x0, ab, eps)[0],
        "raises": _raises,
    },
    "denoising_loss": {
        "noise as target": lambda m, x0, s, eps: F.mse_loss(m(x0 + s * eps), eps),
        "sigma squared": lambda m, x0, s, eps: F.mse_loss(m(x0 + s**2 * eps), x0),
        "sum, not mean": lambda m, x0, s, eps: ((m(x0 + s * eps) - x0) ** 2).sum(),
        "no noise": lambda m, x0, s, eps: F.mse_loss(m(x0), x0),
        "per-image losses": lambda m, x0, s, eps: ((m(x0 + s * eps) - x0) ** 2).mean(dim=(1, 2, 3)),
        "raises": _raises,
    },
    "ddpm_step": {
        "no noise added": lambda x_t, e, a, b, z: ddpm_step(x_t, e, a, b, 0 * z),
        "sqrt forgotten on the noise": lambda x_t, e, a, b, z: (
            ddpm_step(x_t, e, a, b, 0 * z) + ((1 - a / b) * (1 - b) / (1 - a)) * z
        ),
        "sign of eps flipped": lambda x_t, e, a, b, z: ddpm_step(x_t, -e, a, b, z),
        "DDIM instead": lambda x_t, e, a, b, z: ddim_step(x_t, e, a, b, 0.0, z),
        "one image only": lambda x_t, e, a, b, z: ddpm_step(x_t, e, a, b, z)[:1],
        "raises": _raises,
    },
    "flow_matching": {
        "velocity sign flipped": lambda x0, eps, t: ((1 - t) * x0 + t * eps, x0 - eps),
        "time reversed": lambda x0, eps, t: (t * x0 + (1 - t) * eps, eps - x0),
        "variance-preserving path": lambda x0, eps, t: ((1 - t).sqrt() * x0 + t.sqrt() * eps, eps - x0),
        "only the target": lambda x0, eps, t: eps - x0,
        "target of the wrong shape": lambda x0, eps, t: ((1 - t) * x0 + t * eps, (eps - x0)[0]),
        "raises": _raises,
    },
    "cfg": {
        "roles swapped": lambda u, c, w: c + w * (u - c),
        "unconditional part forgotten": lambda u, c, w: w * (c - u),
        "scale applied to the condition only": lambda u, c, w: u + w * c,
        "sign flipped": lambda u, c, w: u - w * (c - u),
        "summed over channels": lambda u, c, w: cfg(u, c, w).sum(dim=1),
        "raises": _raises,
    },
    "ddim_step": {
        "eta ignored": lambda x_t, e, a, b, eta, z: ddim_step(x_t, e, a, b, 0.0, z),
        "c not removed from the eps term": lambda x_t, e, a, b, eta, z: (
            ddim_step(x_t, e, a, b, 0.0, z) + eta * ((1 - b) / (1 - a) * (1 - a / b)).sqrt() * z
        ),
        "sqrt forgotten on abar_s": lambda x_t, e, a, b, eta, z: b * _x0_hat(x_t, e, a) + (1 - b).sqrt() * e,
        "sign of the noise flipped": lambda x_t, e, a, b, eta, z: ddim_step(x_t, e, a, b, eta, -z),
        "flattened": lambda x_t, e, a, b, eta, z: ddim_step(x_t, e, a, b, eta, z).flatten(1),
        "raises": _raises,
    },
    "inpainting_step": {
        "mask inverted": lambda x, xk, m, ab, eps: inpaint(x, xk, 1 - m, ab, eps),
        "known pixels not noised": lambda x, xk, m, ab, eps: m * xk + (1 - m) * x,
        "sqrt forgotten": lambda x, xk, m, ab, eps: m * (ab * xk + (1 - ab) * eps) + (1 - m) * x,
        "noise sign flipped": lambda x, xk, m, ab, eps: inpaint(x, xk, m, ab, -eps),
        "mask channel kept apart": lambda x, xk, m, ab, eps: inpaint(x, xk, m, ab, eps)[:, :1],
        "raises": _raises,
    },
    "feature": {
        "no clipping": lambda rgb: 0.5 + np.mean(rgb[..., 0] - rgb[..., 2]),
        "red and blue swapped": lambda rgb: temperature(rgb[..., ::-1]),
        "green instead of blue": lambda rgb: float(np.clip(0.5 + np.mean(rgb[..., 0] - rgb[..., 1]), 0, 1)),
        "returns a list": lambda rgb: [temperature(rgb)] * 2,
        "raises": _raises,
    },
}

RIGHT = {
    "forward_noising": forward_noise,
    "denoising_loss": denoising_loss,
    "ddpm_step": ddpm_step,
    "flow_matching": flow_pair,
    "cfg": cfg,
    "ddim_step": ddim_step,
    "inpainting_step": inpaint,
    "feature": temperature,
}


def _checker(name):
    return getattr(checks, f"check_{name}")


@pytest.mark.parametrize("name", sorted(RIGHT))
def test_checker_passes_the_right_answer(name, capsys):
    result = _checker(name)(RIGHT[name])
    out = capsys.readouterr().out
    assert result and result.passed and result.failed_case is None, result.message
    assert out.startswith("PASS: ") and result.cases >= 7


@pytest.mark.parametrize("name,mistake", [(n, m) for n in sorted(WRONG) for m in WRONG[n]])
def test_checker_fails_a_typical_mistake(name, mistake, capsys):
    result = _checker(name)(WRONG[name][mistake])
    out = capsys.readouterr().out
    assert not result and out.startswith("FAIL: ")
    assert result.failed_case >= 1 and "case" in out and "hint:" in out
    if mistake == "raises":
        assert "raised RuntimeError: shapes do not match" in out


def test_the_verdict_names_the_difference(capsys):
    checks.check_forward_noising(WRONG["forward_noising"]["batch dimension dropped"])
    assert "expected shape (1, 1, 4, 4), got (1, 4, 4)" in capsys.readouterr().out
    checks.check_forward_noising(WRONG["forward_noising"]["sqrt forgotten"])
    out = capsys.readouterr().out
    assert "max abs error" in out and "expected" in out and "got" in out and "x0 (1, 1, 4, 4)" in out
    checks.check_forward_noising(lambda x0, ab, eps: None)
    assert "returned None" in capsys.readouterr().out
    checks.check_forward_noising(lambda x0, ab, eps: forward_noise(x0, ab, eps) * float("nan"))
    assert "NaN" in capsys.readouterr().out


def test_a_stub_is_reported_as_not_done(capsys):
    result = checks.check_cfg(_stub)
    assert not result and capsys.readouterr().out.startswith("NOT DONE: classifier-free guidance")


def test_quiet_checks_and_other_inputs(capsys):
    assert checks.check_cfg(cfg, verbose=False).passed and capsys.readouterr().out == ""
    assert not checks.check_cfg("not a function", verbose=False)
    # numpy answers and in-place edits of the inputs are both fine
    assert checks.check_cfg(lambda u, c, w: (u + w * (c - u)).numpy(), verbose=False)
    assert checks.check_cfg(lambda u, c, w: u.add_(w * (c - u)), verbose=False)


def test_check_feature_for_another_feature_and_unknown_names():
    from course_utils import features

    k = features.index("circularity")
    # the course's extractor is switched off while the check runs: calling it is not an answer
    result = checks.check_feature(lambda rgb: features.extract_features(rgb)[k], "circularity", verbose=False)
    assert not result and "switched off while the check runs" in result.message
    assert not checks.check_feature(temperature, "circularity", verbose=False)
    with pytest.raises(ValueError, match="unknown feature"):
        checks.check_feature(temperature, "warmth")


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name in sorted(RIGHT):
        _checker(name)(RIGHT[name], verbose=False)
    torch.testing.assert_close(torch.rand(3), expected)


def test_the_course_version_is_switched_off_during_its_check():
    from course_utils import samplers

    step = samplers.ddpm_step  # captured under another name before the check: still switched off

    def calls_the_course(x_t, eps_hat, abar_t, abar_s, z):
        return step(lambda x, t, c=None: eps_hat, x_t, 0.5, 0.4, None)

    result = checks.check_ddpm_step(calls_the_course, verbose=False)
    assert not result and "CourseVersionHidden" in result.message
    assert samplers.ddpm_step is step  # restored after the check


def test_going_on_with_the_course_version_counts_as_not_done():
    version = checks.course_version("ddpm_step")
    result = checks.check_ddpm_step(version, verbose=False)
    assert result.status == "not done" and "course's version" in result.message
    assert checks.check_ddpm_step(lambda *a: version(*a), verbose=False).status == "passed"
    with pytest.raises(KeyError, match="no exercise function"):
        checks.course_version("no_such_function")


def test_checks_raise_under_nbgrader(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(checks.ExerciseFailed, match="NOT DONE"):
        checks.check_cfg(_stub, verbose=False)
    assert checks.check_cfg(cfg, verbose=False)  # a pass raises nothing


def test_switching_off_an_inherited_method_leaves_the_class_as_it_was():
    from course_utils import schedules

    assert "add_noise" not in vars(schedules.DiscreteSchedule)  # inherited from Schedule
    with checks.course_hidden(["schedules.DiscreteSchedule.add_noise"]):
        with pytest.raises(checks.CourseVersionHidden):
            schedules.linear_schedule(10).add_noise(torch.zeros(1), 0.5, torch.zeros(1))
    assert "add_noise" not in vars(schedules.DiscreteSchedule)
    assert schedules.DiscreteSchedule.add_noise is schedules.Schedule.add_noise
