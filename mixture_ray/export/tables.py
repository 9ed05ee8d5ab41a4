"""The per-tile tables an export is made from, for one group of slides: predictions, cluster ids, geometry.

Each reader takes the parts that hold the group's slides (:mod:`mixture_ray.export.slide_groups`)
and returns only those slides' rows, so a task holds its group, never the cohort. The magnification
column is float64 in every table, so that tables join on the tile key whatever the store wrote.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixture_ray.errors import ConfigError
from mixture_ray.export.slide_groups import mag_key, read_slide_rows
from mixture_ray.store.embeddings import fixed_list_to_matrix
from mixture_ray.store.schemas import (
    EMBEDDING_SCHEMA,
    PREDICTION_ID_COLUMNS,
    TILE_ID_COLUMNS,
    TILE_KEY,
    TILE_SCHEMA,
    magnification_label,
    prediction_schema,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

_K_FOLDER = re.compile(r"^k-(\d+)$")
KEY = list(TILE_KEY)
#: The tile geometry columns read from a tile store.
GEOMETRY = [*TILE_KEY, "case_id", "size_level0", "level", "tile_size", "mpp", "source"]


def cluster_column(k: int) -> str:
    """The column of the cluster ids of one k (``cluster_k8``)."""
    return f"cluster_k{k}"


def cluster_files(root: Path) -> dict[int, list[Path]]:
    """The ``assignments.parquet`` per k of each magnification clustered with that k, in k order.

    Raises:
        ConfigError: ``root`` holds no ``mag-*/k-*/assignments.parquet``.
    """
    found = sorted(Path(root).glob("mag-*/k-*/assignments.parquet"))
    if not found:
        raise ConfigError(f"clusters: {root} holds no mag-*/k-*/assignments.parquet; run mixture-ray cluster")
    by_k: dict[int, list[Path]] = {}
    for path in found:
        match = _K_FOLDER.match(path.parent.name)
        if match is not None:
            by_k.setdefault(int(match.group(1)), []).append(path)
    return dict(sorted(by_k.items()))


def cluster_table(files: dict[int, list[Path]], slides: Sequence[str]) -> pd.DataFrame:
    """Cluster ids of the tiles of ``slides`` in every clustering (``cluster_files``).

    Each assignment file is read with a ``slide_id`` filter pushed down to Parquet.

    Returns:
        One row per tile key with a ``cluster_k<k>`` column per k (-1 where a magnification was
        not clustered with that k).
    """
    wanted = [("slide_id", "in", list(slides))]
    table: pd.DataFrame | None = None
    for k, paths in files.items():
        frames = [pq.read_table(p, columns=[*TILE_KEY, "cluster"], filters=wanted).to_pandas() for p in paths]
        part = pd.concat(frames, ignore_index=True).rename(columns={"cluster": cluster_column(k)})
        part["magnification"] = part["magnification"].astype("float64")
        table = part if table is None else table.merge(part, on=KEY, how="outer")
    assert table is not None
    columns = [cluster_column(k) for k in files]
    table[columns] = table[columns].fillna(-1).astype("int32")
    return table


def cluster_summary(path: str) -> tuple[list[int], list[str]]:
    """Task body: the cluster ids (>= 0) and the magnification keys of one assignment file."""
    table = pq.read_table(path, columns=["magnification", "cluster"])
    clusters = pc.unique(table["cluster"]).to_pylist()
    mags = pc.unique(pc.cast(table["magnification"], pa.float64())).to_pylist()
    return sorted(int(c) for c in clusters if c is not None and c >= 0), sorted({mag_key(m) for m in mags})


def tile_geometry(files: Sequence[str], slides: Sequence[str]) -> pd.DataFrame:
    """Tile key, case, level-0 size, level read, tile size and source file of the tiles of ``slides``.

    Args:
        files: the parts of the tile store holding the slides.
        slides: the slide ids.

    Returns:
        One row per tile, in store order.
    """
    frame: pd.DataFrame = read_slide_rows(files, slides, GEOMETRY, TILE_SCHEMA).to_pandas()
    frame["magnification"] = frame["magnification"].astype("float64")
    return frame


def prediction_rows(files: Sequence[str], slides: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """Prediction rows of ``slides`` with one ``p_<class>`` column per class, in store order."""
    columns = [*PREDICTION_ID_COLUMNS, "finding", "class_index", "confidence", "probabilities"]
    table = read_slide_rows(files, slides, columns, prediction_schema(list(classes)))
    rows: pd.DataFrame = table.drop_columns(["probabilities"]).to_pandas()
    rows["magnification"] = rows["magnification"].astype("float64")
    probs = (fixed_list_to_matrix(table["probabilities"]) if table.num_rows
             else np.zeros((0, len(classes)), np.float32))
    for i, name in enumerate(classes):
        rows[f"p_{name}"] = probs[:, i]
    return rows


def findings(files: Sequence[str], slides: Sequence[str]) -> pd.DataFrame:
    """Tile key and predicted finding of the tiles of ``slides``, in store order."""
    table = read_slide_rows(files, slides, [*TILE_KEY, "finding"], prediction_schema([]))
    rows: pd.DataFrame = table.to_pandas()
    rows["magnification"] = rows["magnification"].astype("float64")
    return rows


def prediction_measurements(classes: Sequence[str]) -> dict[str, str]:
    """QuPath measurement name -> prediction column: ``probability <class>`` and ``confidence``."""
    measurements = {f"probability {name}": f"p_{name}" for name in classes}
    measurements["confidence"] = "confidence"
    return measurements


def embedding_rows(files: Sequence[str], slides: Sequence[str], column: str,
                   magnification: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Keys (sorted by slide, y, x) and the embedding matrix of ``slides`` at one magnification key."""
    table = read_slide_rows(files, slides, [*TILE_ID_COLUMNS, column], EMBEDDING_SCHEMA, magnification)
    table = table.sort_by([("slide_id", "ascending"), ("y", "ascending"), ("x", "ascending")])
    keys = table.select(list(TILE_ID_COLUMNS)).to_pandas()
    keys["magnification"] = keys["magnification"].astype("float64")
    matrix = fixed_list_to_matrix(table[column]) if table.num_rows else np.zeros((0, 0), np.float32)
    return keys, matrix


def label(magnification: float | None) -> str:
    """``mag-20x``: how files of one magnification are named."""
    return f"mag-{magnification_label(magnification)}"
