"""Building blocks of the course UNets.

The MNIST blocks follow the small UNet of Berkeley's CS180 Project 5:

- ``Conv``: 3x3 convolution (same size) + BatchNorm + GELU
- ``DownConv``: 3x3 convolution with stride 2 (halves H, W) + BatchNorm + GELU
- ``UpConv``: 4x4 transposed convolution with stride 2 (doubles H, W) + BatchNorm + GELU
- ``Flatten``: 7x7 average pool to 1x1 + GELU; ``Unflatten``: 7x7 transposed conv back to 7x7
- ``ConvBlock`` = two ``Conv``; ``DownBlock`` = ``DownConv`` + ``ConvBlock``; ``UpBlock`` likewise
- ``FCBlock``: Linear + GELU + Linear, turns a conditioning vector into per-channel numbers

Conditioning enters through embeddings that map t, a class id or a feature vector to a vector:
``SinusoidalEmbedding`` (Vaswani et al. 2017 / Ho et al. 2020), ``ClassEmbedding`` (one-hot,
id -1 = "no class" for classifier-free guidance) and ``VectorEmbedding`` (a row of NaN =
"no condition").
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Conv(nn.Module):
    """3x3 conv keeping H, W + BatchNorm + GELU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DownConv(nn.Module):
    """3x3 conv with stride 2: (B, c_in, H, W) -> (B, c_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class UpConv(nn.Module):
    """4x4 transposed conv with stride 2: (B, c_in, H, W) -> (B, c_out, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.GELU()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Flatten(nn.Module):
    """(B, C, 7, 7) -> (B, C, 1, 1): average pool over the whole 7x7 map, then GELU."""

    def __init__(self, size: int = 7):
        super().__init__()
        self.net = nn.Sequential(nn.AvgPool2d(size), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Unflatten(nn.Module):
    """(B, C, 1, 1) -> (B, C, 7, 7): 7x7 transposed conv + BatchNorm + GELU."""

    def __init__(self, channels: int, size: int = 7):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, size, stride=size), nn.BatchNorm2d(channels), nn.GELU()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvBlock(nn.Module):
    """Two ``Conv`` layers: c_in -> c_out -> c_out, same H, W."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(Conv(c_in, c_out), Conv(c_out, c_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DownBlock(nn.Module):
    """``DownConv`` then ``ConvBlock``: halves H, W."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(DownConv(c_in, c_out), ConvBlock(c_out, c_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class UpBlock(nn.Module):
    """``UpConv`` then ``ConvBlock``: doubles H, W."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(UpConv(c_in, c_out), ConvBlock(c_out, c_out))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class FCBlock(nn.Module):
    """Linear + GELU + Linear: a conditioning vector (B, d_in) -> (B, d_out)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))

    def forward(self, c: Tensor) -> Tensor:
        return self.net(c)


def sinusoidal_embedding(t: Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> Tensor:
    """Transformer-style embedding of times t (B,) in [0, 1] -> (B, dim).

    t is multiplied by ``scale`` first so that the frequencies see the familiar step numbers
    0..1000; half of the dimensions are sines, half cosines, at geometrically spaced frequencies.
    """
    if dim % 2:
        raise ValueError("embedding dimension must be even")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = (t.float() * scale)[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class SinusoidalEmbedding(nn.Module):
    """t (B,) -> sinusoidal features (B, dim) -> MLP (B, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = FCBlock(dim, dim)

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim))


class ClassEmbedding(nn.Module):
    """Class ids (B,) -> one-hot (B, n_classes); id -1 (or ``None``) gives the zero vector.

    The zero vector is the "unconditional" input used for classifier-free guidance: training
    drops labels to -1 with probability p_uncond (see ``losses.drop_condition``).
    """

    def __init__(self, n_classes: int):
        super().__init__()
        self.n_classes = n_classes

    def forward(self, cond: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if cond is None:
            return torch.zeros(batch, self.n_classes, device=device)
        cond = cond.long()
        if cond.shape != (batch,):
            raise ValueError(f"class condition must have shape ({batch},), got {tuple(cond.shape)}")
        if torch.any((cond < -1) | (cond >= self.n_classes)):
            raise ValueError(f"class ids must be in 0..{self.n_classes - 1} (or -1 for none)")
        keep = (cond >= 0).float()[:, None]
        return nn.functional.one_hot(cond.clamp(min=0), self.n_classes).float() * keep


class VectorEmbedding(nn.Module):
    """A condition vector (B, d) -> (B, dim) through an MLP; NaN rows or ``None`` -> learned null.

    Used for the 32 visual features: each row is a feature vector in [0, 1]. A row of NaN means
    "no condition" (the CFG-dropped case) and is replaced by a learned null embedding.
    """

    def __init__(self, d_in: int, dim: int):
        super().__init__()
        self.d_in = d_in
        self.mlp = FCBlock(d_in, dim)
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, cond: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if cond is None:
            return self.null.expand(batch, -1)
        if cond.shape != (batch, self.d_in):
            raise ValueError(f"vector condition must have shape ({batch}, {self.d_in}), got {tuple(cond.shape)}")
        dropped = torch.isnan(cond).all(dim=1, keepdim=True)
        emb = self.mlp(torch.nan_to_num(cond.float(), nan=0.0))
        return torch.where(dropped, self.null.expand(batch, -1), emb)
