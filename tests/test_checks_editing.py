"""The checkers of notebooks 06-11: each passes the solution, fails realistic wrong answers with its
hint, and reports NOT DONE for a stub and for the course's own version."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils import checks, editing
from course_utils.checks import course_version

silu = torch.nn.functional.silu


def _stub(*args, **kwargs):
    raise NotImplementedError()


def _full(x, c):
    return torch.full((x.shape[0],), c, device=x.device)


# ---------------------------------------------------------------------------------------------
# Notebook 06


def ddim_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s, eta, z):
    x0_hat = (x_t - (1 - alpha_bar_t).sqrt() * eps_hat) / alpha_bar_t.sqrt()
    c = eta * ((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s)).sqrt()
    return alpha_bar_s.sqrt() * x0_hat + (1 - alpha_bar_s - c**2).clamp(min=0).sqrt() * eps_hat + c * z


def make_ddim_sample(*, swap=False, skip_last=False, model_at_s=False, float_t=False):
    def ddim_sample(model, x, ts, schedule, eta, generator):
        pairs = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
        for t, s in pairs[:-1] if skip_last else pairs:
            at = s if model_at_s else t
            eps_hat = model(x, at if float_t else torch.full((x.shape[0],), at))
            z = torch.randn(x.shape, generator=generator)
            abar_t, abar_s = schedule.alpha_bar(t), schedule.alpha_bar(s)
            if swap:
                abar_t, abar_s = abar_s, abar_t
            x = ddim_step(x, eps_hat, abar_t, abar_s, eta, z)
        return x

    return ddim_sample


def test_ddim_sample_passes_solution_and_course_step():
    assert checks.check_ddim_sample(make_ddim_sample(), verbose=False).passed
    # a student stuck on ddim_step goes on with the course's step: the loop still passes
    step = course_version("ddim_step")

    def with_course_step(model, x, ts, schedule, eta, generator):
        for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
            eps_hat = model(x, torch.full((x.shape[0],), t))
            z = torch.randn(x.shape, generator=generator)
            x = step(x, eps_hat, schedule.alpha_bar(t), schedule.alpha_bar(s), eta, z)
        return x

    assert checks.check_ddim_sample(with_course_step, verbose=False).passed


@pytest.mark.parametrize(
    "wrong, words",
    [
        (dict(swap=True), "earlier, noisier"),
        (dict(skip_last=True), "len(ts) - 1"),
        (dict(model_at_s=True), "current time t"),
        (dict(float_t=True), "(B,) tensor"),
    ],
)
def test_ddim_sample_fails_wrong_answers(wrong, words):
    result = checks.check_ddim_sample(make_ddim_sample(**wrong), verbose=False)
    assert result.status == "failed" and "hint:" in result.message
    assert words in result.message


def test_ddim_sample_not_done():
    assert checks.check_ddim_sample(_stub, verbose=False).status == "not done"
    assert checks.check_ddim_sample(course_version("ddim_sample"), verbose=False).status == "not done"


def make_heun_step(*, sign=False, no_half=False, d_next_at_t=False, from_x_next=False, always_correct=False):
    def heun_step(model, x, t, s, cond=None):
        h = (t - s) if sign else (s - t)
        d_cur = model(x, torch.full((x.shape[0],), t), cond)
        x_next = x + h * d_cur
        if s <= 0 and not always_correct:
            return x_next
        d_next = model(x_next, torch.full((x.shape[0],), t if d_next_at_t else s), cond)
        start = x_next if from_x_next else x
        return start + h * (d_cur + d_next) * (1.0 if no_half else 0.5)

    return heun_step


def test_heun_step_passes_solution_and_alternative():
    result = checks.check_heun_step(make_heun_step(), verbose=False)
    assert result.passed and "Karras" in result.message
    result = checks.check_heun_step(make_heun_step(always_correct=True), verbose=False)
    assert result.passed and "correction on the last step too" in result.message


@pytest.mark.parametrize(
    "wrong, words",
    [
        (dict(sign=True), "(s - t)"),
        (dict(no_half=True), "/ 2"),
        (dict(d_next_at_t=True), "at the new time"),
        (dict(from_x_next=True), "not from x_next"),
    ],
)
def test_heun_step_fails_wrong_answers(wrong, words):
    result = checks.check_heun_step(make_heun_step(**wrong), verbose=False)
    assert result.status == "failed" and words in result.message


def test_heun_step_not_done():
    assert checks.check_heun_step(_stub, verbose=False).status == "not done"
    assert checks.check_heun_step(course_version("heun_step"), verbose=False).status == "not done"


def test_heun_step_that_calls_the_course_fails():
    from course_utils import samplers

    result = checks.check_heun_step(
        lambda m, x, t, s, cond=None: samplers.heun_step(m, x, t, s, cond=cond), verbose=False
    )
    assert result.status == "failed" and "switched off" in result.message


# ---------------------------------------------------------------------------------------------
# Notebook 08


def make_sdedit(*, alpha_bar=False, start_late=False, whole_grid=False, no_noise=False):
    def sdedit(model, x_input, ts, i_start, schedule, sampler, cond, generator):
        t_start = ts[i_start].item()
        eps = torch.randn(x_input.shape, generator=generator)
        if alpha_bar:
            x = schedule.alpha_bar(t_start) * x_input + (1 - schedule.alpha_bar(t_start)) * eps
        else:
            x = schedule.alpha(t_start) * x_input + schedule.sigma(t_start) * eps
        if no_noise:
            x = x_input
        rest = ts if whole_grid else ts[i_start + 1 :] if start_late else ts[i_start:]
        return sampler(model, x, rest, cond=cond, generator=generator)

    return sdedit


def test_sdedit_passes_solution():
    assert checks.check_sdedit(make_sdedit(), verbose=False).passed


@pytest.mark.parametrize(
    "wrong", [dict(alpha_bar=True), dict(start_late=True), dict(whole_grid=True), dict(no_noise=True)]
)
def test_sdedit_fails_wrong_answers(wrong):
    result = checks.check_sdedit(make_sdedit(**wrong), verbose=False)
    assert result.status == "failed" and "alpha, not alpha_bar" in result.message


def test_sdedit_not_done():
    assert checks.check_sdedit(_stub, verbose=False).status == "not done"
    assert checks.check_sdedit(course_version("sdedit"), verbose=False).status == "not done"


def inpainting_step(x, x_known, mask, alpha_bar, eps):
    return mask * (alpha_bar.sqrt() * x_known + (1 - alpha_bar).sqrt() * eps) + (1 - mask) * x


def make_inpaint(*, at_t=False, skip_last=False, pure_start=False, eps_first=False):
    def inpaint(model, x_orig, known, ts, schedule, sampler, generator):
        if eps_first:
            eps = torch.randn(x_orig.shape, generator=generator)
            x = torch.randn(x_orig.shape, generator=generator)
        else:
            x = torch.randn(x_orig.shape, generator=generator)
            eps = None if pure_start else torch.randn(x_orig.shape, generator=generator)
        if eps is not None:
            x = inpainting_step(x, x_orig, known, schedule.alpha_bar(ts[0]), eps)
        pairs = list(zip(ts[:-1].tolist(), ts[1:].tolist()))
        for t, s in pairs[:-1] if skip_last else pairs:
            x = sampler(model, x, torch.tensor([t, s]), generator=generator)
            eps = torch.randn(x.shape, generator=generator)
            x = inpainting_step(x, x_orig, known, schedule.alpha_bar(t if at_t else s), eps)
        return x

    return inpaint


def test_inpaint_passes_solution_and_repaint_start():
    assert checks.check_inpaint(make_inpaint(), verbose=False).passed
    result = checks.check_inpaint(make_inpaint(pure_start=True), verbose=False)
    assert result.passed and "RePaint's x_T" in result.message


@pytest.mark.parametrize("wrong", [dict(at_t=True), dict(skip_last=True), dict(eps_first=True)])
def test_inpaint_fails_wrong_answers(wrong):
    result = checks.check_inpaint(make_inpaint(**wrong), verbose=False)
    assert result.status == "failed" and "NEW time s" in result.message


def test_inpaint_not_done():
    assert checks.check_inpaint(_stub, verbose=False).status == "not done"
    assert checks.check_inpaint(course_version("inpaint"), verbose=False).status == "not done"


def make_anagram(*, no_flip_back=False, total=False, swap=False, int_cond=False):
    def anagram(model, cond_a, cond_b, view):
        def anagram_model(x, t, cond=None):
            a, b = (cond_b, cond_a) if swap else (cond_a, cond_b)
            a, b = (a, b) if int_cond else (_full(x, a), _full(x, b))
            out_a = model(x, t, a)
            out_b = model(view(x), t, b)
            out_b = out_b if no_flip_back else view(out_b)
            return out_a + out_b if total else (out_a + out_b) / 2

        return anagram_model

    return anagram


def test_anagram_passes_solution():
    assert checks.check_anagram(make_anagram(), verbose=False).passed


@pytest.mark.parametrize(
    "wrong, words",
    [
        (dict(no_flip_back=True), "turned back"),
        (dict(total=True), "not the sum"),
        (dict(swap=True), "model(x, t, a)"),
        (dict(int_cond=True), "(B,) tensor"),
    ],
)
def test_anagram_fails_wrong_answers(wrong, words):
    result = checks.check_anagram(make_anagram(**wrong), verbose=False)
    assert result.status == "failed" and words in result.message


def test_anagram_not_done_and_course_hidden():
    assert checks.check_anagram(_stub, verbose=False).status == "not done"
    assert checks.check_anagram(course_version("anagram"), verbose=False).status == "not done"
    result = checks.check_anagram(lambda m, a, b, view: editing.anagram(m, a, b, view=view), verbose=False)
    assert result.status == "failed" and "switched off" in result.message
    result = checks.check_anagram(lambda m, a, b, view: lambda x, t, cond=None: x, verbose=False)
    assert result.status == "failed"


def make_hybrid(*, sign=False, swapped=False, average=False, no_highpass=False):
    def hybrid(model, cond_low, cond_high, sigma, ksize=None):
        def hybrid_model(x, t, cond=None):
            low_c, high_c = (cond_high, cond_low) if swapped else (cond_low, cond_high)
            low = model(x, t, _full(x, low_c))
            high = model(x, t, _full(x, high_c))
            blur = lambda y: editing.gaussian_lowpass(y, sigma, ksize)  # noqa: E731
            high_part = high if no_highpass else (blur(high) - high if sign else high - blur(high))
            out = blur(low) + high_part
            return out / 2 if average else out

        return hybrid_model

    return hybrid


def test_hybrid_passes_solution():
    assert checks.check_hybrid(make_hybrid(), verbose=False).passed


@pytest.mark.parametrize("wrong", [dict(sign=True), dict(swapped=True), dict(average=True), dict(no_highpass=True)])
def test_hybrid_fails_wrong_answers(wrong):
    result = checks.check_hybrid(make_hybrid(**wrong), verbose=False)
    assert result.status == "failed" and "high_out - blur(high_out)" in result.message


def test_hybrid_not_done_and_course_hidden():
    assert checks.check_hybrid(_stub, verbose=False).status == "not done"
    assert checks.check_hybrid(course_version("hybrid"), verbose=False).status == "not done"
    from course_utils import filters

    def with_course_highpass(model, cond_low, cond_high, sigma, ksize=None):
        def hybrid_model(x, t, cond=None):
            low, high = model(x, t, _full(x, cond_low)), model(x, t, _full(x, cond_high))
            return editing.gaussian_lowpass(low, sigma, ksize) + filters.highpass(high, sigma, ksize)

        return hybrid_model

    result = checks.check_hybrid(with_course_highpass, verbose=False)
    assert result.status == "failed" and "switched off" in result.message


# ---------------------------------------------------------------------------------------------
# Notebook 09


def make_temperature(*, swapped=False, no_clip=False, green=False):
    def temperature(rgb):
        r, b = rgb[..., 0], rgb[..., 1 if green else 2]
        value = 0.5 + np.mean(b - r if swapped else r - b)
        return float(value if no_clip else np.clip(value, 0.0, 1.0))

    return temperature


def test_temperature_passes_solution():
    assert checks.check_temperature(make_temperature(), verbose=False).passed


@pytest.mark.parametrize("wrong", [dict(swapped=True), dict(no_clip=True), dict(green=True)])
def test_temperature_fails_wrong_answers(wrong):
    result = checks.check_temperature(make_temperature(**wrong), verbose=False)
    assert result.status == "failed" and "clip(0.5 + mean(R - B), 0, 1)" in result.message


def test_temperature_not_done():
    assert checks.check_temperature(_stub, verbose=False).status == "not done"
    assert checks.check_temperature(course_version("temperature"), verbose=False).status == "not done"


def make_high_sat_ratio(*, chroma=False, total=False, no_value=False):
    def high_sat_ratio(rgb):
        v = rgb.max(axis=-1)
        c = v - rgb.min(axis=-1)
        s = c if chroma else np.where(v > 0, c / np.maximum(v, 1e-12), 0.0)
        vivid = (s > 0.5) if no_value else (s > 0.5) & (v > 0.2)
        return float(np.sum(vivid) if total else np.mean(vivid))

    return high_sat_ratio


def test_high_sat_ratio_passes_solution():
    assert checks.check_high_sat_ratio(make_high_sat_ratio(), verbose=False).passed

    def with_opencv(rgb):
        import cv2

        hsv = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2HSV)
        return float(np.mean((hsv[..., 1] > 0.5) & (hsv[..., 2] > 0.2)))

    assert checks.check_high_sat_ratio(with_opencv, verbose=False).passed


@pytest.mark.parametrize("wrong", [dict(chroma=True), dict(total=True), dict(no_value=True)])
def test_high_sat_ratio_fails_wrong_answers(wrong):
    result = checks.check_high_sat_ratio(make_high_sat_ratio(**wrong), verbose=False)
    assert result.status == "failed" and "S > 0.5 AND V > 0.2" in result.message


def test_high_sat_ratio_not_done():
    assert checks.check_high_sat_ratio(_stub, verbose=False).status == "not done"
    assert checks.check_high_sat_ratio(course_version("high_sat_ratio"), verbose=False).status == "not done"


# ---------------------------------------------------------------------------------------------
# Notebook 11


def make_resblock_forward(*, no_skip=False, identity_skip=False, no_silu_emb=False, emb_first=False):
    def resblock_forward(block, x, emb):
        e = block.emb(emb if no_silu_emb else silu(emb))[:, :, None, None]
        if emb_first:
            h = block.conv1(silu(block.norm1(x))) if x.shape[1] != e.shape[1] else block.conv1(silu(block.norm1(x + e)))
        else:
            h = block.conv1(silu(block.norm1(x))) + e
        h = block.conv2(block.dropout(silu(block.norm2(h))))
        if no_skip:
            return h
        return (x if identity_skip else block.skip(x)) + h

    return resblock_forward


def test_resblock_passes_solution():
    assert checks.check_resblock(make_resblock_forward(), verbose=False).passed


@pytest.mark.parametrize(
    "wrong", [dict(no_skip=True), dict(identity_skip=True), dict(no_silu_emb=True), dict(emb_first=True)]
)
def test_resblock_fails_wrong_answers(wrong):
    result = checks.check_resblock(make_resblock_forward(**wrong), verbose=False)
    assert result.status == "failed" and "block.skip(x) + h" in result.message


def test_resblock_not_done_and_course_hidden():
    assert checks.check_resblock(_stub, verbose=False).status == "not done"
    assert checks.check_resblock(course_version("resblock_forward"), verbose=False).status == "not done"
    result = checks.check_resblock(lambda block, x, emb: block(x, emb), verbose=False)
    assert result.status == "failed" and "switched off" in result.message


def test_course_versions_run_like_the_course():
    """The stuck student's line gives working functions with the exercises' signatures."""
    from course_utils import layers, schedules

    block = layers.ResBlock(4, 8, 6, groups=2).eval()
    x, emb = torch.randn(2, 4, 5, 5), torch.randn(2, 6)
    torch.testing.assert_close(course_version("resblock_forward")(block, x, emb), block(x, emb))
    rgb = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    assert 0 <= course_version("high_sat_ratio")(rgb) <= 1
    model = lambda x, t, cond=None: 0.1 * x  # noqa: E731
    out = course_version("ddim_sample")(
        model,
        torch.randn(1, 1, 4, 4),
        schedules.step_times(3, 1000),
        schedules.linear_schedule(1000),
        0.0,
        torch.Generator().manual_seed(0),
    )
    assert out.shape == (1, 1, 4, 4)


# -- notebook 10: the PCA code of patches --------------------------------------------------------------


def make_pca_code(*, smallest=False, uncentred=False, mean_over_rows=False, unnormalised=False):
    def pca_code(patches, C):
        mean = patches.mean(0 if mean_over_rows else 1)
        centred = patches if uncentred else patches - patches.mean(1, keepdim=True)
        values, vectors = torch.linalg.eigh(centred @ centred.T / centred.shape[1])
        basis = vectors[:, :C] if smallest else vectors[:, -C:]
        if unnormalised:
            basis = basis * values[-C:].sqrt()
        return mean, basis

    return pca_code


def test_pca_code_passes_solution_in_any_column_order_and_sign():
    assert checks.check_pca_code(make_pca_code(), verbose=False).passed

    def flipped(patches, C):
        mean, basis = make_pca_code()(patches, C)
        return mean, -basis.flip(1)

    assert checks.check_pca_code(flipped, verbose=False).passed


@pytest.mark.parametrize(
    "wrong, says",
    [
        (dict(smallest=True), "other directions"),
        (dict(uncentred=True), "other directions"),
        (dict(mean_over_rows=True), "mean: expected shape"),
        (dict(unnormalised=True), "not orthonormal"),
    ],
)
def test_pca_code_fails_wrong_answers(wrong, says):
    result = checks.check_pca_code(make_pca_code(**wrong), verbose=False)
    assert not result.passed and says in result.message and "LARGEST" in result.message


def test_pca_code_not_done_and_course_hidden():
    assert checks.check_pca_code(_stub, verbose=False).status == "not done"
    assert checks.check_pca_code(course_version("pca_code"), verbose=False).status == "not done"

    def calls_the_course(patches, C):
        from course_utils import autoencoder

        mean, basis, _ = autoencoder.pca_of(patches, C)
        return mean, basis

    result = checks.check_pca_code(calls_the_course, verbose=False)
    assert not result.passed and "switched off" in result.message
