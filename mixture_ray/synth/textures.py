"""Procedural H&E-like textures, one family per finding, rendered as periodic patches.

Scale: level 0 at about 0.5 um/px (nuclei ~8-12 px across, alveoli ~130 px, fat cells ~55 px).
Each family differs in colour (stain mix), in structure (lace, streaks, dots, spindles, mesh) and
in nuclear density, so they separate at 20x, 5x and 2.5x alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixture_ray.synth import findings
from mixture_ray.synth.procedural import (
    Array,
    Stains,
    adipocytes,
    blur,
    nuclei,
    smooth_noise,
    to_rgb,
    voronoi_edges,
)

if TYPE_CHECKING:
    from collections.abc import Callable


def background(rng: np.random.Generator, size: int) -> Stains:
    """Glass / airspace: almost no stain."""
    e = 0.015 + 0.01 * smooth_noise(rng, size, 30)
    return np.zeros_like(e), np.clip(e, 0, None), None


def normal_alveolar(rng: np.random.Generator, size: int) -> Stains:
    """Rounded alveoli (~130 px) with white air spaces inside a lace of pink septa.

    Septa carry a few elongated nuclei and red blood cells in capillaries; corners are rounded
    by blurring the Voronoi borders so junctions thicken as in real lung.
    """
    edge, _ = voronoi_edges(rng, size, 128, jitter=1.0)
    width = 11.0 + 3.0 * smooth_noise(rng, size, 12)
    space = blur(np.clip(edge - width, -6, 6), 9) > 0.5
    septa = blur(1.0 - space.astype(np.float32), 1.2)
    e = septa * (0.6 + 0.12 * smooth_noise(rng, size, 6)) + 0.02
    wall = septa > 0.9
    h = nuclei(rng, size, size * size // 7000, (3.5, 5.0), (1.8, 2.8), None, (0.9, 1.3),
                where=wall)
    rbc = nuclei(rng, size, size * size // 5000, (3.0, 3.6), (1.0, 1.2), None, (1.0, 1.2),
                  where=wall)
    return h, np.maximum(e, 1.6 * rbc), None


def dense_fibrosis(rng: np.random.Generator, size: int) -> Stains:
    """Solid deep pink collagen with wavy parallel streaks and sparse elongated nuclei."""
    yy = np.arange(size, dtype=np.float32)[:, None]
    warp = 30 * smooth_noise(rng, size, 90, 40)
    period = size / 48
    streaks = np.sin(2 * np.pi * (yy + warp) / period)
    e = 1.05 + 0.22 * streaks + 0.12 * smooth_noise(rng, size, 25, 4)
    h = nuclei(rng, size, size * size // 30000, (4.0, 5.0), (5.0, 8.0), 0.0, (0.9, 1.2))
    return h, np.clip(e, 0.5, None), None


def cellular_inflammation(rng: np.random.Generator, size: int) -> Stains:
    """Pink stroma packed with small round dark lymphocyte/plasma-cell nuclei."""
    e = 0.5 + 0.1 * smooth_noise(rng, size, 12)
    h = nuclei(rng, size, int(0.32 * size * size / (np.pi * 4.2**2)), (3.5, 4.8), (1.0, 1.25),
                None, (1.3, 1.7))
    return h, np.clip(e, 0.2, None) * (1 - 0.5 * np.clip(h, 0, 1)), None


def fibroblastic_foci(rng: np.random.Generator, size: int) -> Stains:
    """Pale blue-grey myxoid matrix with faint fibres and parallel spindle (fibroblast) nuclei."""
    fibres = smooth_noise(rng, size, 30, 2)
    m = 0.75 + 0.15 * fibres + 0.1 * smooth_noise(rng, size, 20)
    e = 0.08 + 0.03 * smooth_noise(rng, size, 20)
    h = nuclei(rng, size, size * size // 1500, (5.5, 7.0), (9.0, 14.0), 0.0, (0.9, 1.2))
    return h, np.clip(e, 0.02, None), np.clip(m, 0.3, None) * (1 - 0.6 * np.clip(h, 0, 1))


def lymphoid_aggregate(rng: np.random.Generator, size: int) -> Stains:
    """Very dense sheets of dark round lymphocyte nuclei."""
    h = nuclei(rng, size, int(0.95 * size * size / (np.pi * 4.6**2)), (4.0, 5.2), (1.0, 1.15),
                None, (1.8, 2.3))
    base = 0.55 + 0.08 * smooth_noise(rng, size, 8)
    return np.maximum(h, base), np.full_like(h, 0.25), None


def fat(rng: np.random.Generator, size: int) -> Stains:
    """Regular polygonal adipocytes (~55 px) with thin pink membranes and pale interiors."""
    return adipocytes(rng, size, cell_px=55, jitter=0.7, membrane_px=3.2, membrane_eosin=0.7,
                      max_tint=0.24, px_per_nucleus=40000)



RENDERERS: dict[int, Callable[[np.random.Generator, int], Stains]] = {
    findings.BACKGROUND: background,
    findings.NORMAL: normal_alveolar,
    findings.DENSE_FIBROSIS: dense_fibrosis,
    findings.INFLAMMATION: cellular_inflammation,
    findings.FIBROBLASTIC_FOCI: fibroblastic_foci,
    findings.LYMPHOID: lymphoid_aggregate,
    findings.FAT: fat,
}


def render_texture(code: int, rng: np.random.Generator, size: int) -> Array:
    """One periodic ``size x size x 3`` uint8 RGB patch of finding ``code``."""
    return to_rgb(RENDERERS[code](rng, size), rng)
