"""How a clustering folder is written: under a temporary name, side files, then one rename.

Every engine writes the same files into a (magnification, k) folder (see ``stage.py``): the
assignments (one Parquet file from a driver engine, a folder of row-sized parts from the
distributed engine), ``centroids.npy``, ``scaler.json`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from mixture_ray.cluster.engines import KMeansFit


def new_tmp(folder: Path) -> Path:
    """A fresh temporary folder beside ``folder`` (renamed into place by :func:`replace`)."""
    tmp = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    return tmp


def replace(tmp: Path, folder: Path) -> None:
    """Put the finished ``tmp`` in the place of ``folder`` (an older clustering is removed)."""
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def write_side_files(tmp: Path, centroids: np.ndarray, scaler: dict[str, Any] | None,
                     metrics: dict[str, Any]) -> None:
    """``centroids.npy``, ``scaler.json`` (nulls when not z-scored) and ``metrics.json``."""
    np.save(tmp / "centroids.npy", centroids)
    (tmp / "scaler.json").write_text(json.dumps(scaler or {"mean": None, "scale": None}))
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))


def write_clustering(
    folder: Path,
    keys: pd.DataFrame,
    fit: KMeansFit,
    scaler: dict[str, Any] | None,
    metrics: dict[str, Any],
    local: np.ndarray | None,
    fitted: np.ndarray | None = None,
) -> None:
    """Write one (magnification, k) folder of a driver engine atomically (temporary name, then rename).

    ``local`` (per-case ids) adds a ``case_cluster`` column; ``fitted`` (a fold-nested fit) adds a
    ``fitted`` column: True for the rows k-means was fitted on.
    """
    tmp = new_tmp(folder)
    table = pa.Table.from_pandas(keys.reset_index(drop=True), preserve_index=False)
    table = table.append_column("cluster", pa.array(fit.labels, pa.int32()))
    if local is not None:
        table = table.append_column("case_cluster", pa.array(local, pa.int32()))
    if fitted is not None:
        table = table.append_column("fitted", pa.array(fitted, pa.bool_()))
    pq.write_table(table, tmp / "assignments.parquet")
    write_side_files(tmp, fit.centroids, scaler, metrics)
    replace(tmp, folder)
