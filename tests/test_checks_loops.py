"""The checkers of the loops and training steps pass the right answer and fail the typical wrong ones."""

import pytest
import torch
import torch.nn.functional as F

from course_utils import checks

# --- right answers, written the way a student would (the notebooks' solutions) ----------------


def ddpm_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s, z):
    x0_hat = (x_t - (1 - alpha_bar_t).sqrt() * eps_hat) / alpha_bar_t.sqrt()
    beta = 1 - alpha_bar_t / alpha_bar_s
    mean = (
        alpha_bar_s.sqrt() * beta / (1 - alpha_bar_t) * x0_hat
        + (1 - beta).sqrt() * (1 - alpha_bar_s) / (1 - alpha_bar_t) * x_t
    )
    return mean + ((1 - alpha_bar_s) / (1 - alpha_bar_t) * beta).sqrt() * z


def clipped(x, eps_hat, ab_t):
    x0_hat = ((x - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()).clamp(-1, 1)
    return (x - ab_t.sqrt() * x0_hat) / (1 - ab_t).sqrt()


def denoise_iteratively(model, x, ts, schedule, generator):
    states = [x]
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(s)
        eps_hat = clipped(x, model(x, torch.full((x.shape[0],), t)), ab_t)
        z = torch.randn(x.shape, generator=generator)
        x = ddpm_step(x, eps_hat, ab_t, ab_s, z)
        states.append(x)
    return states


def ddpm_beta_variance(model, x, ts, schedule, generator):
    """Ho et al.'s other choice, sigma^2 = beta, with no noise on the step to t = 0."""
    states = [x]
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(s)
        eps_hat = clipped(x, model(x, torch.full((x.shape[0],), t)), ab_t)
        z = torch.randn(x.shape, generator=generator)
        mean = ddpm_step(x, eps_hat, ab_t, ab_s, 0 * z)
        x = mean + ((1 - ab_t / ab_s).sqrt() * z if s > 0 else 0)
        states.append(x)
    return states


def unet_forward(net, x):
    e1 = net.enc1(x)
    e2 = net.enc2(e1)
    e3 = net.enc3(e2)
    u0 = net.unflatten(net.flatten(e3))
    u1 = net.dec1(torch.cat([e3, u0], dim=1))
    u2 = net.dec2(torch.cat([e2, u1], dim=1))
    return net.out(net.dec3(torch.cat([e1, u2], dim=1)))


def train_step(model, optimizer, z, x0):
    loss = F.mse_loss(model(z), x0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def flow_matching_pair(x0, eps, t):
    return (1 - t) * x0 + t * eps, eps - x0


def flow_matching_loss(model, x0, generator):
    t = torch.rand(x0.shape[0], generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    xt, u = flow_matching_pair(x0, eps, t[:, None, None, None])
    return F.mse_loss(model(xt, t), u)


def cfg_flow_matching_loss(model, x0, labels, p_uncond, generator):
    drop = torch.rand(x0.shape[0], generator=generator) < p_uncond
    labels = torch.where(drop, torch.full_like(labels, -1), labels)
    t = torch.rand(x0.shape[0], generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    xt, u = flow_matching_pair(x0, eps, t[:, None, None, None])
    return F.mse_loss(model(xt, t, labels), u)


def euler_sample(model, x, ts):
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        x = x + (s - t) * model(x, torch.full((x.shape[0],), t))
    return x


def cfg_combine(out_uncond, out_cond, w):
    return out_uncond + w * (out_cond - out_uncond)


def cfg_euler_sample(model, x, labels, w, ts):
    for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
        tt = torch.full((x.shape[0],), t)
        u_cond = model(x, tt, labels)
        u_uncond = model(x, tt, torch.full_like(labels, -1))
        x = x + (s - t) * cfg_combine(u_uncond, u_cond, w)
    return x


# --- the typical mistakes --------------------------------------------------------------------


def _ddpm_loop(*, at_s=False, one_z=False, no_noise=False, skip_last=False, steps_as_ints=False, clip=True):
    def loop(model, x, ts, schedule, generator):
        states, z_once = [x], None
        pairs = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
        for t, s in pairs[:-1] if skip_last else pairs:
            time = s if at_s else t
            eps_hat = model(x, torch.full((x.shape[0],), time * 1000 if steps_as_ints else time))
            if clip:
                eps_hat = clipped(x, eps_hat, schedule.alpha_bar(t))
            z = z_once if (one_z and z_once is not None) else torch.randn(x.shape, generator=generator)
            z_once = z
            x = ddpm_step(x, eps_hat, schedule.alpha_bar(t), schedule.alpha_bar(s), 0 * z if no_noise else z)
            states.append(x)
        return states

    return loop


def _unet(*, decoder_first=False, no_bottleneck=False, no_last_skip=False):
    def forward(net, x):
        join = (
            (lambda enc, dec: torch.cat([dec, enc], dim=1))
            if decoder_first
            else (lambda enc, dec: torch.cat([enc, dec], dim=1))
        )
        e1 = net.enc1(x)
        e2 = net.enc2(e1)
        e3 = net.enc3(e2)
        u0 = e3 if no_bottleneck else net.unflatten(net.flatten(e3))
        u1 = net.dec1(join(e3, u0))
        u2 = net.dec2(join(e2, u1))
        return net.out(net.dec3(u2 if no_last_skip else join(e1, u2)))

    return forward


def _train(*, zero_grad=True, target_z=False, reduce="mean", step_first=False):
    def step(model, optimizer, z, x0):
        out = model(z)
        loss = ((out - (z if target_z else x0)) ** 2).mean() if reduce == "mean" else ((out - x0) ** 2).sum()
        if zero_grad:
            optimizer.zero_grad()
        if step_first:
            optimizer.step()
            loss.backward()
        else:
            loss.backward()
            optimizer.step()
        return loss.item()

    return step


def _fm_loss(*, sign=1, swapped_path=False, eps_first=False, reduce="mean", normal_t=False):
    def loss(model, x0, generator):
        if eps_first:
            eps = torch.randn(x0.shape, generator=generator)
            t = torch.rand(x0.shape[0], generator=generator)
        else:
            t = (torch.randn if normal_t else torch.rand)(x0.shape[0], generator=generator)
            eps = torch.randn(x0.shape, generator=generator)
        tb = t[:, None, None, None]
        xt = tb * x0 + (1 - tb) * eps if swapped_path else (1 - tb) * x0 + tb * eps
        err = (model(xt, t) - sign * (eps - x0)) ** 2
        return err.mean() if reduce == "mean" else err.sum()

    return loss


def _cfg_loss(*, inverted=False, null=-1, no_drop=False):
    def loss(model, x0, labels, p_uncond, generator):
        u = torch.rand(x0.shape[0], generator=generator)
        drop = (u > p_uncond) if inverted else (u < p_uncond)
        if not no_drop:
            labels = torch.where(drop, torch.full_like(labels, null), labels)
        t = torch.rand(x0.shape[0], generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        xt, target = flow_matching_pair(x0, eps, t[:, None, None, None])
        return F.mse_loss(model(xt, t, labels), target)

    return loss


def _euler(*, sign=1, at_s=False, skip_last=False, float_time=False):
    def loop(model, x, ts):
        pairs = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
        for t, s in pairs[:-1] if skip_last else pairs:
            time = s if at_s else t
            tt = torch.tensor(time) if float_time else torch.full((x.shape[0],), time)
            x = x + sign * (s - t) * model(x, tt if not float_time else time)
        return x

    return loop


def _cfg_euler(*, swapped=False, at_s=False, w_plus_one=False):
    def loop(model, x, labels, w, ts):
        for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
            tt = torch.full((x.shape[0],), s if at_s else t)
            u_cond, u_uncond = model(x, tt, labels), model(x, tt, torch.full_like(labels, -1))
            if swapped:
                u_cond, u_uncond = u_uncond, u_cond
            scale = w + 1 if w_plus_one else w
            x = x + (s - t) * cfg_combine(u_uncond, u_cond, scale)
        return x

    return loop


# name: (checker, right answer, course version's name, {mistake: (wrong answer, text the verdict shows)})
CASES = {
    "ddpm_loop": (
        checks.check_ddpm_loop,
        denoise_iteratively,
        "denoise_iteratively",
        {
            "model called at s": (_ddpm_loop(at_s=True), "it looks like the model is called at s"),
            "one z for every step": (_ddpm_loop(one_z=True), "it looks like one z is drawn once"),
            "no noise": (_ddpm_loop(no_noise=True), "it looks like no noise is added"),
            "last step skipped": (_ddpm_loop(skip_last=True), "it looks like the last step is missing"),
            "integer steps to the model": (
                _ddpm_loop(steps_as_ints=True),
                "it looks like the model gets DDPM's integer step",
            ),
            "only the final image": (lambda *a: denoise_iteratively(*a)[-1], "expected a list of"),
            "x0_hat not clipped": (_ddpm_loop(clip=False), "it looks like x0_hat is not clipped"),
        },
    ),
    "unet_forward": (
        checks.check_unet_forward,
        unet_forward,
        "unet_forward",
        {
            "decoder map first in the skips": (_unet(decoder_first=True), "it looks like the decoder map comes first"),
            "bottleneck skipped": (_unet(no_bottleneck=True), "it looks like the bottleneck is skipped"),
            "last skip forgotten": (_unet(no_last_skip=True), "raised RuntimeError"),
        },
    ),
    "train_step": (
        checks.check_train_step,
        train_step,
        "train_step",
        {
            "zero_grad forgotten": (_train(zero_grad=False), "it looks like optimizer.zero_grad() is missing"),
            "noisy input as target": (_train(target_z=True), "it looks like the target is the noisy z"),
            "sum, not mean": (_train(reduce="sum"), "it looks like the loss is a sum"),
            "step before backward": (_train(step_first=True), "it looks like optimizer.step() comes before"),
        },
    ),
    "flow_matching_loss": (
        checks.check_flow_matching_loss,
        flow_matching_loss,
        "flow_matching_loss",
        {
            "velocity sign flipped": (_fm_loss(sign=-1), "it looks like the target is x0 - eps"),
            "time reversed on the path": (_fm_loss(swapped_path=True), "it looks like the path runs the other way"),
            "eps drawn before t": (_fm_loss(eps_first=True), "it looks like eps is drawn before t"),
            "sum, not mean": (_fm_loss(reduce="sum"), "it looks like the loss is a sum"),
            "normal t": (_fm_loss(normal_t=True), "it looks like t is drawn from a normal"),
        },
    ),
    "euler_loop": (
        checks.check_euler_loop,
        euler_sample,
        "euler_sample",
        {
            "step sign flipped": (_euler(sign=-1), "it looks like the step has the wrong sign"),
            "model called at s": (_euler(at_s=True), "it looks like the model is called at s"),
            "last step skipped": (_euler(skip_last=True), "it looks like the last step is missing"),
            "a float time": (_euler(float_time=True), "the model wants the time as a tensor of shape (B,)"),
        },
    ),
    "cfg_loss": (
        checks.check_cfg_loss,
        cfg_flow_matching_loss,
        "cfg_flow_matching_loss",
        {
            "keeps with probability p": (
                _cfg_loss(inverted=True),
                "it looks like labels are KEPT with probability p_uncond",
            ),
            "dropped labels become 0": (_cfg_loss(null=0), "it looks like dropped labels become 0"),
            "no dropout": (_cfg_loss(no_drop=True), "it looks like no label is dropped"),
        },
    ),
    "cfg_sampling": (
        checks.check_cfg_sampling,
        cfg_euler_sample,
        "cfg_euler_sample",
        {
            "cond and uncond swapped": (
                _cfg_euler(swapped=True),
                "it looks like the conditional and unconditional outputs are swapped",
            ),
            "model called at s": (_cfg_euler(at_s=True), "it looks like the model is called at s"),
            "the paper's 1 + w": (_cfg_euler(w_plus_one=True), "it looks like the scale is 1 + w"),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_right_answer_passes(name, capsys):
    checker, right, _, _ = CASES[name]
    result = checker(right)
    out = capsys.readouterr().out
    assert result.passed and out.startswith("PASS: "), out


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_course_version_passes_when_wrapped_and_is_not_done_as_itself(name):
    checker, _, version_name, _ = CASES[name]
    version = checks.course_version(version_name)
    assert checker(lambda *a: version(*a), verbose=False).passed
    result = checker(version, verbose=False)
    assert result.status == "not done" and "course's version" in result.message


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_stub_is_not_done(name):
    checker = CASES[name][0]

    def stub(*args):
        raise NotImplementedError()

    result = checker(stub, verbose=False)
    assert result.status == "not done" and result.message.startswith("NOT DONE")


@pytest.mark.parametrize("name,mistake", [(n, m) for n in sorted(CASES) for m in CASES[n][3]])
def test_a_typical_mistake_fails_with_its_hint(name, mistake, capsys):
    checker, _, _, wrong = CASES[name]
    fn, shown = wrong[mistake]
    result = checker(fn)
    out = capsys.readouterr().out
    assert result.status == "failed" and out.startswith("FAIL: "), out
    assert "case" in out and "hint:" in out and shown in out, out


def test_the_ddpm_loop_accepts_sigma_squared_beta_and_says_so():
    result = checks.check_ddpm_loop(ddpm_beta_variance, verbose=False)
    assert result.passed and "sigma^2 = beta" in result.message
    assert "the posterior variance" in checks.check_ddpm_loop(denoise_iteratively, verbose=False).message


def test_a_loop_that_calls_the_course_sampler_fails():
    from course_utils import guidance, samplers

    def calls_euler(model, x, ts):
        return samplers.euler(model, x, ts)

    def calls_cfg(model, x, labels, w, ts):
        return euler_sample(guidance.cfg(model, w), x, ts)

    def calls_ddpm(model, x, ts, schedule, generator):
        return samplers.ddpm(model, x, ts, schedule=schedule, generator=generator, return_trajectory=True)[1]

    for checker, fn in (
        (checks.check_euler_loop, calls_euler),
        (checks.check_cfg_sampling, calls_cfg),
        (checks.check_ddpm_loop, calls_ddpm),
    ):
        result = checker(fn, verbose=False)
        assert result.status == "failed" and "switched off while the check runs" in result.message
    assert samplers.euler.__name__ == "euler" and guidance.cfg.__name__ == "cfg"  # restored


def test_the_loss_checkers_switch_off_the_course_loss():
    from course_utils import losses

    result = checks.check_flow_matching_loss(
        lambda model, x0, generator: losses.flow_matching_loss(model, x0, generator=generator), verbose=False
    )
    assert result.status == "failed" and "CourseVersionHidden" in result.message


def test_loop_checks_leave_the_global_random_state_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    for checker, right, _, _ in CASES.values():
        checker(right, verbose=False)
    torch.testing.assert_close(torch.rand(3), expected)


def test_the_loop_checkers_raise_under_nbgrader(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(checks.ExerciseFailed, match="FAIL"):
        checks.check_euler_loop(_euler(sign=-1), verbose=False)
    assert checks.check_euler_loop(euler_sample, verbose=False)


def test_a_unet_forward_that_calls_the_model_fails():
    result = checks.check_unet_forward(lambda net, x: net(x), verbose=False)
    assert result.status == "failed" and "switched off while the check runs" in result.message
