"""`mixture-ray cluster`: k-means per magnification for each k; assignments, centroids, metrics.

Layout::

    out_dir/mag-<m>/k-<k>/assignments.parquet   slide_id, case_id, x, y, magnification, cluster
                                                 (engine distributed: a folder of part-<block>.parquet,
                                                 one per block of store parts, read the same by pyarrow)
    out_dir/mag-<m>/k-<k>/centroids.npy          (k, d) float32, in the clustered (scaled) space
    out_dir/mag-<m>/k-<k>/scaler.json            mean/scale applied before clustering (or none)
    out_dir/mag-<m>/k-<k>/metrics.json           inertia, silhouette on a sample, engine, seconds
    out_dir/metrics.csv                          one row per (magnification, k)
    out_dir/_SUCCESS                             written last: clusterings, engine, devices, nodes

With ``fit_split`` (a fold-nested run) k-means is fitted on the tiles of the split's training cases
only; every tile is then assigned to its nearest centroid, ``assignments`` gain a ``fitted`` column
(True = a training-case tile) and ``inertia`` is that of the fitted rows.

With ``per_case`` each case is clustered on its own (k capped at its tile count) and the ids are
made unique across cases (``cluster`` = offset + local id, ``case_cluster`` keeps the local id).
Each (magnification, k) folder is written under a temporary name and renamed when complete.

Engines: ``sklearn``, ``sklearn-lloyd``, ``cuml`` and ``torch`` cluster a magnification's matrix in
the driver; ``distributed`` runs torch Lloyd steps in Ray tasks over blocks of the embedding store's Parquet
parts (``block_rows`` each at most, two or more per task slot; read inside the tasks; k x d sums are
added up in a tree of tasks; labels are written per block; ``distributed_stage.py``). With
``fit_split`` its blocks fit on their training cases' rows only; with ``per_case`` one torch task per
case reads only the parts holding the case's slides and labels are gathered into row-sized parts
(``per_case_stage.py``). Both write the driver engines' columns and files.
``auto`` is cuML where the driver has it and a GPU, ``distributed`` when the stage joins a Ray
cluster (``RAY_ADDRESS`` set, as under ``ray job submit``), else ``sklearn``. A store whose load
would take more than ``driver_memory_gb`` on the driver (rows from the index) makes ``auto`` pick
``distributed``, and refuses a driver engine named explicitly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mixture_ray.cluster.engines import KMeansEngine, KMeansFit, get_kmeans_engine
from mixture_ray.cluster.outputs import write_clustering
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Location
from mixture_ray.report import Failure, Report
from mixture_ray.store.case_split import Split, SplitError, read_split
from mixture_ray.store.clusterings import clustering_folder, nearest_centroid
from mixture_ray.store.embeddings import load_embeddings
from mixture_ray.store.folder import SUCCESS, committed_locations, write_json_atomic
from mixture_ray.store.lineage import lineage_fields
from mixture_ray.store.store_index import read_index

if TYPE_CHECKING:
    from mixture_ray.cluster.config import ClusterConfig, KMeansEngineName
    from mixture_ray.locations import Uri


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


def unlisted_cases(missing: list[str], source: Path | None) -> SplitError:
    """The error for cases of the embeddings that the split file ``source`` does not list."""
    return SplitError(f"fit_split: {source} does not list {len(missing)} cases of the embeddings "
                      f"({', '.join(missing[:10])}); write the split from the cohort's clinical table "
                      f"with `mixture-ray split`")


def fitted_rows(keys: pd.DataFrame, split: Split, source: Path | None) -> np.ndarray:
    """Rows of the training cases (True) among ``keys``; every case must be in the split.

    Raises:
        SplitError: a case of the embeddings is in neither part of the split file ``source``.
    """
    missing = split.missing(keys["case_id"].astype(str).unique())
    if missing:
        raise unlisted_cases(missing, source)
    fitted: np.ndarray = keys["case_id"].astype(str).isin(set(split.train)).to_numpy()
    return fitted


def fit_nested(engine: KMeansEngine, x: np.ndarray, fitted: np.ndarray, k: int, seed: int) -> KMeansFit:
    """k-means fitted on the ``fitted`` rows only; every row then gets its nearest centroid."""
    fit = engine.fit(x[fitted], k, seed)
    labels, _ = nearest_centroid(x, fit.centroids)
    return dataclasses.replace(fit, labels=labels)


def resolve_engine(name: KMeansEngineName) -> str:
    """The engine ``auto`` stands for here (see the module docstring); other names unchanged."""
    from mixture_ray.cluster.engines import cuml_available

    if name != "auto":
        return name
    if cuml_available():
        return "cuml"
    return "distributed" if os.environ.get("RAY_ADDRESS") else "sklearn"


LOG = logging.getLogger(__name__)
#: Copies of the rows a driver engine's load holds at its peak (Arrow table, sorted table, matrix).
LOAD_COPIES = 3


def driver_load_bytes(store: Path | Uri, feature: str) -> int:
    """Estimated peak bytes of loading ``store`` on the driver: from its index and one file's schema."""
    rows = sum(read_index(Location.of(store)).committed().values())
    files = committed_locations(store)
    if not rows or not files:
        return 0
    field = pq.read_schema(files[0].path, filesystem=files[0].fs).field(feature).type
    dims = int(getattr(field, "list_size", 1) or 1)
    return rows * dims * 4 * LOAD_COPIES


def guard_driver_memory(cfg: ClusterConfig, name: str) -> str:
    """The engine to run: a driver engine past ``driver_memory_gb`` is refused, or, for auto, replaced."""
    if name == "distributed":
        return name
    need = driver_load_bytes(cfg.embeddings, cfg.feature)
    if need <= cfg.driver_memory_gb * 2**30:
        return name
    figure = f"loading {cfg.embeddings} on the driver takes about {need / 2**30:.1f} GiB"
    if cfg.engine == "auto":
        LOG.warning("%s (driver_memory_gb: %s): clustering with the distributed engine", figure,
                    cfg.driver_memory_gb)
        return "distributed"
    raise ConfigError(f"engine: {figure}, over driver_memory_gb ({cfg.driver_memory_gb}); use engine "
                      "distributed, or raise driver_memory_gb if the driver has the memory")


def _driver_engine(cfg: ClusterConfig, name: str) -> tuple[KMeansEngine, list[str]]:
    """The in-driver engine and the devices it computes on."""
    if name == "torch":
        from mixture_ray.cluster.kmeans_torch import TorchKMeans, device_label

        torch_engine = TorchKMeans(max_iter=cfg.max_iter)
        return torch_engine, [device_label(torch_engine.device)]
    engine = get_kmeans_engine(name)  # type: ignore[arg-type]  # a checked engine name
    return engine, ["cuda (cuML)" if name == "cuml" else "cpu"]


def _run_driver(cfg: ClusterConfig, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    engine, devices = _driver_engine(cfg, name)
    split = None if cfg.fit_split is None else read_split(cfg.fit_split)
    rows = []
    for magnification, (keys, x) in load_embeddings(cfg.embeddings, cfg.feature).items():
        fitted = None if split is None else fitted_rows(keys, split, cfg.fit_split)
        scaler = None
        if cfg.standardize:
            x, scaler = standardize(x)
        for k in cfg.ks:
            if not cfg.per_case and k > (len(x) if fitted is None else int(fitted.sum())):
                continue  # fewer tiles than clusters at this magnification
            if cfg.per_case:
                fit, local = fit_per_case(engine, keys, x, k, cfg.seed)
            elif fitted is not None:
                fit, local = fit_nested(engine, x, fitted, k, cfg.seed), None
            else:
                fit, local = engine.fit(x, k, cfg.seed), None
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
                "devices": devices,
                "fit_rows": len(x) if fitted is None else int(fitted.sum()),
                "fit_split": None if cfg.fit_split is None else str(cfg.fit_split),
            }
            prefix = "per-case-k" if cfg.per_case else "k"
            write_clustering(
                clustering_folder(cfg.out_dir, magnification, k, prefix),
                keys,
                fit,
                scaler,
                metrics,
                local,
                fitted,
            )
            rows.append(metrics)
    return rows, {"devices": devices, "nodes": {"driver": {"devices": devices}}}


def run(cfg: ClusterConfig) -> ClusterReport:
    """Cluster every magnification of ``cfg.embeddings`` for every k in ``cfg.ks``.

    Args:
        cfg: the embedding store, the ks, the engine and the output folder.

    Returns:
        The output folder and one row of metrics per clustering written. ``_SUCCESS`` records
        the engine and the devices (and, for the distributed engine, the Ray nodes) that did the work.
    """
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / SUCCESS).unlink(missing_ok=True)
    name = guard_driver_memory(cfg, resolve_engine(cfg.engine))
    if name == "distributed":
        from mixture_ray.cluster.distributed_stage import run_distributed

        rows, used = run_distributed(cfg)
    else:
        rows, used = _run_driver(cfg, name)
    table = pd.DataFrame(rows)
    table.to_csv(cfg.out_dir / "metrics.csv", index=False)
    write_json_atomic(cfg.out_dir / SUCCESS, {"stage": "cluster", "clusterings": len(rows), "engine": name,
                                               **lineage_fields(None, [str(cfg.embeddings)]), **used})
    return ClusterReport(cfg.out_dir, table)
