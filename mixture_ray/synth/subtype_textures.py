"""Procedural textures of the v2 "b" sub-types (sub-type "a" is the v1 texture of each finding).

Three "b" sub-types are built to look like another finding: fibroblastic foci "b" has the pink
stroma and nuclear density of cellular inflammation "a" (but parallel spindle nuclei), dense
fibrosis "b" is pale hyalinised collagen with slit-like clefts much like normal alveolar "b"
(collapsed alveoli, thick septa), and cellular inflammation "b" sits in the pale blue-grey
ground substance of fibroblastic foci "a" (but with sparse round nuclei). Lymphoid and fat "b"
are simpler variations in size and density. Same scale as :mod:`textures` (about 0.5 um/px).
"""

from __future__ import annotations

import numpy as np

from mixture_ray.synth.procedural import Stains, adipocytes, blur, nuclei, smooth_noise, voronoi_edges


def collapsed_alveolar(rng: np.random.Generator, size: int) -> Stains:
    """Collapsed alveoli: small slit-like air spaces between thick pale pink septa."""
    edge, _ = voronoi_edges(rng, size, 72, jitter=1.0)
    width = 17.0 + 3.0 * smooth_noise(rng, size, 10)
    space = blur(np.clip(edge - width, -6, 6), 4) > 0.5
    septa = blur(1.0 - space.astype(np.float32), 2.0)
    e = septa * (0.62 + 0.06 * smooth_noise(rng, size, 16)) + 0.02
    h = nuclei(rng, size, size * size // 9000, (3.5, 4.5), (2.0, 3.0), None, (0.8, 1.1),
               where=septa > 0.9)
    return h, e, None


def hyalinised_fibrosis(rng: np.random.Generator, size: int) -> Stains:
    """Pale smooth hyalinised collagen, broad faint bands, rare clefts and very few nuclei."""
    yy = np.arange(size, dtype=np.float32)[:, None]
    warp = 40 * smooth_noise(rng, size, 120, 60)
    bands = np.sin(2 * np.pi * (yy + warp) / (size / 12))
    e = 0.6 + 0.06 * bands + 0.05 * smooth_noise(rng, size, 30)
    cleft = smooth_noise(rng, size, 10, 3) > 2.2
    e = np.where(blur(cleft.astype(np.float32), 1.5) > 0.4, 0.05, e)
    h = nuclei(rng, size, size * size // 60000, (3.5, 4.5), (4.0, 6.0), 0.0, (0.7, 1.0))
    return h, np.clip(e, 0.02, None), None


def myxoid_inflammation(rng: np.random.Generator, size: int) -> Stains:
    """Sparse round dark nuclei scattered in pale blue-grey (myxoid) ground substance."""
    m = 0.78 + 0.1 * smooth_noise(rng, size, 20)
    e = 0.08 + 0.03 * smooth_noise(rng, size, 20)
    h = nuclei(rng, size, int(0.09 * size * size / (np.pi * 4.2**2)), (3.5, 4.8), (1.0, 1.25),
               None, (1.0, 1.3))
    return h, np.clip(e, 0.02, None), np.clip(m, 0.3, None) * (1 - 0.6 * np.clip(h, 0, 1))


def pink_spindle_foci(rng: np.random.Generator, size: int) -> Stains:
    """Pink (eosin) stroma with dense parallel spindle nuclei, as dark overall as inflammation."""
    e = 0.5 + 0.1 * smooth_noise(rng, size, 30, 4)
    h = nuclei(rng, size, size * size // 300, (4.5, 5.5), (6.0, 9.0), 0.0, (1.4, 1.8))
    return h, np.clip(e, 0.2, None) * (1 - 0.5 * np.clip(h, 0, 1)), None


def loose_lymphoid(rng: np.random.Generator, size: int) -> Stains:
    """Looser lymphoid tissue: larger, paler round nuclei with more stroma between them."""
    h = nuclei(rng, size, int(0.6 * size * size / (np.pi * 5.5**2)), (4.8, 6.2), (1.0, 1.2),
               None, (1.3, 1.7))
    base = 0.35 + 0.08 * smooth_noise(rng, size, 8)
    return np.maximum(h, base), np.full_like(h, 0.3), None


def small_fat(rng: np.random.Generator, size: int) -> Stains:
    """Small adipocytes (~35 px) with thicker membranes."""
    return adipocytes(rng, size, cell_px=35, jitter=0.8, membrane_px=4.5, membrane_eosin=0.75,
                      max_tint=0.18, px_per_nucleus=25000)
