"""Random affine distortions of image batches, drawn from an explicit generator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 10.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
    shear: float = 0.1,
) -> torch.Tensor:
    """Distort every image of ``x`` ``(B, C, H, W)`` by its own random affine map.

    Rotation uniform in ``[-degrees, degrees]``, shift up to ``translate`` of the side, zoom in
    ``scale`` and shear up to ``shear``; one ``grid_sample`` for the whole batch (bilinear, zero
    padding, which is the background).  Parameters are drawn on the CPU from ``generator`` so the
    result is the same on every device.
    """
    b = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    angle = u(-degrees, degrees) * math.pi / 180
    zoom = u(*scale)
    sh = u(-shear, shear)
    tx, ty = u(-translate, translate) * 2, u(-translate, translate) * 2  # grid units span 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin + sh * cos, tx], 1), torch.stack([sin, cos + sh * sin, ty], 1)], 1
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
