"""Per-cluster montages: up to N random tiles of each cluster in a grid, as PNG bytes."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from mixture_ray.store.codec import decode_tile
from mixture_ray.store.schemas import TILE_KEY

KEY = list(TILE_KEY)


def sample_per_cluster(assignments: pd.DataFrame, per_cluster: int, seed: int) -> pd.DataFrame:
    """At most ``per_cluster`` rows of each cluster, drawn with ``seed``."""
    parts = []
    for cluster, rows in assignments.groupby("cluster", sort=True):
        take = min(per_cluster, len(rows))
        parts.append(rows.sample(n=take, random_state=seed + int(str(cluster))))
    return pd.concat(parts, ignore_index=True) if parts else assignments.iloc[:0]


def fetch_images(tile_files: list[str], keys: pd.DataFrame) -> pd.DataFrame:
    """Encoded images of the tiles named by ``keys`` (slide_id, x, y, magnification)."""
    slides = pa.array(sorted(set(keys.slide_id)), pa.string())
    table = pq.read_table(tile_files, columns=[*KEY, "image"], filters=pc.field("slide_id").isin(slides))
    images = table.to_pandas()
    images["magnification"] = images["magnification"].astype("float64")
    wanted = keys.copy()
    wanted["magnification"] = wanted["magnification"].astype("float64")
    return wanted.merge(images, on=KEY, how="left")


def montage_png(images: list[bytes], thumb: int = 96, columns: int = 12) -> bytes:
    """A grid of tiles resized to ``thumb`` px, as PNG bytes (white where fewer tiles)."""
    rows = max(1, math.ceil(len(images) / columns))
    width = min(columns, max(1, len(images)))
    canvas = np.full((rows * thumb, width * thumb, 3), 255, np.uint8)
    for i, data in enumerate(images):
        tile = Image.fromarray(decode_tile(data)).resize((thumb, thumb), Image.Resampling.BILINEAR)
        r, c = divmod(i, columns)
        canvas[r * thumb : (r + 1) * thumb, c * thumb : (c + 1) * thumb] = np.asarray(tile)
    out = io.BytesIO()
    Image.fromarray(canvas).save(out, format="PNG", optimize=True)
    return out.getvalue()
