"""Blur of a seeded sample of tissue tiles: the variance of the Laplacian (Pech-Pacheco et al. 2000).

The Laplacian is linear in the image, so a stain's contrast scales it and contrast squared scales
its variance: a faded (pale) tile looks blurrier than it is. :func:`laplacian_variance` therefore
judges a tile paler than a normally stained one as if it were stained normally (``contrast``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from mixture_ray.errors import SlideError
from mixture_ray.slides.magnification import plan_level
from mixture_ray.slides.reader import resize_rgb

if TYPE_CHECKING:
    from mixture_ray.slides.reader import SlideReader

GREY = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class SampledTiles:
    """Tiles read for QC: level-0 boxes (x, y, edge) and the (n, px, px, 3) pixels."""

    boxes: np.ndarray
    pixels: np.ndarray


def laplacian_variance(rgb: np.ndarray, contrast: float = 0.0) -> float:
    """Variance of the Laplacian of the grey image (low: blurred or out of focus), contrast-normalised.

    Args:
        rgb: (h, w, 3) uint8 tile.
        contrast: the mean darkness (255 - grey level, averaged over the tile) of a normally
            stained tile; a paler tile's variance is multiplied by ``(contrast / darkness) ** 2``,
            as if its stain had that strength (fading moves every pixel toward white, which scales
            the Laplacian by the same factor as the darkness). Tiles at least this dark, and
            ``contrast`` 0, are unchanged.

    Returns:
        The (normalised) variance, in squared grey levels.
    """
    grey = rgb.astype(np.float32) @ GREY
    variance = float(ndimage.laplace(grey).var())
    darkness = float(255.0 - grey.mean())
    if contrast > 0 and darkness < contrast:
        variance *= (contrast / max(darkness, 1.0)) ** 2
    return variance


def sample_tiles(reader: SlideReader, tissue: np.ndarray, *, tile_px: int, sample_mpp: float,
                 manifest_mpp: float | None, count: int, seed: int,
                 min_tissue: float = 0.5) -> SampledTiles:
    """A seeded sample of tiles whose footprint is mostly tissue, read at ``sample_mpp``.

    Args:
        reader: the open slide.
        tissue: tissue mask of the whole slide (any resolution; geometry scales with level 0).
        tile_px: tile edge in pixels at ``sample_mpp``.
        sample_mpp: resolution of the tiles; level 0 when the slide's mpp is unknown or coarser.
        manifest_mpp: the manifest's mpp for the slide, if any.
        count: at most this many tiles.
        seed: the same seed picks the same tiles.
        min_tissue: share of a tile's footprint that must be tissue.

    Returns:
        The tiles sampled (none when the slide has no tissue).
    """
    try:
        plan = plan_level(reader, mpp=sample_mpp, manifest_mpp=manifest_mpp)
        level, level_ds, target_ds = plan.level, plan.level_downsample, plan.target_downsample
    except SlideError:  # mpp unknown or coarser than sample_mpp: sample level 0 as it is
        level, level_ds, target_ds = 0, 1.0, 1.0
    width, height = reader.level_dimensions[0]
    edge0 = max(1, round(tile_px * target_ds))
    ys, xs = np.mgrid[0 : max(1, height - edge0 + 1) : edge0, 0 : max(1, width - edge0 + 1) : edge0]
    boxes = np.stack([xs.ravel(), ys.ravel()], axis=1)
    sy, sx = tissue.shape[0] / height, tissue.shape[1] / width
    share = np.array([
        tissue[int(y * sy) : max(int(y * sy) + 1, int((y + edge0) * sy)),
               int(x * sx) : max(int(x * sx) + 1, int((x + edge0) * sx))].mean()
        for x, y in boxes
    ]) if len(boxes) else np.zeros(0)
    candidates = boxes[share >= min_tissue]
    rng = np.random.default_rng(seed)
    chosen = candidates[np.sort(rng.permutation(len(candidates))[:count])] if len(candidates) else candidates
    level_px = max(1, round(edge0 / level_ds))
    pixels = np.zeros((len(chosen), tile_px, tile_px, 3), np.uint8)
    for i, (x, y) in enumerate(chosen):
        region = reader.read_region((int(x), int(y)), level, (level_px, level_px))
        pixels[i] = resize_rgb(region, (tile_px, tile_px))
    out_boxes = np.column_stack([chosen, np.full(len(chosen), edge0)]).astype(np.int64)
    return SampledTiles(out_boxes.reshape(-1, 3), pixels)
