"""The cluster stage's per-case clustering with the distributed engine: one Ray task per case.

1. census: one task per block of store parts counts rows per slide and magnification and each
   slide's case (``case_census.py``; with z-scoring, each magnification's mean and spread), so the
   driver can number the clusters across cases (cases in sorted order, ``cluster`` = the case's
   offset + its own id, k capped at the case's rows, as the driver engines do) and place the
   silhouette sample, before any case is fitted;
2. cases: one task per case (at most two per task slot in flight) reads only the parts the index
   lists for its slides and clusters each magnification for every k with the torch engine; the
   driver takes the small results in case order, whatever order they finish in;
3. labels: one writer task per group of consecutive cases (about ``block_rows`` rows) gathers their
   labels into one row-sized part per (magnification, k): ``per-case-k-<k>/assignments.parquet/
   part-<group>.parquet`` with the driver engines' columns (tile keys, ``cluster``, ``case_cluster``).

The driver holds O(slides) counts, each case's centroids (the output) and the silhouette sample.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from mixture_ray.cluster.block_sources import plan_blocks, resolve_num_gpus, task_slots
from mixture_ray.cluster.block_tasks import silhouette
from mixture_ray.cluster.case_census import Census, slide_offsets, take_census
from mixture_ray.cluster.outputs import new_tmp, replace, write_side_files
from mixture_ray.cluster.per_case_tasks import CaseFit, CaseJob, CaseSummary, cluster_case, write_group
from mixture_ray.locations import Location
from mixture_ray.store.clusterings import clustering_folder
from mixture_ray.store.folder import committed_locations
from mixture_ray.store.store_index import StoreIndex, read_index

if TYPE_CHECKING:
    from pathlib import Path

    from mixture_ray.cluster.config import ClusterConfig

#: Case tasks in flight per task slot.
IN_FLIGHT_PER_SLOT = 2


def _offsets(counts: collections.Counter[str], cases: list[str],
             ks: tuple[int, ...]) -> dict[str, dict[int, int]]:
    """Case -> k -> its first global cluster id (cases in order, k capped at the case's rows)."""
    out: dict[str, dict[int, int]] = {}
    for k in ks:
        running = 0
        for case in cases:
            if counts[case]:
                out.setdefault(case, {})[k] = running
                running += max(1, min(k, counts[case]))
    return out


def _picks(census: Census, label: str, sample: int, seed: int) -> dict[str, np.ndarray]:
    """Case -> its rows (case tile-key order) in the silhouette sample of one magnification."""
    per_slide = census.rows[label]
    total = sum(per_slide.values())
    size = min(sample, total)
    if not size:
        return {}
    chosen = np.sort(np.random.default_rng(seed).choice(total, size, replace=False))
    slides, starts = slide_offsets(per_slide)
    within: dict[str, int] = {}  # slide -> the position of its first row among its case's rows
    seen: collections.Counter[str] = collections.Counter()
    for slide in slides:
        case = census.cases[slide]
        within[slide] = seen[case]
        seen[case] += per_slide[slide]
    which = np.searchsorted(starts, chosen, side="right") - 1
    picks: dict[str, list[np.ndarray]] = {}
    for position in np.unique(which):
        slide = slides[position]
        rows = chosen[which == position] - starts[position] + within[slide]
        picks.setdefault(census.cases[slide], []).append(rows)
    return {case: np.concatenate(found) for case, found in picks.items()}


def plan_cases(cfg: ClusterConfig, census: Census, index: StoreIndex, root: Location,
               num_gpus: float) -> list[CaseJob]:
    """One job per case, in sorted case order, each with the parts holding its slides (from the index)."""
    slides_of: dict[str, list[str]] = {}
    for slide in sorted(census.cases):
        slides_of.setdefault(census.cases[slide], []).append(slide)
    cases = sorted(slides_of)
    labels = census.labels()
    offsets = {label: _offsets(census.case_rows(label), cases, cfg.ks) for label in labels}
    picks = {label: _picks(census, label, cfg.silhouette_sample, cfg.seed) for label in labels}
    scalers = {label: census.stats[label].scaler() if cfg.standardize else None for label in labels}
    jobs = []
    for case in cases:
        slides = slides_of[case]
        wanted = {f for s in slides for f in (index.slides[s].files if s in index.slides else index.files)}
        mags = [label for label in labels if case in offsets[label]]
        jobs.append(CaseJob(
            case=case, slides=tuple(slides), paths=tuple(str(root / f) for f in index.files if f in wanted),
            feature=cfg.feature, ks=tuple(cfg.ks), seed=cfg.seed, max_iter=cfg.max_iter, num_gpus=num_gpus,
            magnifications={label: census.values[label] for label in mags},
            offsets={label: offsets[label][case] for label in mags},
            picks={label: picks[label][case] for label in mags if case in picks[label]},
            scalers={label: scalers[label] for label in mags},
        ))
    return jobs


def _groups(census: Census, jobs: list[CaseJob], block_rows: int) -> list[int]:
    """The label part of each case: consecutive cases, about ``block_rows`` rows per part."""
    rows = collections.Counter(dict.fromkeys((job.case for job in jobs), 0))
    for label in census.rows:
        rows.update(census.case_rows(label))
    group, filled, out = 0, 0, []
    for job in jobs:
        if filled and filled + rows[job.case] > block_rows:
            group, filled = group + 1, 0
        out.append(group)
        filled += rows[job.case]
    return out


class _Results:
    """The case results, taken in case order: centroids, inertia and sample per (label, k)."""

    def __init__(self) -> None:
        self.fits: dict[tuple[str, int], list[CaseFit]] = collections.defaultdict(list)
        self.rows: collections.Counter[str] = collections.Counter()
        self.nodes: dict[str, dict[str, Any]] = {}

    def add(self, summary: CaseSummary) -> None:
        for key, fit in summary.fits.items():
            self.fits[key].append(fit)
        self.rows.update(summary.rows)
        node = self.nodes.setdefault(summary.node, {"devices": [], "cases": 0, "rows": 0})
        node["devices"] = sorted({*node["devices"], summary.device})
        node["cases"] += 1
        node["rows"] += sum(summary.rows.values())


def _metrics(cfg: ClusterConfig, census: Census, label: str, k: int, results: _Results,
             devices: list[str], nodes: int) -> tuple[dict[str, Any], np.ndarray]:
    fits = results.fits[label, k]
    value = census.values[label]
    sample = np.concatenate([f.sample for f in fits])
    labels = np.concatenate([f.sample_labels for f in fits])
    score = None
    if len(sample):
        score = ray.get(ray.remote(silhouette).options(num_cpus=1).remote(cfg.seed, sample, labels))
    centroids = np.concatenate([f.centroids for f in fits])
    return {
        "magnification": None if np.isnan(value) else value, "k": k, "clusters": len(centroids),
        "rows": results.rows[label], "inertia": float(sum(f.inertia for f in fits)), "silhouette": score,
        "engine": "distributed", "seconds": float(sum(f.seconds for f in fits)), "per_case": True,
        "feature": cfg.feature, "standardize": cfg.standardize, "devices": devices,
        "fit_rows": results.rows[label], "fit_split": None, "cases": len(fits), "nodes": nodes,
    }, centroids


def run_per_case(cfg: ClusterConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every (magnification, k) per-case clustering of the store, one Ray task per case.

    Returns:
        One row of metrics per clustering written, and what ``_SUCCESS`` records of the work.
    """
    gpus = resolve_num_gpus(cfg.num_gpus)
    task = {"num_cpus": cfg.task_cpus, "num_gpus": gpus}
    root = Location.of(cfg.embeddings)
    files = [str(p) for p in committed_locations(cfg.embeddings)]
    index = read_index(root)
    slots = task_slots(cfg.task_cpus, gpus)
    blocks = plan_blocks(files, rows=sum(index.committed().values()), block_rows=cfg.block_rows,
                         min_blocks=2 * slots)
    census = take_census(blocks, feature=cfg.feature if cfg.standardize else None, task=task)
    jobs = plan_cases(cfg, census, index, root, gpus)
    groups = _groups(census, jobs, cfg.block_rows)
    labels = census.labels()
    tmps = {(label, k): new_tmp(clustering_folder(cfg.out_dir, census.values[label], k, "per-case-k"))
            for label in labels for k in cfg.ks}
    rows = []
    try:
        results = _run_cases(jobs, groups, tmps, task, IN_FLIGHT_PER_SLOT * slots)
        devices = sorted({d for node in results.nodes.values() for d in node["devices"]})
        for (label, k), tmp in tmps.items():
            metrics, centroids = _metrics(cfg, census, label, k, results, devices, len(results.nodes))
            scaler = census.stats[label].scaler().as_dict() if cfg.standardize else None
            write_side_files(tmp, centroids, scaler, metrics)
            replace(tmp, clustering_folder(cfg.out_dir, census.values[label], k, "per-case-k"))
            rows.append(metrics)
    finally:
        for tmp in tmps.values():
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(tmp)
    return rows, {"devices": devices, "nodes": results.nodes, "num_gpus_per_task": gpus}


def _run_cases(jobs: list[CaseJob], groups: list[int], tmps: dict[tuple[str, int], Path],
               task: dict[str, Any], in_flight: int) -> _Results:
    """Run the case tasks (at most ``in_flight`` at once) and a writer per group of cases."""
    cluster = ray.remote(cluster_case).options(num_returns=2, **task)
    writer = ray.remote(write_group).options(num_cpus=task["num_cpus"])
    results = _Results()
    pending: collections.deque[tuple[int, Any, Any]] = collections.deque()
    tables: list[Any] = []
    writers: list[Any] = []

    def take() -> None:
        i, summary_ref, tables_ref = pending.popleft()
        results.add(ray.get(summary_ref))
        tables.append(tables_ref)
        if i + 1 == len(jobs) or groups[i + 1] != groups[i]:
            out: dict[str, dict[int, str]] = {label: {} for label, _ in tmps}
            for (label, k), tmp in tmps.items():
                out[label][k] = str(tmp / "assignments.parquet" / f"part-{groups[i]:05d}.parquet")
            writers.append(writer.remote(out, *tables))
            tables.clear()

    for i, job in enumerate(jobs):
        refs: Any = cluster.remote(job)
        pending.append((i, refs[0], refs[1]))
        while len(pending) >= max(1, in_flight):
            take()
    while pending:
        take()
    ray.get(writers)
    return results
