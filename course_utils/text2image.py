"""A pretrained text-to-image model (a diffusers pipeline) as the course's ``model(x, t, cond)``.

The course's samplers, guidance and edits take any denoiser with one signature. This module wraps
a diffusers ``UNet2DConditionModel`` (Stable Diffusion 1.5, DeepFloyd IF) so they run on it:

- **time**: the course's t in [0, 1] (0 data, 1 noise) and its :class:`~course_utils.schedules.
  DiscreteSchedule` built from the scheduler's ``alphas_cumprod`` with a leading 1 for clean data:
  ``alpha_bars = [1, alphas_cumprod[0], ..., alphas_cumprod[T - 1]]``. Course step i = t * T is
  therefore the pipeline's timestep i - 1 (both have noise level alphas_cumprod[i - 1]);
- **condition**: ``cond`` is a batch of text embeddings (B, L, D) from :func:`encode_prompts`;
  "no condition" (None, or a row of NaN as :func:`course_utils.conditions.null_condition` makes
  it) is the empty prompt's embedding, so :func:`course_utils.guidance.cfg` works unchanged;
- **prediction**: ``scheduler.config.prediction_type`` ("epsilon" -> "eps", "v_prediction" -> "v");
  DeepFloyd IF's UNet also outputs learned variances (2C channels): only the first C, the noise
  estimate, are kept.

For latent models (Stable Diffusion) the samplers run on VAE latents: :func:`to_latent` and
:func:`to_image` cross over with the VAE's scaling factor. Latents are not images in [-1, 1], so
:func:`sdedit` and :func:`inpaint` here are the loops of :mod:`course_utils.editing` without its
pixel-range check; the model wrappers (anagram, hybrid, guidance) are used as they are.

:func:`ddim_times` gives the grid on which ``samplers.ddim`` (eta 0) reproduces diffusers'
``DDIMScheduler`` step for step, its last step included (with ``set_alpha_to_one=False`` diffusers
ends at alpha_bar = alphas_cumprod[0], course step 1, not at clean data). The tests check the
match on a tiny random pipeline (:func:`tiny_pipeline`, built from configs, no downloads).

diffusers and transformers are imported inside the functions: ``import course_utils`` never needs
them (``pip install -e ".[t2i]"``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from . import editing, predictions
from .errors import BadRequest
from .noise import randn_like
from .schedules import DiscreteSchedule

PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


# ---------------------------------------------------------------------------------------------
# Schedule and time grid


def schedule_of(scheduler) -> DiscreteSchedule:
    """The course schedule of a diffusers scheduler: its ``alphas_cumprod`` after a leading 1."""
    alphas_cumprod = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float32)
    alpha_bars = torch.cat([torch.ones(1), alphas_cumprod])  # step 0 = clean data
    return DiscreteSchedule(name=f"{type(scheduler).__name__}(T={alphas_cumprod.numel()})", alpha_bars=alpha_bars)


def ddim_times(scheduler, steps: int, *, to_zero: bool = False) -> Tensor:
    """The course times of diffusers' DDIM timesteps for ``steps`` steps, plus the final time.

    Timestep k is course step k + 1, so SD 1.5's 981, 961, ..., 1 (steps_offset 1, 50 steps) become
    t = 0.982, 0.962, ..., 0.002. diffusers' last step goes to alpha_bar = alphas_cumprod[0]
    (course step 1, t = 1 / T) when ``set_alpha_to_one`` is False, to 1 (t = 0) when True.
    ``to_zero`` ends at t = 0 either way (what the edits need: they return clean latents).
    """
    from diffusers import DDIMScheduler

    ddim = DDIMScheduler.from_config(scheduler.config)
    ddim.set_timesteps(steps)
    T = ddim.config.num_train_timesteps
    final = 0 if to_zero or ddim.config.set_alpha_to_one else 1
    course_steps = [int(k) + 1 for k in ddim.timesteps] + [final]
    return torch.tensor(course_steps, dtype=torch.float32) / T


# ---------------------------------------------------------------------------------------------
# The adapter


class TextToImageModel:
    """``model(x, t, cond)`` over a diffusers UNet with text embeddings (see the module docstring).

    ``x`` (B, C, H, W) latents (or pixels for DeepFloyd IF), ``t`` (B,) in [0, 1], ``cond``
    (B, L, D) text embeddings, None or NaN rows for the empty prompt. Attributes: ``schedule``,
    ``prediction``, ``null`` (1, L, D), ``T``, ``pipe``.
    """

    def __init__(self, pipe, null: Tensor | None = None):
        self.pipe, self.unet = pipe, pipe.unet
        self.T = int(pipe.scheduler.config.num_train_timesteps)
        self.schedule = schedule_of(pipe.scheduler)
        kind = pipe.scheduler.config.prediction_type
        if kind not in PREDICTION_TYPES:
            raise BadRequest(f"unknown prediction type {kind!r}; known: {', '.join(PREDICTION_TYPES)}")
        predictions.with_prediction(self, PREDICTION_TYPES[kind])
        self.null = encode_prompts(pipe, [""]) if null is None else null  # (1, L, D)

    def timesteps(self, t: Tensor) -> Tensor:
        """The pipeline's timestep for course time t: t * T - 1 (course step i = timestep i - 1),
        snapped onto integers when t is i / T up to float32 rounding, clamped to [0, T - 1]."""
        pos = t.double() * self.T
        nearest = pos.round()
        pos = torch.where((pos - nearest).abs() < 1e-3, nearest, pos)
        return (pos - 1).clamp(0, self.T - 1)

    def condition(self, cond: Tensor | None, batch: int) -> Tensor:
        """Text embeddings (B, L, D) for the UNet: None -> the empty prompt, NaN rows -> the empty prompt."""
        null = self.null.to(self.unet.device, self.unet.dtype)
        if cond is None:
            return null.expand(batch, -1, -1)
        cond = cond.to(self.unet.device)
        if cond.dim() == 2:  # one embedding for the whole batch
            cond = cond.expand(batch, -1, -1)
        if cond.shape[0] != batch:
            raise BadRequest(f"text embeddings for {cond.shape[0]} images were given for a batch of {batch}")
        empty = torch.isnan(cond).reshape(batch, -1).all(dim=1)  # (B,)
        return torch.where(empty[:, None, None], null, torch.nan_to_num(cond).to(self.unet.dtype))

    @torch.no_grad()
    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float32).expand(x.shape[0])
        timesteps = self.timesteps(t).to(self.unet.device)
        timesteps = timesteps.long() if bool((timesteps == timesteps.round()).all()) else timesteps.float()
        emb = self.condition(cond, x.shape[0])
        out = self.unet(x.to(self.unet.device, self.unet.dtype), timesteps, encoder_hidden_states=emb).sample
        out = out[:, : x.shape[1]]  # DeepFloyd IF: noise estimate first, learned variances after
        return out.to(x.device, x.dtype)


def adapter(pipe) -> TextToImageModel:
    """The pipeline's UNet as the course's ``model(x, t, cond)`` (:class:`TextToImageModel`)."""
    return TextToImageModel(pipe)


# ---------------------------------------------------------------------------------------------
# Prompts, latents, images


@torch.no_grad()
def encode_prompts(pipe, prompts: Sequence[str] | str) -> Tensor:
    """Text embeddings (B, L, D) from the pipeline's own tokenizer and text encoder (padded to the
    tokenizer's maximum length, as the pipelines do; T5 encoders also get the attention mask)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    tokens = pipe.tokenizer(
        prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    device = pipe.text_encoder.device
    mask = None
    if getattr(pipe.text_encoder.config, "model_type", "") == "t5":
        mask = tokens.attention_mask.to(device)
    return pipe.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]  # (B, L, D)


@torch.no_grad()
def to_latent(pipe, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> VAE latents (B, 4, H / 8, W / 8) times the scaling factor.

    Takes the mean of the encoder's distribution (deterministic); ``generator`` draws from it instead.
    """
    vae = pipe.vae
    dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    z = dist.mean if generator is None else dist.mean + dist.std * randn_like(dist.mean, generator)
    return (z * vae.config.scaling_factor).float()


@torch.no_grad()
def to_image(pipe, latents: Tensor) -> Tensor:
    """VAE latents -> images (B, 3, H, W) in [-1, 1] (clipped)."""
    vae = pipe.vae
    x = vae.decode(latents.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample
    return x.float().clamp(-1, 1)


def latent_shape(pipe, batch: int = 1, size: int | None = None) -> tuple[int, int, int, int]:
    """(B, C, h, w) of the latents the UNet works on for ``size``-pixel images (default its native size)."""
    unet = pipe.unet
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1) if getattr(pipe, "vae", None) is not None else 1
    side = unet.config.sample_size if size is None else size // factor
    return (batch, unet.config.in_channels, side, side)


# ---------------------------------------------------------------------------------------------
# Edits in latent space


def _check_latents(z: Tensor, name: str) -> None:
    if not torch.is_tensor(z) or z.dim() != 4 or not z.dtype.is_floating_point or not torch.isfinite(z).all():
        raise BadRequest(f"{name} must be a finite float tensor (B, C, H, W) of latents")


def sdedit(
    model_fn, z0: Tensor, ts: Tensor, i_start: int, *, schedule, sampler, cond=None, generator=None, **kwargs
) -> Tensor:
    """SDEdit (Meng et al. 2022) on latents: :func:`course_utils.editing.sdedit` itself, told that
    its input holds latents rather than images in [-1, 1]."""
    _check_latents(z0, "z0")
    return editing.sdedit(
        model_fn,
        z0,
        ts,
        i_start,
        schedule=schedule,
        sampler=sampler,
        cond=cond,
        generator=generator,
        images=False,
        **kwargs,
    )


def inpaint(
    model_fn, z0: Tensor, known: Tensor, ts: Tensor, *, schedule, sampler, cond=None, generator=None, **kwargs
) -> Tensor:
    """RePaint-style inpainting (Lugmayr et al. 2022) on latents: :func:`course_utils.editing.inpaint`
    itself (``resample`` included), told that its input holds latents.

    ``known`` is 1 where ``z0`` is kept, at the latents' resolution (downsample a pixel mask by 8).
    """
    _check_latents(z0, "z0")
    return editing.inpaint(
        model_fn,
        z0,
        known,
        ts,
        schedule=schedule,
        sampler=sampler,
        cond=cond,
        generator=generator,
        images=False,
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------
# Pipelines


def load_pipeline(
    name: str = SD15,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attention_slicing: bool = False,
    cpu_offload: bool = False,
    scheduler: str = "ddim",
    revision: str | None = None,
    **kwargs,
):
    """A pretrained pipeline from the model hub (needs internet and, for DeepFloyd IF, a licence and login).

    Defaults: the SD 1.5 mirror, float16 on CUDA (float32 elsewhere), a DDIMScheduler from the
    pipeline's own scheduler config. ``attention_slicing`` and ``cpu_offload`` trade speed for
    memory (``cpu_offload`` needs ``accelerate`` and keeps each part on the GPU only while it runs).
    Extra keyword arguments go to ``DiffusionPipeline.from_pretrained`` (e.g. ``variant="fp16"``).
    ``revision`` pins the hub revision (a commit hash); by default the repository's current main
    branch is loaded: pin the one you first ran to keep later runs identical.
    """
    from diffusers import DDIMScheduler, DiffusionPipeline

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = DiffusionPipeline.from_pretrained(name, torch_dtype=dtype, revision=revision, **kwargs)
    if scheduler == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    if hasattr(pipe, "safety_checker"):
        pipe.safety_checker = None
    if attention_slicing:
        pipe.enable_attention_slicing()
    if cpu_offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


SD15_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    steps_offset=1,
    set_alpha_to_one=False,
    clip_sample=False,
)


def _tiny_tokenizer(folder: Path, max_length: int):
    """A CLIP tokenizer over a tiny vocabulary: the letters, each alone and word-final, no merges."""
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"] + letters + [f"{c}</w>" for c in letters]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=max_length, pad_token="<|endoftext|>")


def tiny_pipeline(kind: str = "sd", *, prediction_type: str = "epsilon", seed: int = 0, sample_size: int = 16):
    """A tiny randomly initialised StableDiffusionPipeline built from configs (no downloads): its
    images are noise, but every code path of the real one runs. SD 1.5's DDIM settings.

    UNet (32, 64) channels, cross-attention dim 32, ``sample_size`` latents (images 2x that); a
    two-level VAE; a 2-layer CLIP text encoder; a CLIP tokenizer over the letters a-z (16 tokens).
    """
    if kind != "sd":
        raise BadRequest(f"tiny_pipeline builds kind='sd' only, got {kind!r}")
    if prediction_type not in PREDICTION_TYPES:
        raise BadRequest(f"unknown prediction type {prediction_type!r}; known: {', '.join(PREDICTION_TYPES)}")
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    max_length = 16
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        sample_size=2 * sample_size,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=max_length,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    tokenizer = _tiny_tokenizer(Path(tempfile.mkdtemp(prefix="tiny-clip-")), max_length)
    scheduler = DDIMScheduler(**SD15_SCHEDULER, prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
