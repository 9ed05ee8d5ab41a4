"""Per-cluster montages: up to N random tiles of each cluster in a grid, as PNG bytes.

Tiles are sampled from the clustering's keys first; only the sampled tiles' pixels are then read
(a Parquet pushdown on slide and coordinates, exact keys kept batch by batch), so the driver's
memory follows the montage size, not the cohort.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from PIL import Image

from mixture_ray.store.codec import decode_tile
from mixture_ray.store.schemas import TILE_KEY

KEY = list(TILE_KEY)


def sample_per_cluster(assignments: pd.DataFrame, per_cluster: int, seed: int) -> pd.DataFrame:
    """At most ``per_cluster`` rows of each cluster, drawn with ``seed``.

    A fold-nested clustering (a ``fitted`` column) shows only the tiles it was fitted on, so the
    reviewer never sees the test cases.
    """
    if "fitted" in assignments.columns:
        assignments = assignments[assignments["fitted"]]
    parts = []
    for cluster, rows in assignments.groupby("cluster", sort=True):
        take = min(per_cluster, len(rows))
        parts.append(rows.sample(n=take, random_state=seed + int(str(cluster))))
    return pd.concat(parts, ignore_index=True) if parts else assignments.iloc[:0]


def key_strings(
    slide_id: pa.Array | pa.ChunkedArray, x: pa.Array | pa.ChunkedArray, y: pa.Array | pa.ChunkedArray
) -> pa.Array | pa.ChunkedArray:
    """One string per row naming its (slide_id, x, y), for exact set membership in pyarrow."""
    return pc.binary_join_element_wise(slide_id, pc.cast(x, pa.string()), pc.cast(y, pa.string()), "\x1f")


def read_images(tile_files: list[str], keys: pd.DataFrame, batch_rows: int = 256) -> pa.Table:
    """Key columns and ``image`` of the stored rows whose (slide_id, x, y) is among ``keys``.

    The scan pushes a slide/x/y filter down to Parquet (row groups without a wanted slide or
    coordinate are skipped) and keeps, batch by batch, only the rows whose exact (slide_id, x, y)
    is wanted, so memory holds the wanted tiles and one batch, never a whole slide or the cohort.

    Args:
        tile_files: committed Parquet files of a tile store.
        keys: the wanted tiles (slide_id, x, y; magnification is matched by the caller's join).
        batch_rows: rows per scanned batch.

    Returns:
        slide_id, x, y, magnification and image of the matching rows (every magnification stored
        at a wanted position).
    """
    columns = [*KEY, "image"]
    dataset = ds.dataset(tile_files, format="parquet")
    if keys.empty:
        return dataset.schema.empty_table().select(columns)
    slide_ids = pa.array(keys["slide_id"].astype(str), pa.string())
    xs, ys = pa.array(keys["x"], pa.int64()), pa.array(keys["y"], pa.int64())
    wanted = pc.unique(key_strings(slide_ids, xs, ys))
    expression = (
        pc.field("slide_id").isin(pc.unique(slide_ids))
        & pc.field("x").isin(pc.unique(xs))
        & pc.field("y").isin(pc.unique(ys))
    )
    kept = [dataset.schema.empty_table().select(columns)]
    for batch in dataset.to_batches(columns=columns, filter=expression, batch_size=batch_rows):
        mask = pc.is_in(key_strings(batch["slide_id"], batch["x"], batch["y"]), value_set=wanted)
        kept.append(pa.Table.from_batches([batch.filter(mask)]))
    return pa.concat_tables(kept)


def fetch_images(tile_files: list[str], keys: pd.DataFrame) -> pd.DataFrame:
    """``keys`` (slide_id, x, y, magnification, ...) with the encoded ``image`` of each tile.

    Only the named tiles' pixels are read (see :func:`read_images`); a key with no stored tile
    gets no image (a left join, magnification compared as float with NaN == NaN).

    Args:
        tile_files: committed Parquet files of a tile store.
        keys: the wanted tiles, in the order the result keeps.

    Returns:
        ``keys`` with an ``image`` column (bytes, or NaN where the tile is not stored).
    """
    images = read_images(tile_files, keys).to_pandas()
    images["magnification"] = images["magnification"].astype("float64")
    wanted = keys.copy()
    wanted["magnification"] = wanted["magnification"].astype("float64")
    return wanted.merge(images, on=KEY, how="left")


def montage_size(count: int, thumb: int = 96, columns: int = 12) -> tuple[int, int]:
    """Width and height in pixels of the montage of ``count`` tiles (what :func:`montage_png` draws).

    Args:
        count: tiles in the montage (0 still gives one white cell).
        thumb: cell edge in pixels.
        columns: cells per row at most.

    Returns:
        (width, height) in pixels, for the page's ``<img width height>`` (no layout shift while
        the montages load lazily).
    """
    rows = max(1, math.ceil(count / columns))
    return min(columns, max(1, count)) * thumb, rows * thumb


def montage_png(images: list[bytes], thumb: int = 96, columns: int = 12) -> bytes:
    """A grid of tiles resized to ``thumb`` px, as PNG bytes (white where fewer tiles)."""
    width, height = montage_size(len(images), thumb, columns)
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i, data in enumerate(images):
        tile = Image.fromarray(decode_tile(data)).resize((thumb, thumb), Image.Resampling.BILINEAR)
        r, c = divmod(i, columns)
        canvas[r * thumb : (r + 1) * thumb, c * thumb : (c + 1) * thumb] = np.asarray(tile)
    out = io.BytesIO()
    Image.fromarray(canvas).save(out, format="PNG", optimize=True)
    return out.getvalue()
