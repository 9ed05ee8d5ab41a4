"""Tile store readers: committed tile files -> Ray Data rows, pixels decoded where needed.

Files are read by Ray tasks with pyarrow (one file per task, only the needed columns and
magnification), which keeps Ray Data's path listing, and its optional-dependency imports, out
of the way. A file is a local path or a URI; each task reads it through its location's file
system (with the retries of :mod:`mixture_ray.locations`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from mixture_ray.locations import read_parquet_files
from mixture_ray.store.codec import decode_tile

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from mixture_ray.locations import Location


def read_tile_file(batch: dict[str, Any], columns: Sequence[str], magnification: float | None) -> pa.Table:
    """``map_batches`` body: the rows of one Parquet file (at ``magnification`` when given)."""
    (path,) = batch["path"]
    table = read_parquet_files([str(path)], columns=dict.fromkeys([*columns, "magnification", "encoding"]))
    keep = pc.not_equal(table["encoding"], "none")
    if magnification is not None:
        keep = pc.and_(keep, pc.equal(table["magnification"], magnification))
    return table.filter(keep).select(list(columns))


def tile_rows(files: Sequence[Path | Location], columns: Sequence[str],
              magnification: float | None) -> ray.data.Dataset:
    """Rows with pixels of the tile files (paths or locations), as a lazy dataset (one read task per file)."""
    read = functools.partial(read_tile_file, columns=tuple(columns), magnification=magnification)
    items = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=len(files))
    return items.map_batches(read, batch_size=1, batch_format="numpy")


def decode_image_batch(batch: Any) -> dict[str, np.ndarray]:
    """Encoded tile bytes -> one uint8 (B, H, W, 3) array (tiles of a store share one size)."""
    return {"image": np.stack([decode_tile(bytes(b)) for b in batch["image"]])}
