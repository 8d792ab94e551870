"""Image augmentation of EfficientZero's consistency loss (spec A7 step 1).

Random shift by up to ``pad`` pixels (replicate padding, then a random crop back to the input size)
followed by intensity scaling ``x * (1 + scale * clip(N(0, 1), -2, 2))``. Each sample gets one shift
and one intensity factor for its whole stacked tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(
    x: torch.Tensor, pad: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x [B, C, H, W] float -> same shape, each sample shifted by an integer offset in [-pad, pad]^2."""
    if pad == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(x.device)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(x.device)
    # Gather with index arithmetic instead of a Python loop over samples.
    rows = oy[:, None] + torch.arange(h, device=x.device)[None, :]  # [B, H]
    cols = ox[:, None] + torch.arange(w, device=x.device)[None, :]  # [B, W]
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def random_intensity(
    x: torch.Tensor, scale: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x [B, ...] -> x * (1 + scale * clip(noise, -2, 2)), one noise value per sample."""
    if scale == 0:
        return x
    noise = (
        torch.randn((x.shape[0],), generator=generator, device="cpu").clamp_(-2.0, 2.0).to(x.device)
    )
    return x * (1.0 + scale * noise).view(-1, *([1] * (x.dim() - 1)))


def augment(
    x: torch.Tensor, *, shift: int, intensity: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift then intensity (EZ order); x [B, C, H, W] float in [0, 1]."""
    return random_intensity(random_shift(x, shift, generator), intensity, generator)
