"""Per-slide tile coordinates (metadata only): grid, background estimate, seeded sampling."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mixture_ray.errors import SlideError
from mixture_ray.slides.magnification import mpp_for_magnification, plan_level

if TYPE_CHECKING:
    from mixture_ray.slides.reader import SlideReader
    from mixture_ray.tile.config import TileConfig

#: Columns the pixel stage needs besides the tile schema; dropped before writing.
READ_COLUMNS = ("read_size",)
#: Thumbnail pixels across the smallest tile footprint for the background estimate.
MASK_PX_PER_TILE = 8
MAX_MASK_SIDE = 4096
#: Tiles with more than this fraction inside a QC-flagged region are left out.
MAX_FLAGGED = 0.5


def sample_seed(seed: int, slide_id: str, magnification: float) -> int:
    """A per (slide, magnification) seed that does not depend on Python's hash salt."""
    return zlib.crc32(f"{seed}:{slide_id}:{magnification:g}".encode())


def background_mask(reader: SlideReader, downsample: float, threshold: int) -> tuple[np.ndarray, float]:
    """Boolean background mask at about ``downsample`` and the exact downsample used."""
    width, height = reader.level_dimensions[0]
    side = int(min(MAX_MASK_SIDE, max(1, max(width, height) / max(downsample, 1.0))))
    thumb = reader.thumbnail(side)
    mask = np.asarray((thumb > threshold).all(axis=-1))
    return mask, float(width / thumb.shape[1])


def estimated_background(
    mask: np.ndarray, mask_ds: float, xs: np.ndarray, ys: np.ndarray, size: int
) -> np.ndarray:
    """Mean of ``mask`` over each level-0 square (x, y, size), via an integral image."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int32)
    integral[1:, 1:] = mask.astype(np.int32).cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    h, w = mask.shape

    def to_mask(v: np.ndarray, limit: int) -> np.ndarray:
        return np.clip(np.floor(v / mask_ds).astype(np.int64), 0, limit)

    x0, y0 = to_mask(xs, w - 1), to_mask(ys, h - 1)
    x1 = np.maximum(to_mask(xs + size, w), x0 + 1)
    y1 = np.maximum(to_mask(ys + size, h), y0 + 1)
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return np.asarray(total / ((x1 - x0) * (y1 - y0)), dtype=np.float64)


def slide_coordinates(
    reader: SlideReader, *, slide_id: str, case_id: str, manifest_mpp: float | None, cfg: TileConfig,
    flagged: tuple[np.ndarray, float] | None = None, source: str | None = None,
) -> pa.Table:
    """Metadata rows of the tiles to read from one slide, for every configured magnification.

    ``flagged`` is QC's mask of flagged regions (pen, folds, blur) and its downsample: tiles more
    than half inside it are left out. ``source`` is what the rows name as the slide (default:
    the file the reader opened; a slide on object storage is named by its URI, not by the
    node-local copy the reader opened).
    """
    source = source or str(reader.path)
    width, height = reader.level_dimensions[0]
    plans = [plan_level(reader, magnification=m, manifest_mpp=manifest_mpp) for m in cfg.magnifications]
    smallest = min(p.level0_size(cfg.tile_size) for p in plans)
    mask, mask_ds = background_mask(reader, smallest / MASK_PX_PER_TILE, cfg.background_threshold)
    parts: list[dict[str, np.ndarray]] = []
    for magnification, plan in zip(cfg.magnifications, plans, strict=True):
        size0 = plan.level0_size(cfg.tile_size)
        step0 = cfg.step * plan.target_downsample
        xs = np.round(np.arange(0, width - size0 + 1, step0)).astype(np.int64)
        ys = np.round(np.arange(0, height - size0 + 1, step0)).astype(np.int64)
        gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
        est = estimated_background(mask, mask_ds, gx, gy, size0)
        usable = est <= cfg.max_background
        if flagged is not None:
            usable &= estimated_background(flagged[0], flagged[1], gx, gy, size0) <= MAX_FLAGGED
        keep = np.flatnonzero(usable)
        if cfg.max_tiles_per_slide and keep.size > cfg.max_tiles_per_slide:
            rng = np.random.default_rng(sample_seed(cfg.seed, slide_id, magnification))
            keep = np.sort(rng.choice(keep, size=cfg.max_tiles_per_slide, replace=False))
        n = keep.size
        parts.append(
            {
                "magnification": np.full(n, magnification, np.float32),
                "mpp": np.full(n, mpp_for_magnification(magnification), np.float32),
                "level": np.full(n, plan.level, np.int16),
                "x": gx[keep],
                "y": gy[keep],
                "size_level0": np.full(n, size0, np.int32),
                "read_size": np.full(n, plan.level_size(cfg.tile_size), np.int32),
            }
        )
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n_total = len(columns["x"])
    if n_total == 0:
        raise SlideError(
            source,
            f"no tissue: no tile at {', '.join(f'{m:g}x' for m in cfg.magnifications)} has at most "
            f"{cfg.max_background:.0%} background (or the slide is smaller than one tile)",
        )
    return pa.table(
        {
            "slide_id": pa.array([slide_id] * n_total, pa.string()),
            "case_id": pa.array([case_id] * n_total, pa.string()),
            **{k: pa.array(v) for k, v in columns.items()},
            "tile_size": pa.array(np.full(n_total, cfg.tile_size, np.int32)),
            "source": pa.array([source] * n_total, pa.string()),
            "error": pa.nulls(n_total, pa.string()),
        }
    )


def failure_row(*, slide_id: str, case_id: str, source: str, error: str) -> pa.Table:
    """A single metadata row that carries a slide's failure through the pipeline."""
    return pa.table(
        {
            "slide_id": pa.array([slide_id], pa.string()),
            "case_id": pa.array([case_id], pa.string()),
            "magnification": pa.array([None], pa.float32()),
            "mpp": pa.array([None], pa.float32()),
            "level": pa.array([-1], pa.int16()),
            "x": pa.array([-1], pa.int64()),
            "y": pa.array([-1], pa.int64()),
            "size_level0": pa.array([0], pa.int32()),
            "read_size": pa.array([0], pa.int32()),
            "tile_size": pa.array([0], pa.int32()),
            "source": pa.array([source], pa.string()),
            "error": pa.array([error], pa.string()),
        }
    )
