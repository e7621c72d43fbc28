"""Building blocks of the course UNets.

The MNIST blocks follow the small UNet of Berkeley's CS180 Project 5:

- ``Conv``: 3x3 convolution (same size) + BatchNorm + GELU
- ``DownConv``: 3x3 convolution with stride 2 (halves H, W) + BatchNorm + GELU
- ``UpConv``: 4x4 transposed convolution with stride 2 (doubles H, W) + BatchNorm + GELU
- ``Flatten``: 7x7 average pool to 1x1 + GELU; ``Unflatten``: 7x7 transposed conv back to 7x7
- ``ConvBlock`` = two ``Conv``; ``DownBlock`` = ``DownConv`` + ``ConvBlock``; ``UpBlock`` likewise
- ``FCBlock``: Linear + GELU + Linear, turns a conditioning vector into per-channel numbers

Conditioning enters through embeddings that map t, a class id or a feature vector to a vector:
:func:`sinusoidal_embedding` (Vaswani et al. 2017 / Ho et al. 2020), ``ClassEmbedding`` (one-hot,
id -1 = "no class" for classifier-free guidance) and ``VectorEmbedding`` (a row of NaN =
"no condition").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .conditions import is_null


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


class ClassEmbedding(nn.Module):
    """Class ids (B,) -> one-hot (B, n_classes); id -1 (or ``None``) gives the zero vector.

    The zero vector is the "unconditional" input used for classifier-free guidance: training
    drops labels to -1 with probability p_uncond (see ``conditions.drop_condition``).
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
        keep = (~is_null(cond)).float()[:, None]
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
        dropped = is_null(cond)[:, None]  # (B, 1)
        emb = self.mlp(torch.nan_to_num(cond.float(), nan=0.0))
        return torch.where(dropped, self.null.expand(batch, -1), emb)


# ---------------------------------------------------------------------------------------------
# Blocks of the photo UNet (Ho et al. 2020, appendix B; Dhariwal & Nichol 2021): GroupNorm + SiLU,
# the time (+ condition) embedding added per channel, self-attention at the coarse resolutions.


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups, or fewer when ``channels`` is not divisible by it."""
    groups = math.gcd(channels, groups)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """Residual block with an embedding injected per channel (Ho et al. 2020, appendix B)::

        h = conv3x3(SiLU(GroupNorm(x)))                   (B, c_out, H, W)
        h = h + Linear(SiLU(emb))[:, :, None, None]        time + condition, one number per channel
        h = conv3x3(Dropout(SiLU(GroupNorm(h))))
        out = skip(x) + h                                  skip = 1x1 conv when c_in != c_out

    With ``scale_shift`` the embedding also scales the normalised features (adaptive GroupNorm,
    Dhariwal & Nichol 2021, section 3): ``Linear(SiLU(emb))`` gives (scale, shift) per channel and
    the second half reads ``conv3x3(Dropout(SiLU(GroupNorm(h) * (1 + scale) + shift)))``, so the time
    and the condition can turn a channel up or down instead of only offsetting it.

    The last convolution starts at zero, so a fresh block is the identity on its skip path.
    """

    def __init__(
        self, c_in: int, c_out: int, emb_dim: int, *, dropout: float = 0.0, groups: int = 32, scale_shift: bool = False
    ):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out if scale_shift else c_out)
        self.norm2 = group_norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))  # (B, c_out, H, W)
        e = self.emb(nn.functional.silu(emb))[:, :, None, None]  # (B, c_out or 2 c_out, 1, 1) broadcast
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(nn.functional.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual::

        q, k, v = 1x1 conv(GroupNorm(x))               each (B, heads, H*W, C / heads)
        out = x + proj(softmax(q k^T / sqrt(d)) v)      every position looks at every other

    Cost grows with (H*W)^2, which is why the photo UNet uses it only at 32x32 and 16x16.
    """

    def __init__(self, channels: int, *, heads: int = 4, groups: int = 32):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels cannot be split into {heads} heads")
        self.heads = heads
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # each (B, heads, H*W, d)
        out = nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        out = out.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(out)


class Downsample(nn.Module):
    """3x3 convolution with stride 2: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))
