"""The cluster stage's distributed engine: blocks of the store per magnification, one folder per k.

Blocks of consecutive store parts are planned from the index (``block_sources.py``), loaded once per
magnification into Ray's object store and reused for every k (``distributed.py``). With
``fit_split`` each block puts its training cases' rows first and the fit sees only those; every
row is labelled and the label parts gain the ``fitted`` column. With ``per_case`` the work goes to
``per_case_stage.py`` (one task per case) instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.cluster.block_sources import (
    ParquetBlock,
    plan_blocks,
    resolve_num_gpus,
    store_magnifications,
    task_slots,
)
from mixture_ray.cluster.distributed import DistributedOptions, LoadedBlocks, fit_blocks, load_blocks
from mixture_ray.cluster.outputs import new_tmp, replace, write_side_files
from mixture_ray.cluster.stage import unlisted_cases
from mixture_ray.locations import Location
from mixture_ray.store.case_split import read_split
from mixture_ray.store.clusterings import clustering_folder
from mixture_ray.store.folder import committed_locations
from mixture_ray.store.store_index import magnification_values, read_index

if TYPE_CHECKING:
    from mixture_ray.cluster.config import ClusterConfig


def options_of(cfg: ClusterConfig) -> DistributedOptions:
    """The distributed engine's options from the stage's settings."""
    return DistributedOptions(
        num_gpus=cfg.num_gpus, task_cpus=cfg.task_cpus, max_iter=cfg.max_iter,
        standardize=cfg.standardize, silhouette_sample=cfg.silhouette_sample,
    )


def _clustering(cfg: ClusterConfig, loaded: LoadedBlocks, magnification: float, k: int,
                options: DistributedOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """One (magnification, k) folder from blocks in Ray's object store; metrics and devices used."""
    folder = clustering_folder(cfg.out_dir, magnification, k)
    tmp = new_tmp(folder)
    fit = fit_blocks(loaded, k, cfg.seed, options=options, label_dir=tmp / "assignments.parquet")
    used = fit.devices()
    metrics = {
        "magnification": None if np.isnan(magnification) else magnification,
        "k": k,
        "clusters": len(fit.centroids),
        "rows": fit.rows,
        "inertia": fit.inertia,
        "silhouette": fit.silhouette,
        "engine": "distributed",
        "seconds": fit.seconds,
        "per_case": False,
        "feature": cfg.feature,
        "standardize": cfg.standardize,
        "devices": used["devices"],
        "fit_rows": fit.fit_rows,
        "fit_split": None if cfg.fit_split is None else str(cfg.fit_split),
        "nodes": len(used["nodes"]),
        "num_gpus_per_task": fit.num_gpus,
        "iterations": fit.n_iter,
    }
    write_side_files(tmp, fit.centroids, fit.scaler.as_dict() if fit.scaler else None, metrics)
    replace(tmp, folder)
    return metrics, used


def add_nodes(nodes: dict[str, dict[str, Any]], used: dict[str, Any]) -> None:
    """Merge one clustering's nodes (devices, blocks, rows) into the run's."""
    for node, seen in used["nodes"].items():
        entry = nodes.setdefault(node, {"devices": [], "blocks": 0, "rows": 0})
        entry["devices"] = sorted({*entry["devices"], *seen["devices"]})
        entry["blocks"] = max(entry["blocks"], seen["blocks"])
        entry["rows"] = max(entry["rows"], seen["rows"])


def run_distributed(cfg: ClusterConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every (magnification, k) clustering of the store with the distributed engine.

    Returns:
        One row of metrics per clustering written, and what ``_SUCCESS`` records of the work
        (devices, nodes, GPUs per task).

    Raises:
        SplitError: a case of the embeddings is in neither part of the ``fit_split`` file.
    """
    if cfg.per_case:
        from mixture_ray.cluster.per_case_stage import run_per_case

        return run_per_case(cfg)
    options = options_of(cfg)
    split = None if cfg.fit_split is None else read_split(cfg.fit_split)
    files = [str(p) for p in committed_locations(cfg.embeddings)]
    store_rows = sum(read_index(Location.of(cfg.embeddings)).committed().values())
    slots = task_slots(cfg.task_cpus, resolve_num_gpus(cfg.num_gpus))
    blocks = plan_blocks(files, rows=store_rows, block_rows=cfg.block_rows, min_blocks=2 * slots)
    rows: list[dict[str, Any]] = []
    nodes: dict[str, dict[str, Any]] = {}
    gpus = 0.0
    indexed = magnification_values(Location.of(cfg.embeddings))
    for magnification in indexed if indexed is not None else store_magnifications(files):
        loaded = load_blocks([ParquetBlock(b, cfg.feature, magnification, split) for b in blocks],
                             options=options)
        if loaded.unlisted:
            raise unlisted_cases(list(loaded.unlisted), cfg.fit_split)
        gpus = loaded.num_gpus
        fit_rows = sum(loaded.fit_stats(i).rows for i in range(len(loaded.stats)))
        for k in cfg.ks:
            if k > fit_rows:
                continue  # fewer (training) tiles than clusters at this magnification
            metrics, used = _clustering(cfg, loaded, magnification, k, options)
            rows.append(metrics)
            add_nodes(nodes, used)
        del loaded  # frees this magnification's blocks in the object store
    devices = sorted({d for entry in nodes.values() for d in entry["devices"]})
    return rows, {"devices": devices, "nodes": nodes, "num_gpus_per_task": gpus}
