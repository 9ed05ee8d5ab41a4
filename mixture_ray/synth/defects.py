"""Planted QC defects: doctored copies of synthetic slides with known faults, and a seeded set of them.

Each doctoring function takes an (h, w, 3) uint8 image and returns a new one; :func:`plant` draws a
defect's strength and position from a generator, and :func:`write_defect_set` writes clean slides
and ``per_type`` slides of each :data:`DEFECT_TYPES` entry, each made from a different synthetic
slide, with a ``manifest.csv`` whose ``defect`` column holds the truth (``none`` for clean)::

    out_dir/slides/<defect>_<i>.svs   out_dir/base/<defect>/ (the synthetic cohorts they came from)
    out_dir/manifest.csv              slide_id, case_id, path, mpp, defect, base, params
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.config import build_config
from mixture_ray.synth.aperio_writer import write_svs
from mixture_ray.synth.cohort import write_cohort
from mixture_ray.synth.config import SynthConfig

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: The planted defect types, in table order; a clean slide's defect is :data:`CLEAN`.
DEFECT_TYPES = ("faded", "blurred", "pen", "fold", "fluorescence", "ihc")
CLEAN = "none"
MPP = 0.5
#: Pen inks the QC recognises by colour: blue, green and black (each jittered per stroke).
INKS = {"blue": (20, 70, 200), "green": (30, 150, 60), "black": (25, 25, 30)}
#: Fluorophore-like channel gains (R, G, B) of the stain signal on a dark background.
FLUOROPHORES = {"fitc": (0.1, 1.5, 0.6), "dapi": (0.3, 0.6, 1.6), "tritc": (1.6, 0.35, 0.2)}
#: Where a pen stroke's three vertices fall across the slide (fractions of the width).
PEN_COLUMNS = ((0.05, 0.3), (0.35, 0.65), (0.7, 0.95))
#: A blurred rectangle spans this share of the width, and of the height.
BLUR_EXTENT = (0.75, 1.0)
#: A fold band is placed where at least this share of it is tissue (the best of 20 tries otherwise).
FOLD_MIN_TISSUE = 0.4
MANIFEST_COLUMNS = ["slide_id", "case_id", "path", "mpp", "defect", "base", "params"]


def faded(image: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """A washed-out copy: every pixel moved toward white.

    Args:
        image: (h, w, 3) uint8 RGB.
        strength: share of each pixel's stain (its distance from white) that is kept.

    Returns:
        The faded image.
    """
    kept: np.ndarray = np.rint(255 - (255 - image.astype(np.float32)) * strength)
    return kept.astype(np.uint8)


def blurred(image: np.ndarray, sigma: float = 3.0,
            region: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """An out-of-focus copy (gaussian blur of each channel), whole or in one rectangle.

    Args:
        image: (h, w, 3) uint8 RGB.
        sigma: gaussian standard deviation in pixels.
        region: (x0, y0, x1, y1) as fractions of the width and height; the whole image if None.

    Returns:
        The blurred image.
    """
    from scipy import ndimage

    out = np.stack([ndimage.gaussian_filter(image[..., c], sigma) for c in range(3)], axis=-1)
    if region is None:
        return out
    h, w = image.shape[:2]
    x0, y0, x1, y1 = round(region[0] * w), round(region[1] * h), round(region[2] * w), round(region[3] * h)
    result = image.copy()
    result[y0:y1, x0:x1] = out[y0:y1, x0:x1]
    return result


def with_pen(image: np.ndarray, colour: tuple[int, int, int] = (20, 70, 200), width: int = 14,
             points: Sequence[tuple[float, float]] = ((0.1, 0.15), (0.9, 0.35))) -> np.ndarray:
    """A copy with a thick pen stroke (blue ink by default) across the upper half.

    Args:
        image: (h, w, 3) uint8 RGB.
        colour: the ink's RGB.
        width: stroke width in pixels.
        points: the stroke's vertices, (x, y) as fractions of the width and height.

    Returns:
        The image with the stroke drawn.
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image)
    h, w = image.shape[:2]
    ImageDraw.Draw(canvas).line([(x * w, y * h) for x, y in points], fill=colour, width=width, joint="curve")
    return np.asarray(canvas)


def fluorescence_like(image: np.ndarray, gains: tuple[float, float, float] = (0.0, 1.5, 0.6),
                      offset: int = 8) -> np.ndarray:
    """A dark-field copy: black background, tissue glowing where it was stained.

    Args:
        image: (h, w, 3) uint8 RGB of a bright-field slide.
        gains: per-channel (R, G, B) gain of the stain signal (green/blue by default).
        offset: dark level added everywhere (camera offset).

    Returns:
        The fluorescence-like image.
    """
    stain = 255 - image.astype(np.float32).min(axis=-1)
    tissue = (image <= 220).any(axis=-1)
    out = np.stack([np.clip(stain * g, 0, 255 - offset) * tissue for g in gains], axis=-1)
    return (out + offset).astype(np.uint8)


def ihc_like(image: np.ndarray, dab: tuple[float, float, float] = (110, 170, 230)) -> np.ndarray:
    """A DAB-stained-looking copy: the stained tissue turned brown.

    Args:
        image: (h, w, 3) uint8 RGB of an H&E slide.
        dab: how far each channel (R, G, B) drops from white at full stain (brown: blue most).

    Returns:
        The IHC-like image.
    """
    f = image.astype(np.float32)
    od = 1 - f.min(axis=-1, keepdims=True) / 255
    brown = np.array([255, 255, 255], np.float32) - od * np.array(dab, np.float32)
    return np.clip(np.where((image <= 220).any(axis=-1, keepdims=True), brown, f), 0, 255).astype(np.uint8)


def with_fold(image: np.ndarray, factor: float = 3.5, band: tuple[float, float] = (0.55, 0.8),
              vertical: bool = False) -> np.ndarray:
    """A copy whose band of tissue lies doubled over: its optical density multiplied.

    Args:
        image: (h, w, 3) uint8 RGB.
        factor: optical-density multiplier of the folded tissue.
        band: (start, end) of the band as fractions of the height (of the width when ``vertical``).
        vertical: fold a band of columns instead of rows.

    Returns:
        The folded image.
    """
    out = np.swapaxes(image, 0, 1).copy() if vertical else image.copy()
    n = out.shape[0]
    rows = slice(int(n * band[0]), int(n * band[1]))
    strip = out[rows]
    od = -np.log((strip.astype(np.float32) + 1) / 256)
    tissue = (strip <= 220).any(axis=-1, keepdims=True)
    darker = np.clip(256 * np.exp(-od * factor) - 1, 0, 255)
    out[rows] = np.where(tissue, darker, strip).astype(np.uint8)
    return np.ascontiguousarray(np.swapaxes(out, 0, 1)) if vertical else out


def _plant_faded(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    strength = round(rng.uniform(0.3, 0.5), 3)
    return faded(image, strength), {"strength": strength}


def _plant_blurred(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    sigma, bw, bh = round(rng.uniform(2.5, 5.0), 2), rng.uniform(*BLUR_EXTENT), rng.uniform(*BLUR_EXTENT)
    x0, y0 = rng.uniform(0, 1 - bw), rng.uniform(0, 1 - bh)
    region = (round(x0, 3), round(y0, 3), round(x0 + bw, 3), round(y0 + bh, 3))
    return blurred(image, sigma, region), {"sigma": sigma, "region": list(region)}


def _plant_pen(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    ink = str(rng.choice(sorted(INKS)))
    if ink == "black":  # a dark grey, nearly neutral
        base = np.full(3, rng.integers(20, 41)) + rng.integers(-3, 4, 3)
    else:
        base = np.array(INKS[ink]) + rng.integers(-10, 11, 3)
    r, g, b = (int(c) for c in np.clip(base, 0, 255))
    width = max(2, round(rng.uniform(10, 20) * image.shape[1] / 512))
    points = [(round(rng.uniform(x0, x1), 3), round(rng.uniform(0.1, 0.9), 3)) for x0, x1 in PEN_COLUMNS]
    return (with_pen(image, (r, g, b), width, points),
            {"ink": ink, "colour": [r, g, b], "width": width, "points": [list(p) for p in points]})


def _plant_fold(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    factor, vertical = round(rng.uniform(2.5, 4.0), 2), bool(rng.integers(2))
    tissue = (image <= 220).any(axis=-1).mean(axis=0 if vertical else 1)  # tissue share per row/column
    best: tuple[float, tuple[float, float]] = (-1.0, (0.0, 0.0))
    for _ in range(20):  # a fold doubles tissue over: put the band where there is tissue to fold
        size = rng.uniform(0.15, 0.3)
        start = rng.uniform(0.05, 0.95 - size)
        band = (round(start, 3), round(start + size, 3))
        share = float(tissue[int(band[0] * len(tissue)) : int(band[1] * len(tissue))].mean())
        best = max(best, (share, band))
        if share >= FOLD_MIN_TISSUE:
            break
    share, band = best
    return (with_fold(image, factor, band, vertical),
            {"factor": factor, "band": list(band), "vertical": vertical, "band_tissue": round(share, 3)})


def _plant_fluorescence(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    dye, gain, offset = str(rng.choice(sorted(FLUOROPHORES))), rng.uniform(0.8, 1.2), int(rng.integers(4, 17))
    gr, gg, gb = (round(g * gain, 3) for g in FLUOROPHORES[dye])
    params = {"dye": dye, "gains": [gr, gg, gb], "offset": offset}
    return fluorescence_like(image, (gr, gg, gb), offset), params


def _plant_ihc(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    scale, shift = rng.uniform(0.8, 1.2), rng.uniform(-10, 10)  # darker or lighter, more yellow or red
    dr, dg, db = (round(c * scale, 1) for c in (110.0, 170.0 + shift, 230.0))
    return ihc_like(image, (dr, dg, db)), {"dab": [dr, dg, db]}


PLANTERS = {"faded": _plant_faded, "blurred": _plant_blurred, "pen": _plant_pen, "fold": _plant_fold,
            "fluorescence": _plant_fluorescence, "ihc": _plant_ihc}


def plant(kind: str, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Doctor ``image`` with one defect of a seeded strength and position.

    Ranges: faded keeps 30-50 % of the stain; blur sigma 2.5-5 px over a rectangle spanning
    75-100 % of the width and of the height; a pen stroke of 10-20 px (at 512 px) in blue, green
    or black ink through three random points; a fold of 15-30 % of the slide (rows or columns,
    placed on tissue) with its optical density multiplied by 2.5-4; fluorescence-like with a FITC,
    DAPI or TRITC-like colour and gain; IHC-like with a DAB brown of varied depth and hue.

    Args:
        kind: one of :data:`DEFECT_TYPES`, or :data:`CLEAN` for an unchanged copy.
        image: (h, w, 3) uint8 RGB of a clean slide.
        rng: draws the defect's parameters.

    Returns:
        The doctored image and the parameters drawn (JSON-serialisable).
    """
    if kind == CLEAN:
        return image.copy(), {}
    if kind not in PLANTERS:
        raise ValueError(f"unknown defect {kind!r}; expected {CLEAN} or one of {', '.join(DEFECT_TYPES)}")
    return PLANTERS[kind](image, rng)


def _bands(image: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    for y in range(0, image.shape[0], tile):
        yield image[y : y + tile]


def write_like_svs(path: Path, image: np.ndarray, *, mpp: float = MPP, app_mag: float = 20.0,
                   tile: int = 128, levels: int = 2) -> Path:
    """Write ``image`` as an Aperio SVS (the synthetic cohort's writer, JPEG quality 92).

    Args:
        path: the file to write.
        image: (h, w, 3) uint8 RGB level 0.
        mpp: level-0 microns per pixel written in the description.
        app_mag: objective power written as AppMag.
        tile: TIFF tile edge (a multiple of 16).
        levels: pyramid levels.

    Returns:
        ``path``.
    """
    height, width = image.shape[:2]
    write_svs(path, _bands(image, tile), width=width, height=height, levels=levels, tile=tile,
              mpp=mpp, app_mag=app_mag, quality=92)
    return path


def _base_images(out_dir: Path, *, n: int, seed: int, size: int) -> list[tuple[str, np.ndarray]]:
    """``n`` clean synthetic slides (one cohort, one slide per case) as (file path, level-0 pixels)."""
    from mixture_ray.slides.factory import open_slide

    cohort = write_cohort(build_config(SynthConfig, {
        "out_dir": out_dir, "n_cases": n, "min_slides_per_case": 1, "max_slides_per_case": 1,
        "width": size, "height": size, "levels": 2, "tile_px": 128, "mpp": MPP, "seed": seed}))
    images = []
    for path in sorted(cohort.slides_dir.glob("*.svs")):
        reader = open_slide(path)
        try:
            images.append((str(path), reader.read_region((0, 0), 0, (size, size))))
        finally:
            reader.close()
    return images


def write_defect_set(out_dir: Path, *, per_type: int, seed: int, size: int = 512) -> Path:
    """Write clean slides and ``per_type`` slides of each defect type, each from its own base slide.

    Every defect type (and the clean set) gets its own synthetic cohort (its own seed, so its own
    textures and tissue layout); each slide of it is doctored with seeded parameters
    (:func:`plant`) and re-written with the same writer, so clean and doctored slides share a codec.

    Args:
        out_dir: folder to write (created; existing slides of the same names are replaced).
        per_type: slides per defect type, and clean slides.
        seed: the same seed gives the same set.
        size: slide edge in pixels at level 0 (0.5 um/px); at least 128.

    Returns:
        The path of ``manifest.csv``.
    """
    if per_type < 1 or size < 128:
        raise ValueError(f"per_type must be >= 1 and size >= 128 (got {per_type}, {size})")
    out_dir = Path(out_dir).absolute()
    slides = out_dir / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    kinds = (CLEAN, *DEFECT_TYPES)
    streams = np.random.SeedSequence(seed).spawn(len(kinds))
    rows: list[dict[str, Any]] = []
    for kind, stream in zip(kinds, streams, strict=True):
        cohort_seed, plant_seed = (int(s) for s in stream.generate_state(2))
        rng = np.random.default_rng(plant_seed)
        bases = _base_images(out_dir / "base" / kind, n=per_type, seed=cohort_seed, size=size)
        for i, (base, image) in enumerate(bases):
            doctored, params = plant(kind, image, rng)
            slide_id = f"{kind}_{i:02d}"
            write_like_svs(slides / f"{slide_id}.svs", doctored)
            rows.append({"slide_id": slide_id, "case_id": slide_id, "path": f"slides/{slide_id}.svs",
                         "mpp": MPP, "defect": kind, "base": str(Path(base).relative_to(out_dir)),
                         "params": json.dumps(params, sort_keys=True)})
    manifest = out_dir / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
