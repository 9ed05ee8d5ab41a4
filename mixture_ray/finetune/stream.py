"""Labelled tiles as lazy Ray Data datasets: one read task per tile file, pixels decoded on CPU.

The driver holds only the labelled tiles' keys (slide, position, target, file); each read task
reads the ``image`` column of one tile file (only the labelled slides, a Parquet pushdown), keeps
the labelled rows by an exact key join, and decodes them, so pixels never pass through the driver.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from mixture_ray.errors import ConfigError
from mixture_ray.locations import Location
from mixture_ray.store.codec import decode_tile, resize_square
from mixture_ray.store.schemas import TILE_KEY

if TYPE_CHECKING:
    import pandas as pd

KEY = list(TILE_KEY)


def read_labelled_pixels(batch: pa.Table, image_size: int) -> dict[str, np.ndarray]:
    """``map_batches`` body: labelled keys (with ``path``, ``target``, ``row``) -> decoded tiles.

    Args:
        batch: key rows, usually those of one tile file.
        image_size: resize edge in pixels (0 = as stored; all tiles must then share one size).

    Returns:
        ``image`` uint8 (B, S, S, 3), ``target`` int64 and ``row`` int64 (index in the split).
    """
    frame = batch.to_pandas()
    frame["magnification"] = frame["magnification"].astype("float64")
    parts = []
    for path, wanted in frame.groupby("path", sort=False):
        slides = pa.array(sorted({str(s) for s in wanted["slide_id"]}), pa.string())
        where = Location.of(str(path))  # a local path or a URI
        images = pq.read_table(where.path, columns=[*KEY, "image"], filesystem=where.fs,
                               filters=pc.field("slide_id").isin(slides)).to_pandas()
        images["magnification"] = images["magnification"].astype("float64")
        parts.append(wanted.merge(images.drop_duplicates(KEY), on=KEY, how="left"))
    tiles, targets, rows = [], [], []
    for part in parts:
        for blob, target, row, slide, x, y in zip(part["image"], part["target"], part["row"],
                                                  part["slide_id"], part["x"], part["y"], strict=True):
            if not isinstance(blob, bytes | bytearray | memoryview):
                raise ConfigError(f"tile ({slide}, {x}, {y}) has no pixels in its tile file any more")
            tiles.append(resize_square(decode_tile(bytes(blob)), image_size))
            targets.append(int(target))
            rows.append(int(row))
    shapes = {a.shape for a in tiles}
    if len(shapes) > 1:
        raise ConfigError(f"image_size: tiles have several sizes {sorted(shapes)}; set image_size")
    image = np.stack(tiles) if tiles else np.zeros((0, image_size, image_size, 3), np.uint8)
    return {"image": image, "target": np.asarray(targets, np.int64), "row": np.asarray(rows, np.int64)}


def labelled_dataset(
    rows: pd.DataFrame, targets: np.ndarray, image_size: int, *, shuffle_seed: int | None = None
) -> ray.data.Dataset:
    """Decoded labelled tiles as a lazy dataset: one block (read task) per tile file.

    Args:
        rows: labelled tiles with ``path`` (:func:`mixture_ray.finetune.data.join_tiles`).
        targets: class index per row of ``rows``.
        image_size: resize edge in pixels (0 = as stored).
        shuffle_seed: when given, rows are shuffled with this seed (Ray Data reseeds each
            execution, so every epoch has another order).

    Returns:
        A dataset of ``image`` (uint8 HWC), ``target`` and ``row`` (the index in ``rows``).
    """
    keys = rows[[*KEY, "path"]].assign(target=np.asarray(targets, np.int64), row=np.arange(len(rows)))
    keys["magnification"] = keys["magnification"].astype("float64")
    tables = [pa.Table.from_pandas(group, preserve_index=False)
              for _, group in keys.groupby("path", sort=True)]
    read = functools.partial(read_labelled_pixels, image_size=image_size)
    dataset = ray.data.from_arrow(tables).map_batches(
        read, batch_size=None, batch_format="pyarrow", zero_copy_batch=True,
    )
    if shuffle_seed is not None:
        dataset = dataset.random_shuffle(seed=shuffle_seed)
    return dataset

