"""Labelled tiles as training feeds: keys shuffled before any pixel is read, decoded by Ray Data tasks.

The driver holds only the labelled tiles' keys (slide, position, target, file), grouped by the
tile part that holds them. Each epoch, a worker's feed (:class:`mixture_ray.model_input.feed.TrainingFeed`)
orders the parts by the seed and the epoch, and one read task per part reads the ``image`` column
of only the labelled slides (a Parquet pushdown), keeps the keys the epoch draws by an exact key
join, shuffles them (seeded) and decodes them; pixels never pass through the driver and are never
shuffled across the cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mixture_ray.model_input.feed import TrainingFeed
from mixture_ray.model_input.plan import RowFilter
from mixture_ray.store.schemas import TILE_KEY

if TYPE_CHECKING:
    import pandas as pd

KEY = list(TILE_KEY)


def labelled_feed(rows: pd.DataFrame, targets: np.ndarray, image_size: int, *, seed: int,
                  workers: int = 1) -> TrainingFeed:
    """The feed of labelled tiles: their keys per tile part, ``row`` = the index in ``rows``.

    Args:
        rows: labelled tiles with ``path`` (:func:`mixture_ray.finetune.data.join_tiles`).
        targets: class index per row of ``rows``.
        image_size: resize edge in pixels (0 = as stored).
        seed: orders of the parts and of the rows within them follow (seed, epoch).
        workers: training workers (a part is read in slices when parts are fewer).

    Returns:
        The feed; ``feed.dataset(epoch, ...)`` gives ``image`` (uint8 HWC), ``target``, ``row``
        and ``slide_id``.
    """
    keys = rows[[*KEY, "path"]].assign(target=np.asarray(targets, np.int64), row=np.arange(len(rows)))
    keys["magnification"] = keys["magnification"].astype("float64")
    files, tables = [], []
    for path, group in keys.groupby("path", sort=True):
        files.append(str(path))
        tables.append(pa.Table.from_pandas(group.drop(columns="path"), preserve_index=False))
    return TrainingFeed(files=tuple(files), rows=len(rows), rule=RowFilter(), seed=seed,
                        image_size=image_size, keys=tuple(tables),
                        slices=TrainingFeed.slices_for(len(files), workers))
