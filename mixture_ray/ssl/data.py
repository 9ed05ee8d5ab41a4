"""Tile rows for the SSL stages: tile store files -> Ray Data rows (pixels decoded for training).

Files are read by Ray tasks with pyarrow (one file per task, only the needed columns and
magnification), which keeps Ray Data's path listing, and its optional-dependency imports, out
of the way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from mixture_ray.config import PretrainConfig
from mixture_ray.errors import ConfigError
from mixture_ray.io.committed_store import committed_files
from mixture_ray.tiling.encode import decode_tile


def read_tile_file(batch: dict[str, Any], columns: Sequence[str], magnification: float | None) -> pa.Table:
    """``map_batches`` body: the rows of one Parquet file (at ``magnification`` when given)."""
    (path,) = batch["path"]
    table = pq.read_table(str(path), columns=list(dict.fromkeys([*columns, "magnification", "encoding"])))
    keep = pc.not_equal(table["encoding"], "none")
    if magnification is not None:
        keep = pc.and_(keep, pc.equal(table["magnification"], magnification))
    return table.filter(keep).select(list(columns))


def tile_rows(files: Sequence[Path], columns: Sequence[str], magnification: float | None) -> ray.data.Dataset:
    """Rows with pixels of the tile files, as a lazy dataset (one read task per file)."""
    read = functools.partial(read_tile_file, columns=tuple(columns), magnification=magnification)
    items = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=len(files))
    return items.map_batches(read, batch_size=1, batch_format="numpy")


def decode_images(batch: Any) -> dict[str, np.ndarray]:
    """Encoded tile bytes -> one uint8 (B, H, W, 3) array (tiles of a store share one size)."""
    return {"image": np.stack([decode_tile(bytes(b)) for b in batch["image"]])}


def tile_dataset(cfg: PretrainConfig) -> ray.data.Dataset:
    """Decoded tiles for training; materialised in the object store when ``cache_tiles``."""
    files = committed_files(cfg.tiles)
    if not files:
        raise ConfigError(f"tiles: {cfg.tiles} holds no tiles")
    ds = tile_rows(files, ["image"], cfg.magnification)
    ds = ds.map_batches(decode_images, batch_format="numpy", batch_size=256)
    if cfg.cache_tiles:
        ds = ds.materialize()
    n = ds.count()
    if n < cfg.batch_size * cfg.workers:
        where = f" at magnification {cfg.magnification}" if cfg.magnification is not None else ""
        raise ConfigError(
            f"tiles: {cfg.tiles} has {n} tiles with pixels{where}, fewer than one step needs "
            f"(batch_size {cfg.batch_size} x workers {cfg.workers})"
        )
    return ds
