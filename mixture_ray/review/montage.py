"""Per-cluster montages: up to N random tiles of each cluster in a grid, as PNG bytes.

Tiles are sampled from the clustering's keys first; only the sampled tiles' pixels are then read,
from the parts that hold their slides (:mod:`mixture_ray.review.tile_parts`), so the driver's
memory follows the montage size, not the cohort.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from PIL import Image

from mixture_ray.store.codec import decode_tile


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
