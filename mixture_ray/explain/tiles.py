"""Read padded tiles at a target mpp and turn them into a normalised batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from mixture_ray.slides.reader import SlideReader, resize_rgb

if TYPE_CHECKING:
    from mixture_ray.slides.magnification import LevelPlan

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def read_tile(reader: SlideReader, plan: LevelPlan, x: int, y: int, size: int,
              target_wh: tuple[int, int]) -> np.ndarray:
    """RGB tile of ``size`` target px at target (x, y); parts outside the slide are white."""
    out = np.full((size, size, 3), 255, np.uint8)
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + size, target_wh[0]), min(y + size, target_wh[1])
    if x1 <= x0 or y1 <= y0:
        return out
    td = plan.target_downsample
    level0 = (round(x0 * td), round(y0 * td))
    region = reader.read_region(level0, plan.level, (plan.level_size(x1 - x0), plan.level_size(y1 - y0)))
    out[y0 - y: y1 - y, x0 - x: x1 - x] = resize_rgb(region, (x1 - x0, y1 - y0))
    return out


def background_fraction(tile: np.ndarray, threshold: int) -> float:
    """Fraction of pixels with all of R, G, B above ``threshold``."""
    return float((tile > threshold).all(axis=-1).mean())


def to_batch(tiles: list[np.ndarray]) -> torch.Tensor:
    """uint8 (h, w, 3) tiles -> float (B, 3, h, w), ImageNet-normalised."""
    x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD
