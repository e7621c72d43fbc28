"""The course UNets, configured by a dataclass.

``UNetConfig.mnist()`` builds the small Berkeley-style UNet (CS180 Project 5) used on MNIST::

    x (B, C, 28, 28)
    e1 = ConvBlock(C, D)          (B, D, 28, 28)
    e2 = DownBlock(D, D)          (B, D, 14, 14)
    e3 = DownBlock(D, 2D)         (B, 2D, 7, 7)
    z  = Flatten                  (B, 2D, 1, 1)
    u0 = Unflatten                (B, 2D, 7, 7)    <- u0 = c1 * u0 + t1
    u1 = UpBlock(4D, D)[e3, u0]   (B, D, 14, 14)   <- u1 = c2 * u1 + t2
    u2 = UpBlock(2D, D)[e2, u1]   (B, D, 28, 28)
    out = Conv(ConvBlock(2D, D)[e1, u2])  (B, C, 28, 28)

with ``[a, b]`` a channel concatenation (skip connection). Time t and class c enter through
``FCBlock`` s that produce per-channel shifts (t1, t2) and scales (c1, c2) for the 7x7 and 14x14
decoder features. Every model has the course's one signature ``model(x, t, cond=None)``.

``UNetConfig.photo256()`` builds the feature-conditioned photo UNet (:class:`ResUNet`, in the
style of Ho et al. 2020 and Dhariwal & Nichol 2021) for 256x256 RGB photos::

    x (B, 3, 256, 256) -> conv3x3 -> 64 channels
    encoder, per level (256, 128, 64, 32, 16 px; 64-128-256-512-512 channels):
        2 x ResBlock (+ SelfAttention at 32 and 16 px), then a stride-2 conv (not after the last)
    middle (16 px): ResBlock, SelfAttention, ResBlock
    decoder, mirrored: 3 x ResBlock on [h, skip] (+ attention), then nearest x2 + conv
    out: GroupNorm, SiLU, conv3x3 -> (B, 3, 256, 256), the noise estimate eps_hat

Every ResBlock receives ``emb = time_mlp(sinusoidal(t)) + feature_mlp(normalise(cond))``: the
32 features (B, 32) in [0, 1] are standardised with the per-feature mean and standard deviation
of the training set (buffers of the model, so they travel in every checkpoint), then embedded by
``VectorEmbedding`` (a row of NaN = "no condition", the learned null embedding). With
``cond_angles`` (e.g. the index of ``dominant_hue``, an angle in turns with red at both ends), each
such entry enters as cos(2 pi v) in its own column and sin(2 pi v) appended at the end, so the
network sees 0.99 and 0.01 as the neighbours they are. A ResBlock adds its projection of ``emb``
to each channel; with ``scale_shift`` it scales and shifts each normalised channel instead
(adaptive GroupNorm, Dhariwal & Nichol 2021), which no shipped model uses.
``UNetConfig.photo_small()`` is the same network, narrow and at 32 px, that trains on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn

from .layers import (
    ClassEmbedding,
    ConvBlock,
    DownBlock,
    Downsample,
    FCBlock,
    Flatten,
    ResBlock,
    SelfAttention,
    Unflatten,
    UpBlock,
    Upsample,
    VectorEmbedding,
    group_norm,
    sinusoidal_embedding,
)

CONDITIONS = ("none", "class", "vector")

#: Without gradients on a CPU, :class:`MnistUNet` runs a batch larger than this in chunks of this
#: many images: a chunk's activations stay in the processor's caches. Sampling 500 digits with the
#: D = 32 UNet (DDIM, 20 steps) took 43 ms per image in one batch and 24 ms in chunks of 50 on the
#: 2-core CI machine, 28, 31 and 31 ms in chunks of 25, 100 and 250
#: (``benchmarks/bench_sampling_chunks.py``). Training (gradients on) and GPUs run whole batches.
CPU_CHUNK = 50


def _in_chunks(model: nn.Module, x: Tensor, t: Tensor | None, cond) -> Tensor | None:
    """The forward pass in chunks of ``CPU_CHUNK`` images, or None where whole batches are better."""
    B = x.shape[0]
    if torch.is_grad_enabled() or x.device.type != "cpu" or B <= CPU_CHUNK:
        return None
    if any(torch.is_tensor(a) and a.dim() > 0 and a.shape[0] != B for a in (t, cond)):
        return None  # a mis-shaped argument: the whole batch, so its error names the real sizes

    def part(a, i):  # a per-image argument is cut like x; a shared one (a 0-dim t, None) is passed on
        return a[i : i + CPU_CHUNK] if torch.is_tensor(a) and a.dim() > 0 else a

    return torch.cat([model(x[i : i + CPU_CHUNK], part(t, i), part(cond, i)) for i in range(0, B, CPU_CHUNK)])


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a UNet; stored in every checkpoint."""

    arch: str = "mnist"  # "mnist": Berkeley-style small UNet
    in_channels: int = 1
    image_size: int = 28
    hidden: int = 64  # D, the width of the first level
    time_cond: bool = True  # False: the single-step denoiser of notebook 03
    time_embedding: str = "scalar"  # "scalar" (Berkeley: t itself into the FCBlocks) or "sinusoidal"
    time_dim: int = 32  # sinusoidal embedding size
    cond: str = "none"  # "none", "class" or "vector"
    n_classes: int = 10
    cond_dim: int = 32
    cond_angles: tuple = ()  # "vector" only: entries of the condition that are angles in turns, given as cos and sin
    # ResUNet ("res") only:
    base_channels: int = 64  # channels of the first level; level i has base * channel_mults[i]
    channel_mults: tuple = (1, 2, 4, 8, 8)
    num_res_blocks: int = 2  # ResBlocks per level in the encoder (the decoder has one more)
    attn_resolutions: tuple = (32, 16)  # feature-map sizes (px) that get self-attention
    attn_heads: int = 4
    dropout: float = 0.0
    groups: int = 32  # GroupNorm groups
    scale_shift: bool = False  # "res" only: the embedding scales and shifts each ResBlock's GroupNorm (AdaGN)

    @classmethod
    def mnist(cls, hidden: int = 64, *, time_cond: bool = True, cond: str = "none", **kw) -> "UNetConfig":
        """The small MNIST UNet: 28x28 gray images, width D = ``hidden``."""
        return cls(arch="mnist", in_channels=1, image_size=28, hidden=hidden, time_cond=time_cond, cond=cond, **kw)

    @classmethod
    def photo256(cls, **kw) -> "UNetConfig":
        """The reference feature-conditioned photo UNet: 256x256 RGB, 64-128-256-512-512 channels,
        2 ResBlocks per level, self-attention at 32x32 and 16x16, 32 features as the condition."""
        values = dict(
            arch="res",
            in_channels=3,
            image_size=256,
            time_embedding="sinusoidal",
            cond="vector",
            cond_dim=32,
            base_channels=64,
            channel_mults=(1, 2, 4, 8, 8),
            num_res_blocks=2,
            attn_resolutions=(32, 16),
            attn_heads=4,
            dropout=0.1,
            groups=32,
        )
        return cls(**{**values, **kw})

    @classmethod
    def photo_small(cls, image_size: int = 32, **kw) -> "UNetConfig":
        """The same network, narrow (32-64-64 channels, three levels) with self-attention at the
        coarsest level (8x8 for 32 px; attention at 16x16 doubles a CPU training step), for fast
        mode and CPU training."""
        values = dict(
            base_channels=32,
            channel_mults=(1, 2, 2),
            num_res_blocks=2,
            attn_resolutions=(image_size // 4,),
            attn_heads=4,
            dropout=0.0,
            groups=8,
        )
        return cls.photo256(image_size=image_size, **{**values, **kw})

    def replace(self, **changes) -> "UNetConfig":
        return replace(self, **changes)

    # fields added after checkpoints shipped: written only when set, so the older records keep their layout
    _WRITTEN_WHEN_SET = ("cond_angles", "scale_shift")

    def to_dict(self) -> dict:
        values = asdict(self)
        for name in self._WRITTEN_WHEN_SET:
            if values[name] == type(self).__dataclass_fields__[name].default:
                del values[name]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> "UNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown UNetConfig fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _check_images(cfg: UNetConfig, x: Tensor) -> None:
    if x.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
        raise ValueError(
            f"expected images (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(x.shape)}"
        )


class MnistUNet(nn.Module):
    """The Berkeley-style UNet; optional time and class conditioning (see module docstring)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        if cfg.image_size % 4:
            raise ValueError("the MNIST UNet needs an image size divisible by 4")
        if cfg.cond not in ("none", "class"):
            raise ValueError(f"the MNIST UNet supports cond 'none' or 'class', not {cfg.cond!r}")
        if cfg.scale_shift:
            raise ValueError("scale_shift is an option of the ResBlocks of arch 'res'; the MNIST UNet has none")
        self.cfg = cfg
        C, D = cfg.in_channels, cfg.hidden
        self.enc1 = ConvBlock(C, D)
        self.enc2 = DownBlock(D, D)
        self.enc3 = DownBlock(D, 2 * D)
        self.flatten = Flatten(cfg.image_size // 4)
        self.unflatten = Unflatten(2 * D, cfg.image_size // 4)
        self.dec1 = UpBlock(4 * D, D)
        self.dec2 = UpBlock(2 * D, D)
        self.dec3 = ConvBlock(2 * D, D)
        self.out = nn.Conv2d(D, C, 3, padding=1)
        if cfg.time_cond:
            t_in = 1 if cfg.time_embedding == "scalar" else cfg.time_dim
            self.fc_t1, self.fc_t2 = FCBlock(t_in, 2 * D), FCBlock(t_in, D)
        if cfg.cond == "class":
            self.class_embedding = ClassEmbedding(cfg.n_classes)
            self.fc_c1, self.fc_c2 = FCBlock(cfg.n_classes, 2 * D), FCBlock(cfg.n_classes, D)

    def _time_features(self, t: Tensor) -> Tensor:
        if self.cfg.time_embedding == "scalar":
            return t.float()[:, None]  # (B, 1)
        return sinusoidal_embedding(t, self.cfg.time_dim)

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        cfg = self.cfg
        B = x.shape[0]
        _check_images(cfg, x)
        chunked = _in_chunks(self, x, t, cond)  # large batches on a CPU, when sampling
        if chunked is not None:
            return chunked
        e1 = self.enc1(x)  # (B, D, 28, 28)
        e2 = self.enc2(e1)  # (B, D, 14, 14)
        e3 = self.enc3(e2)  # (B, 2D, 7, 7)
        u0 = self.unflatten(self.flatten(e3))  # (B, 2D, 7, 7)
        scale1 = scale2 = 1.0
        shift1 = shift2 = 0.0
        if cfg.time_cond:
            if t is None:
                raise ValueError("this UNet is time-conditioned: pass t (B,) in [0, 1]")
            t = t.expand(B) if t.dim() == 0 else t
            tf = self._time_features(t.to(x.device))
            shift1, shift2 = self.fc_t1(tf)[..., None, None], self.fc_t2(tf)[..., None, None]
        if cfg.cond == "class":
            onehot = self.class_embedding(cond, B, x.device)
            scale1, scale2 = self.fc_c1(onehot)[..., None, None], self.fc_c2(onehot)[..., None, None]
        elif cond is not None:
            raise ValueError("this UNet is not conditioned: cond must be None")
        u0 = scale1 * u0 + shift1
        u1 = self.dec1(torch.cat([e3, u0], dim=1))  # (B, D, 14, 14)
        u1 = scale2 * u1 + shift2
        u2 = self.dec2(torch.cat([e2, u1], dim=1))  # (B, D, 28, 28)
        return self.out(self.dec3(torch.cat([e1, u2], dim=1)))


class ResUNet(nn.Module):
    """The photo UNet of ResBlocks and self-attention (see the module docstring), conditioned on
    time and on nothing, a class id or a feature vector."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        levels = len(cfg.channel_mults)
        if levels < 1 or cfg.num_res_blocks < 1:
            raise ValueError("the ResUNet needs at least one level and one ResBlock per level")
        if cfg.image_size % 2 ** (levels - 1):
            raise ValueError(f"image size {cfg.image_size} must be divisible by 2^{levels - 1} for {levels} levels")
        self.cfg = cfg
        base, groups, heads = cfg.base_channels, cfg.groups, cfg.attn_heads
        emb_dim = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.cond == "vector":
            angles = cfg.cond_angles
            if len(set(angles)) < len(angles) or not all(0 <= i < cfg.cond_dim for i in angles):
                raise ValueError(f"cond_angles {angles} must be distinct entries of the {cfg.cond_dim} conditions")
            # an angle enters as its cosine (in its own column) and its sine (one more column at the end)
            self.cond_embedding = VectorEmbedding(cfg.cond_dim + len(cfg.cond_angles), emb_dim)
            # standardisation of the features, set from the training set (set_condition_stats)
            self.register_buffer("cond_mean", torch.zeros(cfg.cond_dim))
            self.register_buffer("cond_std", torch.ones(cfg.cond_dim))
        elif cfg.cond == "class":
            self.class_embedding = ClassEmbedding(cfg.n_classes)
            self.class_mlp = FCBlock(cfg.n_classes, emb_dim)

        def block(c_in: int, c_out: int, size: int) -> nn.ModuleList:
            parts = [ResBlock(c_in, c_out, emb_dim, dropout=cfg.dropout, groups=groups, scale_shift=cfg.scale_shift)]
            if size in cfg.attn_resolutions:
                parts.append(SelfAttention(c_out, heads=heads, groups=groups))
            return nn.ModuleList(parts)

        self.conv_in = nn.Conv2d(cfg.in_channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [base]  # channels of every tensor the decoder will concatenate
        ch, size = base, cfg.image_size
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.down.append(block(ch, base * mult, size))
                ch = base * mult
                skips.append(ch)
            if level < levels - 1:
                self.down.append(nn.ModuleList([Downsample(ch)]))
                skips.append(ch)
                size //= 2
        self.mid = nn.ModuleList(
            [
                ResBlock(ch, ch, emb_dim, dropout=cfg.dropout, groups=groups, scale_shift=cfg.scale_shift),
                SelfAttention(ch, heads=heads, groups=groups),
                ResBlock(ch, ch, emb_dim, dropout=cfg.dropout, groups=groups, scale_shift=cfg.scale_shift),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(block(ch + skips.pop(), base * mult, size))
                ch = base * mult
            if level > 0:
                self.up.append(nn.ModuleList([Upsample(ch)]))
                size *= 2
        self.norm_out = group_norm(ch, groups)
        self.conv_out = nn.Conv2d(ch, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @torch.no_grad()
    def set_condition_stats(self, mean: Tensor, std: Tensor) -> None:
        """Per-feature mean and standard deviation of the training conditions (stored in the model)."""
        if self.cfg.cond != "vector":
            raise ValueError("only a feature-conditioned UNet has condition statistics")
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (self.cfg.cond_dim,) or std.shape != (self.cfg.cond_dim,):
            raise ValueError(f"statistics must have shape ({self.cfg.cond_dim},)")
        self.cond_mean.copy_(mean)
        self.cond_std.copy_(std.clamp(min=1e-3))  # a constant feature must not divide by zero

    def embed(self, t: Tensor, cond: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """emb (B, 4 * base) = time MLP of sinusoidal(t) + the condition's embedding."""
        emb = self.time_mlp(sinusoidal_embedding(t, self.cfg.base_channels))
        if self.cfg.cond == "vector":
            if cond is not None:
                raw = cond.float()
                cond = (raw - self.cond_mean) / self.cond_std  # NaN rows stay NaN = no condition
                if self.cfg.cond_angles:  # an angle in turns as (cos, sin): 0.99 and 0.01 are neighbours
                    idx = list(self.cfg.cond_angles)
                    turn = 2 * torch.pi * raw[:, idx]
                    cond = torch.cat([cond, turn.sin()], 1)  # the sines appended at the end
                    cond[:, idx] = turn.cos()  # the cosines in the angles' own columns
            emb = emb + self.cond_embedding(cond, batch, device)
        elif self.cfg.cond == "class":
            emb = emb + self.class_mlp(self.class_embedding(cond, batch, device))
        elif cond is not None:
            raise ValueError("this UNet is not conditioned: cond must be None")
        return emb

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        cfg = self.cfg
        B = x.shape[0]
        _check_images(cfg, x)
        if t is None:
            raise ValueError("this UNet is time-conditioned: pass t (B,) in [0, 1]")
        t = t.expand(B) if t.dim() == 0 else t
        emb = self.embed(t.to(x.device), cond, B, x.device)  # (B, 4 * base)
        h = self.conv_in(x)  # (B, base, H, W)
        skips = [h]
        for parts in self.down:
            h = self._run(parts, h, emb)
            skips.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h)
        h = self.mid[2](h, emb)
        for parts in self.up:
            if isinstance(parts[0], ResBlock):
                h = torch.cat([h, skips.pop()], dim=1)  # skip connection: (B, ch + ch_skip, h, w)
            h = self._run(parts, h, emb)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))

    @staticmethod
    def _run(parts: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        for layer in parts:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h


def build_unet(cfg: UNetConfig) -> nn.Module:
    """Instantiate the UNet a config describes."""
    if cfg.cond not in CONDITIONS:
        raise ValueError(f"cond must be one of {CONDITIONS}, not {cfg.cond!r}")
    if cfg.arch == "mnist":
        return MnistUNet(cfg)
    if cfg.arch == "res":
        return ResUNet(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
