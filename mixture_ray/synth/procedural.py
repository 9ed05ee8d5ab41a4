"""Periodic (tileable) procedural primitives: noise, blur, ellipse stamps, Voronoi, stain colour.

Everything lives on a ``size x size`` torus (FFT filtering, wrapped seeds and stamps), so a patch
can be indexed modulo its size at any offset without seams. Colour follows Beer-Lambert
absorption of stain densities: haematoxylin (nuclei, purple-blue), eosin (stroma, pink) and an
optional grey-blue myxoid ground substance.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

Array = np.ndarray
# Optical density per unit stain for (R, G, B); chosen so typical densities look like H&E.
H_OD = np.array([0.62, 0.80, 0.26], dtype=np.float32)
E_OD = np.array([0.08, 0.82, 0.34], dtype=np.float32)
# Grey-blue myxoid ground substance of fibroblastic foci.
M_OD = np.array([0.32, 0.24, 0.12], dtype=np.float32)
Stains = tuple[Array, Array, Array | None]  # haematoxylin, eosin, myxoid (optional)


def smooth_noise(rng: np.random.Generator, size: int, sigma: float,
                 sigma_y: float | None = None) -> Array:
    """Periodic Gaussian-filtered white noise, zero mean and unit std (anisotropic if sigma_y)."""
    white = rng.standard_normal((size, size)).astype(np.float32)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    sy = sigma if sigma_y is None else sigma_y
    gain = np.exp(-2 * np.pi**2 * ((fy * sy) ** 2 + (fx * sigma) ** 2))
    out = np.fft.irfft2(np.fft.rfft2(white) * gain, s=(size, size)).astype(np.float32)
    normalised: Array = (out - out.mean()) / (out.std() + 1e-8)
    return normalised


def blur(image: Array, sigma: float) -> Array:
    """Periodic Gaussian blur (FFT)."""
    size = image.shape[0]
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    gain = np.exp(-2 * np.pi**2 * sigma**2 * (fy**2 + fx**2))
    return np.fft.irfft2(np.fft.rfft2(image) * gain, s=image.shape).astype(np.float32)


def stamp_ellipses(canvas: Array, centres: Array, a: Array, b: Array, angle: Array,
                   value: Array) -> None:
    """Paint filled ellipses (semi-axes a, b, rotation angle) with ``value``, wrapping edges.

    Overlaps keep the maximum. ``centres`` is (n, 2) as (y, x).
    """
    if len(centres) == 0:
        return
    size = canvas.shape[0]
    r = int(np.ceil(max(a.max(), b.max()))) + 1
    off = np.arange(-r, r + 1, dtype=np.float32)
    oy, ox = np.meshgrid(off, off, indexing="ij")
    cy, cx = centres[:, 0], centres[:, 1]
    fy, fx = cy - np.floor(cy), cx - np.floor(cx)
    dy = oy[None] - fy[:, None, None]
    dx = ox[None] - fx[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (dx * cos + dy * sin) / a[:, None, None]
    v = (-dx * sin + dy * cos) / b[:, None, None]
    inside = u * u + v * v <= 1.0
    n, yy, xx = np.nonzero(inside)
    rows = (np.floor(cy).astype(np.int64)[n] + yy - r) % size
    cols = (np.floor(cx).astype(np.int64)[n] + xx - r) % size
    np.maximum.at(canvas, (rows, cols), value[n])


def voronoi_edges(rng: np.random.Generator, size: int, spacing: float,
                  jitter: float = 1.0) -> tuple[Array, Array]:
    """Periodic Voronoi cells: (half distance to the nearest cell border, cell index) per pixel.

    Seeds sit on a grid of ``spacing`` moved by up to ``jitter`` * spacing / 2 (1.0 = random).
    """
    n = max(2, round(size / spacing))
    step = size / n
    gy, gx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    seeds = np.stack([gy.ravel(), gx.ravel()], 1) * step + step / 2
    seeds += rng.uniform(-0.5, 0.5, seeds.shape) * step * jitter
    seeds %= size
    tree = cKDTree(seeds, boxsize=size)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    points = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)
    dist, idx = tree.query(points, k=2)
    edge = ((dist[:, 1] - dist[:, 0]) / 2).reshape(size, size).astype(np.float32)
    return edge, idx[:, 0].reshape(size, size)


def nuclei(rng: np.random.Generator, size: int, count: int, r: tuple[float, float],
            elong: tuple[float, float], angle: float | None, dark: tuple[float, float],
            where: Array | None = None) -> Array:
    """Haematoxylin map with ``count`` nuclei (radius range r, aspect range elong)."""
    canvas = np.zeros((size, size), np.float32)
    if where is None:
        centres = rng.uniform(0, size, (count, 2))
    else:
        ys, xs = np.nonzero(where)
        if len(ys) == 0:
            return canvas
        pick = rng.integers(0, len(ys), count)
        centres = np.stack([ys[pick], xs[pick]], 1) + rng.uniform(0, 1, (count, 2))
    radius = rng.uniform(*r, count).astype(np.float32)
    aspect = rng.uniform(*elong, count).astype(np.float32)
    theta = (rng.uniform(0, np.pi, count) if angle is None
             else angle + rng.normal(0, 0.12, count)).astype(np.float32)
    value = rng.uniform(*dark, count).astype(np.float32)
    stamp_ellipses(canvas, centres, radius * np.sqrt(aspect), radius / np.sqrt(aspect), theta,
                   value)
    return canvas


def to_rgb(stains: Stains, rng: np.random.Generator) -> Array:
    """Beer-Lambert RGB uint8 from stain densities, with a little sensor grain."""
    h, e, m = stains
    od = h[..., None] * H_OD + e[..., None] * E_OD
    if m is not None:
        od += m[..., None] * M_OD
    rgb = 255.0 * np.exp(-od) + rng.normal(0, 1.5, od.shape).astype(np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def adipocytes(rng: np.random.Generator, size: int, *, cell_px: int, jitter: float, membrane_px: float,
               membrane_eosin: float, max_tint: float, px_per_nucleus: int) -> Stains:
    """Polygonal fat cells: eosin membranes ``membrane_px`` thick, pale tinted interiors, rare nuclei.

    Args:
        rng: the generator (the draws are made in a fixed order, so a seed gives the same texture).
        size: the texture's edge in pixels.
        cell_px: the cells' typical diameter.
        jitter: how irregular the cells are (Voronoi seed jitter).
        membrane_px: membrane thickness, in pixels of distance to the cell edge.
        membrane_eosin: eosin of a membrane pixel.
        max_tint: the most eosin a cell's interior gets (uniform per cell).
        px_per_nucleus: texture pixels per nucleus on the membranes.
    """
    edge, cell = voronoi_edges(rng, size, cell_px, jitter=jitter)
    membrane = np.clip(membrane_px - edge, 0, 1.2) / 1.2
    tint = rng.uniform(0.0, max_tint, cell.max() + 1).astype(np.float32)[cell]
    e = membrane * membrane_eosin + (1 - membrane) * tint
    h = nuclei(rng, size, size * size // px_per_nucleus, (3.5, 4.5), (3.0, 4.0), None, (0.9, 1.1),
               where=membrane > 0.9)
    return h, e, None
