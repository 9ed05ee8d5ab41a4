"""Non-integrated baseline: per-case frequencies of the nearest k-means centroid, for each k.

Cohort tiles (their embeddings) are assigned to the saved centroids of ``mixture-ray cluster``
(``mag-<m>/k-<k>/centroids.npy`` with its ``scaler.json``); columns are ``<mag>x/c<cluster>``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray

from mixture_ray.cases.frequencies import combine, frequencies
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Location, read_parquet_files
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.store.clusterings import clustering_folder, nearest_centroid
from mixture_ray.store.embeddings import fixed_list_to_matrix
from mixture_ray.store.folder import committed_locations
from mixture_ray.store.schemas import magnification_label
from mixture_ray.store.store_index import read_index

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mixture_ray.locations import Uri


def load_centroids(clusters: Path, magnification: float, k: int) -> tuple[np.ndarray, dict[str, object]]:
    """Centroids and scaler of one saved clustering; a clear error naming what exists otherwise."""
    folder = clustering_folder(clusters, magnification, k)
    if not (folder / "centroids.npy").exists():
        found = sorted(p.name for p in folder.parent.glob("k-*")) if folder.parent.exists() else []
        raise ConfigError(
            f"clusters: {folder} has no centroids (found {found or 'none'} at "
            f"{magnification_label(magnification)}); "
            f"run `mixture-ray cluster --ks ...` with k={k} first"
        )
    return np.load(folder / "centroids.npy"), json.loads((folder / "scaler.json").read_text())


def assign(x: np.ndarray, centroids: np.ndarray, scaler: dict[str, object]) -> np.ndarray:
    """Nearest-centroid cluster per row, in the space the clustering was fitted in."""
    if scaler.get("mean") is not None:
        mean = np.asarray(scaler["mean"], np.float32)
        scale = np.asarray(scaler["scale"], np.float32)
        x = (x - mean) / scale
    labels, _ = nearest_centroid(x, centroids)
    return labels


def clustered_feature(clusters: Path) -> str:
    """The embedding column the clusterings were fitted on (from the cluster stage's metrics.csv)."""
    path = Path(clusters) / "metrics.csv"
    if not path.exists():
        raise ConfigError(f"clusters: {path} not found; give a folder written by `mixture-ray cluster`")
    features = sorted(set(pd.read_csv(path)["feature"].astype(str)))
    if len(features) != 1:
        raise ConfigError(f"clusters: {path} mixes embedding columns {features}; cluster one of them")
    return features[0]


#: A nearest-centroid model per (magnification, k): centroids and the scaler they were fitted with.
Models = dict[tuple[float, int], tuple[np.ndarray, dict[str, object]]]
COUNT_SCHEMA = pa.schema([("magnification", pa.float64()), ("k", pa.int64()), ("case_id", pa.string()),
                          ("cluster", pa.int64()), ("count", pa.int64())])


def count_file(batch: dict[str, np.ndarray], *, feature: str, models: Models) -> pa.Table:
    """``map_batches`` body: per-case nearest-centroid counts of one embedding file, for every k.

    Only the counts leave the task (magnification, k, case_id, cluster, count); the embeddings
    stay where they are read.
    """
    (path,) = batch["path"]
    table = read_parquet_files([str(path)], columns=["case_id", "magnification", feature])
    parts: list[pd.DataFrame] = []
    for mag in set(table["magnification"].to_pylist()):
        if mag is None:
            raise ConfigError(f"embeddings: {path} has tiles of unknown magnification")
        part = table.filter(pc.equal(table["magnification"], mag))
        x = fixed_list_to_matrix(part[feature])
        cases = np.asarray(part["case_id"].to_pylist(), dtype=object)
        for (model_mag, k), (centroids, scaler) in models.items():
            if model_mag != float(mag):
                continue
            labels = assign(x, centroids, scaler)
            frame = pd.DataFrame({"case_id": cases, "cluster": labels})
            counts = frame.groupby(["case_id", "cluster"]).size().rename("count").reset_index()
            parts.append(counts.assign(magnification=float(mag), k=k))
    columns = [f.name for f in COUNT_SCHEMA]
    frame = pd.concat(parts)[columns] if parts else pd.DataFrame(columns=columns)
    return pa.Table.from_pandas(frame.astype({"cluster": "int64", "count": "int64", "k": "int64"}),
                                schema=COUNT_SCHEMA, preserve_index=False)


def stored_magnifications(stores: Sequence[Path | Uri], files: Sequence[Location]) -> set[float]:
    """Magnifications present in embedding stores (from their indexes); unknown ones refused.

    Stores written before the index counted magnifications are read (one small column per file).
    """
    found: set[float] = set()
    for store in stores:
        counts = read_index(Location.of(store)).magnification_rows()
        if counts is None:
            return _file_magnifications(files)
        if "unknown" in counts:
            raise ConfigError(f"embeddings: {store} has tiles of unknown magnification")
        found.update(float(m) for m in counts)
    return found


def _file_magnifications(files: Sequence[Location]) -> set[float]:
    found: set[float] = set()
    for file in files:
        for mag in set(read_parquet_files([file], columns=["magnification"])["magnification"].to_pylist()):
            if mag is None:
                raise ConfigError(f"embeddings: {file} has tiles of unknown magnification")
            found.add(float(mag))
    return found


def baseline_tables(embeddings: Sequence[Path | Uri], clusters: Path,
                    ks: Sequence[int]) -> dict[int, pd.DataFrame]:
    """Per-case cluster frequencies for each k (magnifications side by side).

    The nearest-centroid pass runs as a Ray Data map over the embedding files: each task reads one
    file and returns only per-case counts, so the driver never holds the embeddings.

    Args:
        embeddings: complete embedding stores, folders or URIs (one per magnification, or several).
        clusters: the folder written by ``mixture-ray cluster`` (centroids per magnification and k).
        ks: the k of each baseline table.

    Returns:
        k -> per-case frequencies, columns ``<mag>x/c<cluster>``.
    """
    feature = clustered_feature(clusters)
    files = [f for store in embeddings for f in committed_locations(store)]
    mags = sorted(stored_magnifications(embeddings, files))
    models: Models = {(mag, k): load_centroids(clusters, mag, k) for mag in mags for k in ks}
    ensure_ray()
    paths = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=max(1, len(files)))
    count = functools.partial(count_file, feature=feature, models=models)
    counted = paths.map_batches(count, batch_size=1, batch_format="numpy")
    counts = pd.concat([cast("pa.Table", b).to_pandas() for b in
                        counted.iter_batches(batch_size=None, batch_format="pyarrow")] or [pd.DataFrame()])
    out: dict[int, pd.DataFrame] = {}
    for k in ks:
        tables = []
        for mag in mags:
            centroids = models[(mag, k)][0]
            names = [f"c{c}" for c in range(len(centroids))]
            part = counts[(counts["k"] == k) & (counts["magnification"] == mag)] if len(counts) else counts
            wide = part.pivot_table(index="case_id", columns="cluster", values="count", aggfunc="sum",
                                    fill_value=0) if len(part) else pd.DataFrame()
            wide = wide.reindex(columns=range(len(centroids)), fill_value=0)
            wide.columns = [f"{magnification_label(mag)}/{c}" for c in names]
            wide.index = wide.index.astype(str)
            wide.index.name = "case_id"
            tables.append(wide.astype(np.int64))
        out[k], _ = frequencies(combine(tables))
    return out
