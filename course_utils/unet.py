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
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn

from .layers import ClassEmbedding, ConvBlock, DownBlock, FCBlock, Flatten, Unflatten, UpBlock, sinusoidal_embedding

CONDITIONS = ("none", "class", "vector")


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

    @classmethod
    def mnist(cls, hidden: int = 64, *, time_cond: bool = True, cond: str = "none", **kw) -> "UNetConfig":
        """The small MNIST UNet: 28x28 gray images, width D = ``hidden``."""
        return cls(arch="mnist", in_channels=1, image_size=28, hidden=hidden, time_cond=time_cond, cond=cond, **kw)

    def replace(self, **changes) -> "UNetConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "UNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown UNetConfig fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class MnistUNet(nn.Module):
    """The Berkeley-style UNet; optional time and class conditioning (see module docstring)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        if cfg.image_size % 4:
            raise ValueError("the MNIST UNet needs an image size divisible by 4")
        if cfg.cond not in ("none", "class"):
            raise ValueError(f"the MNIST UNet supports cond 'none' or 'class', not {cfg.cond!r}")
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
        if x.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"expected images (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(x.shape)}"
            )
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


def build_unet(cfg: UNetConfig) -> nn.Module:
    """Instantiate the UNet a config describes."""
    if cfg.cond not in CONDITIONS:
        raise ValueError(f"cond must be one of {CONDITIONS}, not {cfg.cond!r}")
    if cfg.arch == "mnist":
        return MnistUNet(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
