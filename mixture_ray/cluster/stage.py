"""`mixture-ray cluster`: k-means per magnification for each k; assignments, centroids, metrics.

Layout::

    out_dir/mag-<m>/k-<k>/assignments.parquet   slide_id, case_id, x, y, magnification, cluster
    out_dir/mag-<m>/k-<k>/centroids.npy          (k, d) float32, in the clustered (scaled) space
    out_dir/mag-<m>/k-<k>/scaler.json            mean/scale applied before clustering (or none)
    out_dir/mag-<m>/k-<k>/metrics.json           inertia, silhouette on a sample, engine, seconds
    out_dir/metrics.csv                          one row per (magnification, k)
    out_dir/_SUCCESS                             written last

With ``per_case`` each case is clustered on its own (k capped at its tile count) and the ids are
made unique across cases (``cluster`` = offset + local id, ``case_cluster`` keeps the local id).
Each (magnification, k) folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mixture_ray.cluster.engines import KMeansEngine, KMeansFit, get_kmeans_engine
from mixture_ray.report import Failure, Report
from mixture_ray.store.clusterings import clustering_folder
from mixture_ray.store.embeddings import load_embeddings
from mixture_ray.store.folder import SUCCESS, write_json_atomic

if TYPE_CHECKING:
    from mixture_ray.cluster.config import ClusterConfig


@dataclasses.dataclass(frozen=True)
class ClusterReport(Report):
    """Where the clusterings went and their metrics."""

    out_dir: Path
    metrics: pd.DataFrame
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """One line per clustering: magnification, k, rows, inertia, silhouette, seconds."""
        columns = ["magnification", "k", "rows", "inertia", "silhouette", "seconds"]
        return f"clusterings written to {self.out_dir}:\n{self.metrics[columns].to_string(index=False)}"


def standardize(x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Z-score columns; returns the scaled matrix and the parameters to reuse on new rows."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    return (x - mean) / scale, {"mean": mean.tolist(), "scale": scale.tolist()}


def silhouette(x: np.ndarray, labels: np.ndarray, sample: int, seed: int) -> float | None:
    """Silhouette score on at most ``sample`` rows (None when undefined or skipped)."""
    from sklearn.metrics import silhouette_score

    if sample == 0 or len(np.unique(labels)) < 2 or len(x) < 3:
        return None
    return float(silhouette_score(x, labels, sample_size=min(sample, len(x)), random_state=seed))


def fit_per_case(
    engine: KMeansEngine, keys: pd.DataFrame, x: np.ndarray, k: int, seed: int
) -> tuple[KMeansFit, np.ndarray]:
    """Cluster each case alone; global ids are offsets + local ids. Returns the fit and local ids."""
    labels = np.empty(len(x), np.int32)
    local = np.empty(len(x), np.int32)
    centroids, inertia, seconds, offset = [], 0.0, 0.0, 0
    for _, index in keys.groupby("case_id").indices.items():
        kk = max(1, min(k, len(index)))
        fit = engine.fit(x[index], kk, seed)
        local[index] = fit.labels
        labels[index] = fit.labels + offset
        centroids.append(fit.centroids)
        inertia += fit.inertia
        seconds += fit.seconds
        offset += kk
    merged = KMeansFit(np.concatenate(centroids), labels, inertia, 0, seconds, engine.name)
    return merged, local


def write_clustering(
    folder: Path,
    keys: pd.DataFrame,
    fit: KMeansFit,
    scaler: dict[str, Any] | None,
    metrics: dict[str, Any],
    local: np.ndarray | None,
) -> None:
    """Write one (magnification, k) folder atomically (temporary name, then rename)."""
    tmp = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    table = pa.Table.from_pandas(keys.reset_index(drop=True), preserve_index=False)
    table = table.append_column("cluster", pa.array(fit.labels, pa.int32()))
    if local is not None:
        table = table.append_column("case_cluster", pa.array(local, pa.int32()))
    pq.write_table(table, tmp / "assignments.parquet")
    np.save(tmp / "centroids.npy", fit.centroids)
    (tmp / "scaler.json").write_text(json.dumps(scaler or {"mean": None, "scale": None}))
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def run(cfg: ClusterConfig) -> ClusterReport:
    """Cluster every magnification of ``cfg.embeddings`` for every k in ``cfg.ks``.

    Args:
        cfg: the embedding store, the ks, the engine and the output folder.

    Returns:
        The output folder and one row of metrics per clustering written.
    """
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / SUCCESS).unlink(missing_ok=True)
    engine = get_kmeans_engine(cfg.engine)
    rows = []
    for magnification, (keys, x) in load_embeddings(cfg.embeddings, cfg.feature).items():
        scaler = None
        if cfg.standardize:
            x, scaler = standardize(x)
        for k in cfg.ks:
            if not cfg.per_case and k > len(x):
                continue  # fewer tiles than clusters at this magnification
            fit, local = (
                fit_per_case(engine, keys, x, k, cfg.seed)
                if cfg.per_case
                else (engine.fit(x, k, cfg.seed), None)
            )
            metrics = {
                "magnification": None if np.isnan(magnification) else magnification,
                "k": k,
                "clusters": len(fit.centroids),
                "rows": len(x),
                "inertia": fit.inertia,
                "silhouette": silhouette(x, fit.labels, cfg.silhouette_sample, cfg.seed),
                "engine": fit.engine,
                "seconds": fit.seconds,
                "per_case": cfg.per_case,
                "feature": cfg.feature,
                "standardize": cfg.standardize,
            }
            prefix = "per-case-k" if cfg.per_case else "k"
            write_clustering(
                clustering_folder(cfg.out_dir, magnification, k, prefix),
                keys,
                fit,
                scaler,
                metrics,
                local,
            )
            rows.append(metrics)
    table = pd.DataFrame(rows)
    table.to_csv(cfg.out_dir / "metrics.csv", index=False)
    write_json_atomic(cfg.out_dir / SUCCESS, {"clusterings": len(rows)})
    return ClusterReport(cfg.out_dir, table)
