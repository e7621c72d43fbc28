"""The text-to-image adapter on a tiny random Stable Diffusion pipeline (built from configs, offline).

The central check: the course's ``samplers.ddim`` (eta 0) through the adapter reproduces diffusers'
own StableDiffusionPipeline with its DDIMScheduler (SD 1.5 settings), with and without
classifier-free guidance, for an epsilon and a v-prediction model.
"""

import functools

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from course_utils import editing, guidance, predictions, samplers, text2image  # noqa: E402
from course_utils.conditions import null_condition  # noqa: E402

STEPS = 50
PROMPTS = ["a photo of a cat", "a dog"]


@functools.lru_cache(maxsize=None)
def tiny(prediction_type: str = "epsilon"):
    pipe = text2image.tiny_pipeline(prediction_type=prediction_type)
    return pipe, text2image.adapter(pipe)


def latents(batch: int = 2, seed: int = 0) -> torch.Tensor:
    pipe, _ = tiny()
    return torch.randn(text2image.latent_shape(pipe, batch), generator=torch.Generator().manual_seed(seed))


def test_schedule_and_grid_follow_diffusers():
    pipe, model = tiny()
    ts = text2image.ddim_times(pipe.scheduler, STEPS)
    steps = torch.round(ts * 1000).long()
    assert steps[:3].tolist() == [982, 962, 942] and steps[-3:].tolist() == [22, 2, 1]  # timesteps 981, ..., 1
    ac = pipe.scheduler.alphas_cumprod
    assert model.schedule.T == 1000 and model.schedule.alpha_bar(0.0).item() == 1.0
    torch.testing.assert_close(model.schedule.alpha_bar(ts[:-1]), ac[steps[:-1] - 1], rtol=1e-6, atol=0)
    torch.testing.assert_close(model.schedule.alpha_bar(ts[-1]), ac[0], rtol=1e-6, atol=0)  # set_alpha_to_one=False
    assert text2image.ddim_times(pipe.scheduler, STEPS, to_zero=True)[-1].item() == 0.0
    assert model.timesteps(ts[:2]).tolist() == [981.0, 961.0]
    assert model.prediction == "eps" and tiny("v_prediction")[1].prediction == "v"


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("w", [1.0, 3.0])
def test_course_ddim_matches_the_diffusers_pipeline(prediction_type, w):
    pipe, model = tiny(prediction_type)
    emb = text2image.encode_prompts(pipe, PROMPTS)
    x_T = latents()
    ts = text2image.ddim_times(pipe.scheduler, STEPS)
    model_fn = model if w == 1.0 else guidance.cfg(model, w)
    ours = samplers.ddim(model_fn, x_T, ts, schedule=model.schedule, cond=emb, eta=0.0)
    theirs = pipe(
        prompt_embeds=emb,
        negative_prompt_embeds=model.null.expand(len(PROMPTS), -1, -1),
        latents=x_T.clone(),
        num_inference_steps=STEPS,
        guidance_scale=w,  # diffusers: w = 1 runs the conditional model alone, as cfg(model, 1) would
        eta=0.0,
        output_type="latent",
    ).images
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_no_condition_is_the_empty_prompt():
    pipe, model = tiny()
    emb = text2image.encode_prompts(pipe, PROMPTS)
    x, t = latents(), torch.full((2,), 0.5)
    out_none = model(x, t, None)
    torch.testing.assert_close(model(x, t, null_condition(emb)), out_none)  # NaN rows, as guidance.cfg passes them
    torch.testing.assert_close(model(x, t, model.null.expand(2, -1, -1)), out_none)
    mixed = torch.cat([null_condition(emb[:1]), emb[1:]])
    torch.testing.assert_close(model(x, t, mixed)[1], model(x, t, emb)[1])
    torch.testing.assert_close(model(x, t, mixed)[0], out_none[0])


def test_prompts_run_through_the_tokenizer_and_text_encoder():
    pipe, model = tiny()
    ids = pipe.tokenizer(PROMPTS, padding="max_length", max_length=pipe.tokenizer.model_max_length).input_ids
    assert all(row[0] == pipe.tokenizer.bos_token_id and pipe.tokenizer.eos_token_id in row for row in ids)
    assert len(set(ids[0])) > 3  # real letters, not unknown tokens
    emb = text2image.encode_prompts(pipe, PROMPTS)
    assert emb.shape == (2, pipe.tokenizer.model_max_length, pipe.text_encoder.config.hidden_size)
    assert not torch.allclose(emb[0], emb[1]) and not torch.allclose(emb[:1], model.null)
    torch.testing.assert_close(text2image.encode_prompts(pipe, "a dog"), emb[1:])


def test_learned_variance_channels_are_dropped():
    from diffusers import UNet2DConditionModel

    pipe, _ = tiny()
    unet = UNet2DConditionModel(**{**pipe.unet.config, "out_channels": 8}).eval()  # DeepFloyd IF: eps and variances
    fake = type("Pipe", (), {"unet": unet, "scheduler": pipe.scheduler, "tokenizer": pipe.tokenizer})()
    fake.text_encoder = pipe.text_encoder
    model = text2image.adapter(fake)
    x, t = latents(), torch.full((2,), 0.3)
    full = unet(x, model.timesteps(t).long(), encoder_hidden_states=model.null.expand(2, -1, -1)).sample
    torch.testing.assert_close(model(x, t), full[:, :4])


def test_edits_run_in_latent_space():
    pipe, model = tiny()
    cat, dog = text2image.encode_prompts(pipe, PROMPTS).split(1)
    ts = text2image.ddim_times(pipe.scheduler, 8, to_zero=True)
    ddim = functools.partial(samplers.ddim, schedule=model.schedule)
    gen = torch.Generator().manual_seed(1)
    guided = guidance.cfg(model, 3.0)
    x_T = latents(1)

    ana = samplers.ddim(editing.anagram(guided, cat, dog), x_T, ts, schedule=model.schedule)
    hyb = samplers.ddim(editing.hybrid(guided, cat, dog), x_T, ts, schedule=model.schedule)
    images = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    z0 = text2image.to_latent(pipe, images)
    edited = text2image.sdedit(guided, z0, ts, 4, schedule=model.schedule, sampler=ddim, cond=cat, generator=gen)
    known = torch.zeros(1, 1, 16, 16)
    known[..., :8] = 1
    filled = text2image.inpaint(guided, z0, known, ts, schedule=model.schedule, sampler=ddim, cond=cat, generator=gen)
    for z in (ana, hyb, edited, filled):
        assert z.shape == z0.shape == x_T.shape and torch.isfinite(z).all()
        assert text2image.to_image(pipe, z).shape == images.shape
    torch.testing.assert_close(filled[..., :8], z0[..., :8])  # known latents come back exactly
    assert torch.equal(text2image.sdedit(guided, z0, ts, len(ts) - 1, schedule=model.schedule, sampler=ddim), z0)


def test_euler_and_heun_through_the_flow_velocity():
    pipe, model = tiny()
    emb = text2image.encode_prompts(pipe, PROMPTS)
    velocity = predictions.as_flow_velocity(guidance.cfg(model, 2.0), model.schedule)
    assert velocity.prediction == "velocity"
    x_T = latents()
    for sampler in (samplers.euler, samplers.heun):
        z = sampler(velocity, x_T, torch.linspace(1, 0, 6), cond=emb)
        assert z.shape == x_T.shape and torch.isfinite(z).all()
    with pytest.raises(ValueError):
        samplers.euler(model, x_T, torch.linspace(1, 0, 3), cond=emb)  # an eps model is refused
