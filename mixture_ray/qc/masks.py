"""Pixel masks of a low-resolution slide image: tissue, pen ink and tissue folds (numpy only).

Background follows the house rule (every channel above ``background``); pen ink is recognised by
colour (saturated green or blue whose green exceeds red, unlike haematoxylin's purple, and
near-black ink), folds as tissue much darker than the slide's own tissue and saturated, or as
eosin-pink tissue much darker than the slide's own pink tissue.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage


@dataclasses.dataclass(frozen=True)
class ColourPlanes:
    """Float planes of an RGB image: channels, HSV value and saturation, hue in degrees."""

    r: np.ndarray
    g: np.ndarray
    b: np.ndarray
    value: np.ndarray
    saturation: np.ndarray
    hue: np.ndarray


def colour_planes(rgb: np.ndarray) -> ColourPlanes:
    """Split an (h, w, 3) uint8 image into float channels and HSV (hue in [0, 360))."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    high, low = f.max(axis=-1), f.min(axis=-1)
    span = high - low
    saturation = np.where(high > 0, span / np.maximum(high, 1e-6), 0.0)
    safe = np.maximum(span, 1e-6)
    hue = np.select(
        [high == r, high == g],
        [((g - b) / safe) % 6.0, (b - r) / safe + 2.0],
        (r - g) / safe + 4.0,
    ) * 60.0
    return ColourPlanes(r, g, b, high, saturation, np.where(span > 0, hue, 0.0))


def tissue_mask(rgb: np.ndarray, *, background: int = 220, min_saturation: float = 0.04) -> np.ndarray:
    """Tissue pixels: not background (some channel <= ``background``) and not grey glass or dust.

    Args:
        rgb: (h, w, 3) uint8 low-resolution image.
        background: a pixel with every channel above this is background.
        min_saturation: greyer pixels (dust, glass edges, shadows) are not tissue unless dark.

    Returns:
        A boolean (h, w) mask, small specks removed.
    """
    planes = colour_planes(rgb)
    foreground = (rgb <= background).any(axis=-1)
    coloured = (planes.saturation >= min_saturation) | (planes.value < 100)
    mask = foreground & coloured
    return np.asarray(ndimage.binary_opening(mask, iterations=1))


def pen_mask(rgb: np.ndarray) -> np.ndarray:
    """Pen ink by colour: saturated green, saturated blue (green above red) or near-black ink."""
    p = colour_planes(rgb)
    green = (p.g > p.r + 30) & (p.g >= p.b - 10) & (p.saturation > 0.3)
    blue = (p.b > p.r + 60) & (p.g > p.r + 10) & (p.saturation > 0.5) & (p.hue > 185) & (p.hue < 235)
    black = (p.value < 50) & (p.saturation < 0.45)
    ink = green | blue | black
    return np.asarray(ndimage.binary_opening(ink, iterations=1))


def fold_mask(rgb: np.ndarray, tissue: np.ndarray, *, darkness: float = 0.55,
              min_saturation: float = 0.45, pink_darkness: float = 0.7, smooth_px: int = 3) -> np.ndarray:
    """Tissue folds: doubled-over tissue, much darker than the slide's own tissue of its colour.

    Two rules, either of which marks a pixel (both also require ``min_saturation``: overlapping
    stained layers):

    - darker than ``darkness`` x the median brightness (HSV value, the brightest channel) of the
      tissue: folded haematoxylin-rich (purple, blue) tissue;
    - eosin-pink (hue >= 290 or < 10 degrees) and darker than ``pink_darkness`` x the median grey
      level of the slide's pink tissue: in pink tissue the brightest channel is red, which eosin
      barely absorbs, so a doubled layer hardly lowers the first rule's brightness; the grey level
      (mostly green, which eosin absorbs) does drop.

    Args:
        rgb: (h, w, 3) uint8 low-resolution image.
        tissue: its tissue mask.
        darkness: a fold pixel is darker than this fraction of the median tissue brightness.
        min_saturation: and at least this saturated (overlapping stained layers).
        pink_darkness: a pink fold pixel's grey level is below this fraction of the median grey
            level of the pink tissue.
        smooth_px: the image is box-averaged over this many pixels first, so single nuclei never
            count as folds.

    Returns:
        A boolean (h, w) mask inside ``tissue``.
    """
    if not tissue.any():
        return np.zeros(tissue.shape, bool)
    smooth = ndimage.uniform_filter(rgb.astype(np.float32), size=(smooth_px, smooth_px, 1))
    p = colour_planes(np.clip(smooth, 0, 255).astype(np.uint8))
    reference = float(np.median(p.value[tissue]))
    saturated = tissue & (p.saturation > min_saturation)
    fold = saturated & (p.value < darkness * reference)
    pink = tissue & ((p.hue >= 290) | (p.hue < 10))
    if pink.any():
        grey = 0.299 * p.r + 0.587 * p.g + 0.114 * p.b
        fold |= saturated & pink & (grey < pink_darkness * float(np.median(grey[pink])))
    return np.asarray(ndimage.binary_opening(fold, iterations=1))


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` grown by ``pixels`` (a margin around flagged regions)."""
    if pixels <= 0 or not mask.any():
        return mask
    return np.asarray(ndimage.binary_dilation(mask, iterations=pixels))
