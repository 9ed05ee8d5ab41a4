"""Ground truth read back from finding masks: tile labels and per-case tissue fractions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mixture_ray.synth import findings

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path


def _overlap(start: int, size: int, ds: int, n: int) -> tuple[int, np.ndarray]:
    """First mask index and level-0 overlap (px) of [start, start+size) with mask cells 0..n-1."""
    first = max(0, start // ds)
    last = min(n - 1, (start + size - 1) // ds)
    if last < first:
        return first, np.zeros(0, np.int64)
    edges = np.arange(first, last + 2) * ds
    lo = np.maximum(edges[:-1], start)
    hi = np.minimum(edges[1:], start + size)
    return first, np.maximum(hi - lo, 0)


def tile_ground_truth(mask: np.ndarray, mask_downsample: int, x: int, y: int,
                      size: int) -> tuple[int, float]:
    """Majority finding code in the level-0 square (x, y, size) and its purity (area fraction).

    Mask pixels are weighted by their level-0 overlap with the square; area outside the mask
    counts as background (code 0). Ties go to the lower code.
    """
    if size <= 0 or mask_downsample <= 0:
        raise ValueError(f"size and mask_downsample must be > 0 (got {size}, {mask_downsample})")
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (got shape {mask.shape})")
    r0, wy = _overlap(y, size, mask_downsample, mask.shape[0])
    c0, wx = _overlap(x, size, mask_downsample, mask.shape[1])
    n_codes = max(int(mask.max(initial=0)) + 1, len(findings.FINDINGS))
    area = np.zeros(n_codes, np.float64)
    if len(wy) and len(wx):
        block = mask[r0 : r0 + len(wy), c0 : c0 + len(wx)].astype(np.int64)
        area += np.bincount(block.ravel(), weights=np.outer(wy, wx).ravel(), minlength=n_codes)
    area[findings.BACKGROUND] += float(size) * size - area.sum()
    code = int(area.argmax())
    return code, float(area[code] / (float(size) * size))


def code_counts(mask: np.ndarray) -> np.ndarray:
    """Mask pixel count per finding code (length = number of findings)."""
    return np.bincount(mask.ravel(), minlength=len(findings.FINDINGS))[: len(findings.FINDINGS)]


def tissue_fractions(masks: Iterable[np.ndarray]) -> dict[int, float]:
    """Fraction of tissue (non-background mask pixels, summed over masks) per tissue finding."""
    total = np.zeros(len(findings.FINDINGS), np.int64)
    for mask in masks:
        total += code_counts(mask)
    tissue = int(total[list(findings.TISSUE_CODES)].sum())
    return {c: (float(total[c]) / tissue if tissue else 0.0) for c in findings.TISSUE_CODES}


def read_mask(path: Path) -> np.ndarray:
    """A ground-truth mask PNG as a uint8 array of finding codes."""
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.uint8)


def write_mask(path: Path, mask: np.ndarray) -> None:
    """Save a finding-code mask as an 8-bit greyscale PNG (pixel value = code)."""
    Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(path, optimize=False)
