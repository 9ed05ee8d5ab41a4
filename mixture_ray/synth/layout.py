"""Where the findings go: case finding mixtures and per-slide region maps at mask resolution.

A slide layout is a region map (one id per mask pixel) plus the finding code of each region:
an irregular tissue blob on background, cut into warped Voronoi regions that each get a finding
drawn from the case mixture, with lymphoid aggregates stamped on top as round blobs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from mixture_ray.synth import findings

# Dirichlet concentrations over TISSUE_CODES (normal, fibrosis, inflammation, FF, lymphoid, fat).
ALPHA_UIP_LIKE: tuple[float, ...] = (1.5, 5.0, 1.5, 2.5, 0.8, 0.8)
ALPHA_OTHER: tuple[float, ...] = (4.0, 1.0, 3.0, 0.5, 1.2, 1.2)
TISSUE_FRACTION = (0.62, 0.80)  # slide area covered by tissue (before hole filling)
MIN_FINDINGS_PER_SLIDE = 4  # distinct region findings forced on every slide (if regions allow)


@dataclasses.dataclass(frozen=True)
class SlideLayout:
    """Region map (mask resolution, int32 ids) and the finding code of every region."""

    regions: np.ndarray
    codes: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Finding code per mask pixel (uint8)."""
        mask: np.ndarray = self.codes[self.regions].astype(np.uint8)
        return mask


def case_mixture(rng: np.random.Generator, uip_like: bool) -> dict[int, float]:
    """Planned finding proportions of a case (over tissue), from a type-specific Dirichlet."""
    alpha = ALPHA_UIP_LIKE if uip_like else ALPHA_OTHER
    p = rng.dirichlet(alpha)
    return {code: float(v) for code, v in zip(findings.TISSUE_CODES, p, strict=True)}


def coarse_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth zero-mean unit-std noise: a ``cells``-per-side random grid upsampled cubically."""
    grid = rng.standard_normal((cells + 3, cells + 3))
    zoom = ((shape[0] + 1) / cells, (shape[1] + 1) / cells)
    out = ndimage.zoom(grid, zoom, order=3)[1 : shape[0] + 1, 1 : shape[1] + 1]
    noise: np.ndarray = (out - out.mean()) / (out.std() + 1e-8)
    return noise


def tissue_blob(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Boolean irregular tissue region covering about 60-85 % of the slide."""
    h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    cy, cx = rng.uniform(-0.1, 0.1, 2)
    field = 1.0 - ((yy - cy) ** 2 + (xx - cx) ** 2) / 2 + 0.25 * coarse_noise(rng, shape, 5)
    target = rng.uniform(*TISSUE_FRACTION)
    tissue = field > np.quantile(field, 1.0 - target)
    tissue = ndimage.binary_fill_holes(tissue)
    labels, n = ndimage.label(tissue)
    if n > 1:  # keep the largest piece so the blob is one section
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        tissue = labels == sizes.argmax()
    return np.asarray(tissue, dtype=bool)


def _assign(rng: np.random.Generator, n: int, mixture: dict[int, float]) -> np.ndarray:
    """Finding code per Voronoi region drawn from the mixture, forcing a few distinct findings."""
    codes = np.array(findings.REGION_CODES)
    p = np.array([mixture[c] for c in findings.REGION_CODES])
    p = p / p.sum()
    out = rng.choice(codes, size=n, p=p)
    want = min(MIN_FINDINGS_PER_SLIDE, n)
    for code in codes[np.argsort(-p, kind="stable")]:
        present, counts = np.unique(out, return_counts=True)
        if len(present) >= want:
            break
        if code in present:
            continue
        donors = np.flatnonzero(out == present[counts.argmax()])
        out[rng.choice(donors)] = code
    return out


def make_layout(rng: np.random.Generator, shape: tuple[int, int], cell: float,
                mixture: dict[int, float]) -> SlideLayout:
    """Layout of one slide: ``shape`` is the mask size, ``cell`` the region diameter in mask px."""
    tissue = tissue_blob(rng, shape)
    if not tissue.any():  # only for absurdly small masks
        tissue[shape[0] // 2, shape[1] // 2] = True
    ty, tx = np.nonzero(tissue)
    n_cells = min(int(np.clip(round(len(ty) / cell**2), 6, 400)), len(ty))
    pick = rng.choice(len(ty), size=n_cells, replace=False)
    seeds = np.stack([ty[pick], tx[pick]], 1).astype(np.float64)
    amp, grid = 0.3 * cell, max(3, round(1.5 * max(shape) / cell))
    wy = amp * coarse_noise(rng, shape, grid)[ty, tx]
    wx = amp * coarse_noise(rng, shape, grid)[ty, tx]
    _, nearest = cKDTree(seeds).query(np.stack([ty + wy, tx + wx], 1))
    regions = np.full(shape, -1, dtype=np.int32)
    regions[ty, tx] = nearest
    codes = list(_assign(rng, n_cells, mixture))

    # Lymphoid aggregates: round, slightly wobbly blobs inside the tissue.
    blob_r = np.maximum(2.0, rng.uniform(0.18, 0.35, 64) * cell)
    expected = mixture[findings.LYMPHOID] * len(ty) / (np.pi * float(np.mean(blob_r)) ** 2)
    n_blobs = int(min(1 + rng.poisson(expected), 64, n_cells))
    for i in range(n_blobs):
        k = rng.integers(len(ty))
        r = blob_r[i]
        y0, y1 = max(0, int(ty[k] - 1.3 * r)), min(shape[0], int(ty[k] + 1.3 * r) + 1)
        x0, x1 = max(0, int(tx[k] - 1.3 * r)), min(shape[1], int(tx[k] + 1.3 * r) + 1)
        yy, xx = np.meshgrid(np.arange(y0, y1) - ty[k], np.arange(x0, x1) - tx[k], indexing="ij")
        theta = np.arctan2(yy, xx)
        wobble = 1 + 0.12 * np.sin(3 * theta + rng.uniform(0, 6.3)) \
            + 0.08 * np.sin(5 * theta + rng.uniform(0, 6.3))
        inside = (np.hypot(yy, xx) <= r * wobble) & tissue[y0:y1, x0:x1]
        regions[y0:y1, x0:x1][inside] = len(codes)
        codes.append(findings.LYMPHOID)
    regions[regions < 0] = len(codes)
    codes.append(findings.BACKGROUND)
    # Drop regions that blobs covered entirely, so every listed region is on the slide.
    used, compact = np.unique(regions, return_inverse=True)
    return SlideLayout(compact.reshape(shape).astype(np.int32),
                       np.asarray(codes, dtype=np.uint8)[used])
