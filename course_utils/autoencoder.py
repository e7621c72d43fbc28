"""The course's photo autoencoder: 256x256x3 photos <-> a 32x32xC latent (f = 8), trained from scratch.

Latent diffusion (Rombach et al. 2022) runs the diffusion model on a small latent instead of the
pixels; an autoencoder trained once maps between the two. Ours does all its work at the latent's
resolution, which is what makes it trainable on a CPU::

    x (B, 3, 256, 256) in [-1, 1]
    encode: PixelUnshuffle(8)          (B, 192, 32, 32)   every 8x8x3 patch becomes one position
            1x1 conv -> width, ResBlocks (GroupNorm, SiLU, conv3x3) -> conv3x3 -> (mean, log-variance)
    latent: z = mean + exp(logvar / 2) * noise    (B, C, 32, 32); KL(q(z|x) || N(0, I)) keeps it tame
    decode: conv3x3 -> width, ResBlocks -> 1x1 conv -> 192 channels -> PixelShuffle(8) -> coarse image
            + a small full-resolution refinement (two 3x3 convs) that smooths the patch borders

The KL term (weight ``kl_weight`` per latent value against the per-pixel reconstruction loss) is
the Stable Diffusion VAE's regulariser: small enough that reconstructions stay sharp, enough that
the latent stays near unit scale without holes. The diffusion model sees the latent standardised
per channel, ``(mean - shift) / scale``; :func:`measure_latent_stats` measures ``shift`` and ``scale``
on the training photos and the model stores them as buffers.

::

    ae = Autoencoder(AEConfig())
    z = ae.encode(x)               # (B, C, 32, 32), standardised: what the diffusion model sees
    x_hat = ae.decode(z)           # (B, 3, 256, 256) in [-1, 1]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import BadRequest
from .layers import group_norm

__all__ = [
    "AEConfig",
    "Autoencoder",
    "pca_of",
    "pca_init",
    "kl_divergence",
    "ae_loss",
    "image_gradients",
    "measure_latent_stats",
]


@dataclass(frozen=True)
class AEConfig:
    """Everything needed to rebuild the autoencoder; stored in its checkpoint."""

    factor: int = 8  # spatial downsampling: 256 px -> 32 latent positions per side
    latent_channels: int = 12  # C
    width: int = 128  # channels of the ResBlocks at the latent resolution
    blocks: int = 2  # ResBlocks in the encoder (the decoder has one more)
    refine: int = 32  # channels of the full-resolution refinement (0: none)
    groups: int = 8

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "AEConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def patch_values(self) -> int:
        """Numbers in one patch of pixels that becomes one latent position: 3 * factor^2."""
        return 3 * self.factor**2

    def compression(self) -> float:
        """How many pixel values each latent value stands for: 3 f^2 / C."""
        return self.patch_values / self.latent_channels


class _Block(nn.Module):
    """A residual block without conditioning: x + conv(SiLU(GN(conv(SiLU(GN(x))))))."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm1, self.norm2 = group_norm(channels, groups), group_norm(channels, groups)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Autoencoder(nn.Module):
    """A KL-regularised autoencoder between images (B, 3, H, W) in [-1, 1] and latents
    (B, C, H/f, W/f); H and W must be multiples of f. See the module's docstring for the layout."""

    def __init__(self, cfg: AEConfig | None = None):
        super().__init__()
        cfg = cfg or AEConfig()
        if cfg.factor < 1 or cfg.latent_channels < 1 or cfg.width < 1 or cfg.blocks < 0 or cfg.refine < 0:
            raise BadRequest(f"invalid autoencoder configuration {cfg}")
        self.cfg = cfg
        P, W, C = cfg.patch_values, cfg.width, cfg.latent_channels
        self.unshuffle = nn.PixelUnshuffle(cfg.factor)
        # the linear paths: patch -> latent and latent -> patch, set to PCA by pca_init
        self.enc_linear = nn.Conv2d(P, C, 1)
        self.dec_linear = nn.Conv2d(C, P, 1)
        self.encoder = nn.Sequential(
            nn.Conv2d(P, W, 1),
            *[_Block(W, cfg.groups) for _ in range(cfg.blocks)],
            group_norm(W, cfg.groups),
            nn.SiLU(),
            nn.Conv2d(W, 2 * C, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(C, W, 3, padding=1),
            *[_Block(W, cfg.groups) for _ in range(cfg.blocks + 1)],
            group_norm(W, cfg.groups),
            nn.SiLU(),
            nn.Conv2d(W, P, 1),
        )
        self.shuffle = nn.PixelShuffle(cfg.factor)
        # the non-linear paths start at zero (the model starts as its linear paths); the
        # encoder's log-variance starts small, so the first draws of z barely blur the code
        for last in (self.encoder[-1], self.decoder[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        with torch.no_grad():
            self.encoder[-1].bias[C:] = -8.0
        self.refine = None
        if cfg.refine:
            self.refine = nn.Sequential(
                nn.Conv2d(3, cfg.refine, 3, padding=1), nn.SiLU(), nn.Conv2d(cfg.refine, 3, 3, padding=1)
            )
            nn.init.zeros_(self.refine[-1].weight)  # starts as the identity on the coarse image
            nn.init.zeros_(self.refine[-1].bias)
        # the diffusion model's view of the latent: (mean - shift) / scale, per channel
        self.register_buffer("latent_shift", torch.zeros(C))
        self.register_buffer("latent_scale", torch.ones(C))

    # -- the two halves -------------------------------------------------------------------------

    def _check(self, x: Tensor) -> None:
        f = self.cfg.factor
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % f or x.shape[-2] % f:
            raise BadRequest(
                f"the autoencoder takes (B, 3, H, W) images with H and W multiples of {f}, got {tuple(x.shape)}"
            )

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The encoder's (mean, log-variance) of q(z | x), each (B, C, H/f, W/f), raw (not standardised)."""
        self._check(x)
        patches = self.unshuffle(x)  # (B, 3 f^2, H/f, W/f)
        mean, logvar = self.encoder(patches).chunk(2, dim=1)
        return self.enc_linear(patches) + mean, logvar.clamp(-30.0, 20.0)

    def decode_raw(self, z: Tensor) -> Tensor:
        """Raw latent (B, C, h, w) -> image (B, 3, f h, f w), not clamped."""
        x = self.shuffle(self.dec_linear(z) + self.decoder(z))
        return x + self.refine(x) if self.refine is not None else x

    def _raw_latent(self, x: Tensor, sample: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(z, mean, logvar)``: z is the mean of q(z | x), or with ``sample`` a draw mean + sigma * noise."""
        mean, logvar = self.moments(x)
        if not sample:
            return mean, mean, logvar
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise, mean, logvar

    def encode(self, x: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1] -> standardised latents (the mean of q(z | x), or a draw with ``sample``).

        The images may lie on any device: they are moved to the autoencoder's, and the latents come
        back on theirs (so a notebook's CPU tensors work with an autoencoder on a GPU)."""
        z, _, _ = self._raw_latent(x.to(self.latent_scale.device), sample, generator)
        return ((z - self.latent_shift[:, None, None]) / self.latent_scale[:, None, None]).to(x.device)

    def decode(self, z: Tensor) -> Tensor:
        """Standardised latents (B, C, h, w) -> images (B, 3, f h, f w) in [-1, 1]."""
        if z.dim() != 4 or z.shape[1] != self.cfg.latent_channels:
            raise BadRequest(f"latents are (B, {self.cfg.latent_channels}, h, w), got {tuple(z.shape)}")
        raw = z.to(self.latent_scale.device) * self.latent_scale[:, None, None] + self.latent_shift[:, None, None]
        return self.decode_raw(raw).clamp(-1.0, 1.0).to(z.device)  # back on the latents' device, as encode

    def forward(self, x: Tensor, *, sample: bool = True, generator: torch.Generator | None = None):
        """Training pass: ``(reconstruction, mean, logvar)`` with z drawn from q(z | x) when ``sample``."""
        z, mean, logvar = self._raw_latent(x, sample, generator)
        return self.decode_raw(z), mean, logvar


@torch.no_grad()
def pca_init(model: Autoencoder, images: Tensor, *, max_patches: int = 200_000, seed: int = 0) -> Tensor:
    """Set the model's linear paths to the principal components of its f x f patches in ``images``
    (N, 3, H, W), uint8 or in [-1, 1]: the best linear code of C numbers per patch. Training
    then starts from PCA's reconstruction and the non-linear paths learn what it misses.
    Returns the variance share of each kept component (C,)."""
    x = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
    P, C = model.cfg.patch_values, model.cfg.latent_channels
    patches = model.unshuffle(x).transpose(0, 1).reshape(P, -1)  # (P, number of patches)
    if patches.shape[1] > max_patches:
        keep = torch.randperm(patches.shape[1], generator=torch.Generator().manual_seed(seed))[:max_patches]
        patches = patches[:, keep]
    mean, basis, share = pca_of(patches, C)
    model.enc_linear.weight.copy_(basis.T[:, :, None, None])
    model.enc_linear.bias.copy_(-(basis.T @ mean))
    model.dec_linear.weight.copy_(basis[:, :, None, None])
    model.dec_linear.bias.copy_(mean)
    return share


def pca_of(patches: Tensor, C: int) -> tuple[Tensor, Tensor, Tensor]:
    """Principal components of the columns of ``patches`` (P, N): ``(mean (P,), basis (P, C),
    variance share of each component (C,))``, the basis orthonormal, largest variance first.

    The code of a patch p is ``basis.T @ (p - mean)``; its reconstruction ``mean + basis @ code``
    has the smallest squared error of any C-number linear code."""
    if patches.dim() != 2 or not 1 <= C <= patches.shape[0]:
        raise BadRequest(f"need patches (P, N) and 1 <= C <= P, got {tuple(patches.shape)} and C = {C}")
    patches = patches.double()
    mean = patches.mean(1)
    centred = patches - mean[:, None]
    values, vectors = torch.linalg.eigh(centred @ centred.T / centred.shape[1])  # ascending
    basis = vectors[:, -C:].flip(1)  # (P, C), largest first
    return mean.float(), basis.float(), (values.flip(0)[:C] / values.sum()).float()


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent value, averaged: 0.5 (mean^2 + var - 1 - logvar)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Horizontal and vertical differences of neighbouring pixels: where the edges are."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def ae_loss(
    model: Autoencoder,
    batch,
    *,
    generator: torch.Generator | None = None,
    kl_weight: float = 1e-4,
    grad_weight: float = 1.0,
) -> Tensor:
    """Reconstruction loss of one batch (images (B, 3, H, W) in [-1, 1], or a tuple whose first item is):
    L1 on the pixels + ``grad_weight`` x L1 on the image gradients (keeps edges sharp, where plain L1
    blurs them) + ``kl_weight`` x the KL term per latent value."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    x_hat, mean, logvar = model(x, generator=generator)
    loss = (x_hat - x).abs().mean()
    if grad_weight:
        (gx, gy), (hx, hy) = image_gradients(x), image_gradients(x_hat)
        loss = loss + grad_weight * 0.5 * ((hx - gx).abs().mean() + (hy - gy).abs().mean())
    return loss + kl_weight * kl_divergence(mean, logvar)


@torch.no_grad()
def measure_latent_stats(model: Autoencoder, images: Tensor, *, batch: int = 32) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of the encoder's latent means over ``images``
    (N, 3, H, W), uint8 or in [-1, 1]; stores them in the model as ``latent_shift`` and
    ``latent_scale`` and returns them."""
    C = model.cfg.latent_channels
    total, total_sq, count = torch.zeros(C, dtype=torch.float64), torch.zeros(C, dtype=torch.float64), 0
    for start in range(0, images.shape[0], batch):
        x = images[start : start + batch]
        x = x.to(model.latent_scale.device)  # the photos may stay on the CPU while the model trains on a GPU
        mean, _ = model.moments(x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x)
        m = mean.double().transpose(0, 1).reshape(C, -1)
        total += m.sum(1).cpu()
        total_sq += m.pow(2).sum(1).cpu()
        count += m.shape[1]
    shift = total / count
    scale = (total_sq / count - shift.pow(2)).clamp_min(1e-12).sqrt()
    model.latent_shift.copy_(shift.float())
    model.latent_scale.copy_(scale.float())
    return shift.float(), scale.float()
