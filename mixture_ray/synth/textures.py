"""Procedural H&E-like textures, one family per finding, rendered as periodic (tileable) patches.

Each texture is built as two stain densities, haematoxylin ``h`` (nuclei, purple-blue) and eosin
``e`` (stroma, pink), and turned into RGB by Beer-Lambert absorption. Everything is periodic on a
``size x size`` torus (FFT noise, wrapped Voronoi seeds, wrapped nucleus stamps), so a slide can be
composed by indexing a patch modulo its size at any offset without seams. Scale: level 0 at about
0.5 um/px (nuclei ~8-12 px across, alveoli ~100 px, fat cells ~60 px).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial import cKDTree

from mixture_ray.synth import findings as F

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
    return (out - out.mean()) / (out.std() + 1e-8)


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
                  jitter: float = 1.0) -> Stains:
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


def _nuclei(rng: np.random.Generator, size: int, count: int, r: tuple[float, float],
            elong: tuple[float, float], angle: float | None, dark: tuple[float, float],
            where: Array | None = None) -> Array:
    """Haematoxylin map with ``count`` nuclei (radius range r, aspect range elong)."""
    canvas = np.zeros((size, size), np.float32)
    if where is None:
        centres = rng.uniform(0, size, (count, 2))
    else:
        ys, xs = np.nonzero(where)
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


def background(rng: np.random.Generator, size: int) -> Stains:
    """Glass / airspace: almost no stain."""
    e = 0.015 + 0.01 * smooth_noise(rng, size, 30)
    return np.zeros_like(e), np.clip(e, 0, None), None


def normal_alveolar(rng: np.random.Generator, size: int) -> Stains:
    """Rounded alveoli (~150 px) with white air spaces inside a lace of pink septa.

    Septa carry a few elongated nuclei and red blood cells in capillaries; corners are rounded
    by blurring the Voronoi borders so junctions thicken as in real lung.
    """
    edge, _ = voronoi_edges(rng, size, 150, jitter=1.0)
    width = 11.0 + 3.0 * smooth_noise(rng, size, 12)
    space = blur(np.clip(edge - width, -6, 6), 9) > 0.5
    septa = blur(1.0 - space.astype(np.float32), 1.2)
    e = septa * (0.6 + 0.12 * smooth_noise(rng, size, 6)) + 0.02
    wall = septa > 0.9
    h = _nuclei(rng, size, size * size // 7000, (3.5, 5.0), (1.8, 2.8), None, (0.9, 1.3),
                where=wall)
    rbc = _nuclei(rng, size, size * size // 5000, (3.0, 3.6), (1.0, 1.2), None, (1.0, 1.2),
                  where=wall)
    return h, np.maximum(e, 1.6 * rbc), None


def dense_fibrosis(rng: np.random.Generator, size: int) -> Stains:
    """Solid deep pink collagen with wavy parallel streaks and sparse elongated nuclei."""
    yy = np.arange(size, dtype=np.float32)[:, None]
    warp = 30 * smooth_noise(rng, size, 90, 40)
    period = size / 48
    streaks = np.sin(2 * np.pi * (yy + warp) / period)
    e = 1.05 + 0.22 * streaks + 0.12 * smooth_noise(rng, size, 25, 4)
    h = _nuclei(rng, size, size * size // 30000, (4.0, 5.0), (5.0, 8.0), 0.0, (0.9, 1.2))
    return h, np.clip(e, 0.5, None), None


def cellular_inflammation(rng: np.random.Generator, size: int) -> Stains:
    """Pink stroma packed with small round dark lymphocyte/plasma-cell nuclei."""
    e = 0.5 + 0.1 * smooth_noise(rng, size, 12)
    h = _nuclei(rng, size, int(0.32 * size * size / (np.pi * 4.2**2)), (3.5, 4.8), (1.0, 1.25),
                None, (1.3, 1.7))
    return h, np.clip(e, 0.2, None) * (1 - 0.5 * np.clip(h, 0, 1)), None


def fibroblastic_foci(rng: np.random.Generator, size: int) -> Stains:
    """Pale blue-grey myxoid matrix with faint fibres and parallel spindle (fibroblast) nuclei."""
    fibres = smooth_noise(rng, size, 30, 2)
    m = 0.75 + 0.15 * fibres + 0.1 * smooth_noise(rng, size, 20)
    e = 0.08 + 0.03 * smooth_noise(rng, size, 20)
    h = _nuclei(rng, size, size * size // 1500, (5.5, 7.0), (9.0, 14.0), 0.0, (0.9, 1.2))
    return h, np.clip(e, 0.02, None), np.clip(m, 0.3, None) * (1 - 0.6 * np.clip(h, 0, 1))


def lymphoid_aggregate(rng: np.random.Generator, size: int) -> Stains:
    """Very dense sheets of dark round lymphocyte nuclei."""
    h = _nuclei(rng, size, int(0.95 * size * size / (np.pi * 4.6**2)), (4.0, 5.2), (1.0, 1.15),
                None, (1.8, 2.3))
    base = 0.55 + 0.08 * smooth_noise(rng, size, 8)
    return np.maximum(h, base), np.full_like(h, 0.25), None


def fat(rng: np.random.Generator, size: int) -> Stains:
    """Regular polygonal adipocytes (~55 px) with thin pink membranes and pale interiors."""
    edge, cell = voronoi_edges(rng, size, 55, jitter=0.7)
    membrane = np.clip(3.2 - edge, 0, 1.2) / 1.2
    tint = rng.uniform(0.0, 0.24, cell.max() + 1).astype(np.float32)[cell]
    e = membrane * 0.7 + (1 - membrane) * tint
    h = _nuclei(rng, size, size * size // 40000, (3.5, 4.5), (3.0, 4.0), None, (0.9, 1.1),
                where=membrane > 0.9)
    return h, e, None


RENDERERS: dict[int, Callable[[np.random.Generator, int], Stains]] = {
    F.BACKGROUND: background,
    F.NORMAL: normal_alveolar,
    F.DENSE_FIBROSIS: dense_fibrosis,
    F.INFLAMMATION: cellular_inflammation,
    F.FIBROBLASTIC_FOCI: fibroblastic_foci,
    F.LYMPHOID: lymphoid_aggregate,
    F.FAT: fat,
}


def render_texture(code: int, rng: np.random.Generator, size: int) -> Array:
    """One periodic ``size x size x 3`` uint8 RGB patch of finding ``code``."""
    return to_rgb(RENDERERS[code](rng, size), rng)
