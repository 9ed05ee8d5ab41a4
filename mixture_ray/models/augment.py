"""Batched tile augmentation on the training device: flips, rotation, centre crop, colour jitter.

Flips, rotation and the centre crop are one affine grid per sample, so each view costs one
``grid_sample``; the crop removes the corners a rotation leaves empty (224 from 280 = 0.8).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.nn import functional as F  # noqa: N812 (the torch convention)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    """Augmentation settings (see PretrainConfig)."""

    crop_fraction: float = 0.8
    rotation: float = 20.0
    color_jitter: float = 0.0
    flips: bool = True


def to_float(tiles: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1], on the tiles' device."""
    return tiles.permute(0, 3, 1, 2).float().div_(255.0)


def normalise(images: torch.Tensor, mean: tuple[float, ...] = MEAN,
              std: tuple[float, ...] = STD) -> torch.Tensor:
    """Mean/std normalisation (ImageNet's by default) of (B, 3, H, W) images in [0, 1]."""
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images - m) / s


def resize_to(images: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """(B, 3, H, W) resized to ``size`` (antialiased bilinear) when the network needs a fixed size."""
    if size is None or tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def centre_crop(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """Deterministic centre crop keeping ``fraction`` of the edge."""
    if fraction >= 1.0:
        return images
    h, w = images.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return images[..., top : top + ch, left : left + cw]


def _colour_jitter(images: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    b = images.shape[0]

    def factor() -> torch.Tensor:
        u = torch.rand(b, 1, 1, 1, generator=gen, device=gen.device).to(images.device)
        return 1.0 + (2 * u - 1) * strength

    images = images * factor()
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factor() + mean
    grey = (images * torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)).sum(
        1, keepdim=True
    )
    images = (images - grey) * factor() + grey
    return images.clamp_(0.0, 1.0)


def random_view(images: torch.Tensor, spec: AugmentSpec, gen: torch.Generator, *,
                size: tuple[int, int] | None = None, mean: tuple[float, ...] = MEAN,
                std: tuple[float, ...] = STD) -> torch.Tensor:
    """One random view of float (B, 3, H, W) images in [0, 1], normalised.

    Args:
        images: float (B, 3, H, W) images in [0, 1].
        spec: the augmentation settings.
        gen: random generator (on the images' device or the CPU).
        size: (height, width) the view is resized to afterwards (a network's own input size);
            None keeps the cropped size.
        mean: normalisation mean (ImageNet's by default).
        std: normalisation std.

    Returns:
        Normalised views (B, 3, h, w): ``size``, or the centre crop of (H, W) when ``size`` is None.
    """
    b, _, h, w = images.shape
    dev = gen.device

    def rand() -> torch.Tensor:
        return torch.rand(b, generator=gen, device=dev).to(images.device)

    angle = (2 * rand() - 1) * math.radians(spec.rotation)
    sx = torch.where(rand() < 0.5, -1.0, 1.0) if spec.flips else torch.ones(b, device=images.device)
    sy = torch.where(rand() < 0.5, -1.0, 1.0) if spec.flips else torch.ones(b, device=images.device)
    cos, sin, f = torch.cos(angle), torch.sin(angle), spec.crop_fraction
    theta = torch.zeros(b, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 0, 1] = f * cos * sx, -f * sin * sy
    theta[:, 1, 0], theta[:, 1, 1] = f * sin * sx, f * cos * sy
    out_h, out_w = max(1, round(h * f)), max(1, round(w * f))
    grid = F.affine_grid(theta, [b, 3, out_h, out_w], align_corners=False)
    view = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if spec.color_jitter > 0:
        view = _colour_jitter(view, spec.color_jitter, gen)
    return normalise(resize_to(view, size), mean, std)
