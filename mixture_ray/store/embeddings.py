"""Load embedding rows of one magnification as a float32 matrix plus their keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixture_ray.locations import read_parquet_files
from mixture_ray.store.folder import committed_locations
from mixture_ray.store.schemas import TILE_ID_COLUMNS

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from mixture_ray.locations import Uri

KEYS = list(TILE_ID_COLUMNS)


def fixed_list_to_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """(n, d) float32 view of a fixed-size list column."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_fixed_size_list(array.type):
        raise ValueError(f"expected a fixed-size list column, got {array.type}")
    width = array.type.list_size
    return np.asarray(array.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(-1, width)


def load_embeddings(store: Path | Uri, feature: str) -> dict[float, tuple[pd.DataFrame, np.ndarray]]:
    """Per magnification: key rows (slide_id, case_id, x, y, magnification) and the matrix.

    Rows come in tile-key order (slide, y, x), not in the order of the store's chunks (named by
    random ids, and listed differently on an object store), so that a seeded clustering of the
    same store gives the same result wherever it is read from.
    """
    table = read_parquet_files(committed_locations(store), columns=[*KEYS, feature])
    table = table.sort_by([("slide_id", "ascending"), ("y", "ascending"), ("x", "ascending")])
    out: dict[float, tuple[pd.DataFrame, np.ndarray]] = {}
    for mag in sorted(set(table["magnification"].to_pylist()), key=lambda m: -1 if m is None else m):
        part = (
            table.filter(pc.equal(table["magnification"], mag))
            if mag is not None
            else table.filter(pc.is_null(table["magnification"]))
        )
        key = float("nan") if mag is None else float(mag)
        out[key] = (part.select(KEYS).to_pandas(), fixed_list_to_matrix(part[feature]))
    return out
