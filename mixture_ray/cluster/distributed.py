"""Distributed k-means: torch Lloyd steps in Ray tasks over blocks of rows, reduced on the driver.

A block is some consecutive Parquet parts of an embedding store, about ``block_rows`` rows of one
magnification read inside a task (``block_sources.py`` plans them from the store's index), or a Ray
object ref of an (n, d) matrix. The driver never holds the rows:

1. load: one task per block reads it and keeps the matrix and its tile keys in Ray's object store
   on the node that read it (tasks request the same resources as the Lloyd steps, so blocks
   land where they are used); it returns row counts and per-dimension sums (for z-scoring and
   the tolerance); for a fold-nested fit (a case split) the block's training rows come first and
   their own counts and sums come back too: seeding, tolerance and Lloyd steps see only them;
2. seed: each block hands over its rows of the seeded subsample to one task that runs k-means++
   (the CPU engine's seeding, so both engines start from the same centroids);
3. Lloyd: each iteration sends the k x d centroids to one task per block (scheduled where its
   block lives) that returns k x d sums, k counts and its inertia; tasks add them up 16 at a time
   in block order (a tree), so the driver fetches at most 16 and the sums repeat exactly;
4. label: one last task per block assigns its rows, writes ``keys + cluster`` as its own Parquet
   part (or returns the labels for in-memory blocks) and returns its inertia and its rows of the
   silhouette sample.

What runs inside the tasks is in ``block_tasks.py``.

Memory: a node holds its blocks (rows x dims x 4 bytes each, plus one chunk in flight on the
device); the driver holds k x d centroids and at most 16 partial sums, and the silhouette sample (at most
``silhouette_sample`` rows) on its way to the task that scores it; the seeding subsample (at most
``seed_rows`` x d floats) goes from the blocks' tasks straight to the seeding task.

Tasks request ``num_gpus`` GPUs (``auto``: 1 where the cluster has or can autoscale to GPUs); a
task granted a GPU whose torch sees no CUDA device computes on the CPU and says so in its result.
Every task of a block after its load is kept (softly) on the node that loaded it.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from mixture_ray.cluster import block_tasks
from mixture_ray.cluster.block_sources import (
    BlockInfo,
    GpuSetting,
    ParquetBlock,
    fitting_nodes,
    load_parquet,
    resolve_num_gpus,
    round_robin,
)
from mixture_ray.cluster.kmeans_torch import (
    BlockStats,
    LloydPartial,
    Scaler,
    lloyd,
    reduce_stats,
    seed_indices,
)
from mixture_ray.ray_runtime import ensure_ray

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

BlockSource = ParquetBlock | ray.ObjectRef  # type: ignore[type-arg]


@dataclasses.dataclass(frozen=True)
class DistributedOptions:
    """How the distributed engine runs.

    Args:
        num_gpus: GPUs each block task requests: ``auto`` (1 where the cluster has or can
            autoscale to GPUs, else 0) or a number (a request even if no GPU node is up yet).
        task_cpus: CPUs each block task requests.
        seed_rows: rows of the k-means++ seeding subsample.
        max_iter: most Lloyd iterations.
        tol: relative tolerance (scikit-learn's ``tol``).
        standardize: z-score each dimension (mean and spread from all blocks) before clustering.
        silhouette_sample: rows sampled for the silhouette score; 0 skips it.
        chunk_rows: rows per assignment chunk inside a task (default by device).
    """

    num_gpus: GpuSetting = "auto"
    task_cpus: float = 1.0
    seed_rows: int = 100_000
    max_iter: int = 300
    tol: float = 1e-4
    standardize: bool = False
    silhouette_sample: int = 0
    chunk_rows: int | None = None


@dataclasses.dataclass(frozen=True)
class BlockRun:
    """Where one task of a block ran: Ray node id, torch device, rows."""

    block: int
    node_id: str
    device: str
    rows: int


@dataclasses.dataclass(frozen=True)
class DistributedFit:
    """A distributed clustering: centroids (k, d), inertia, iterations, where the blocks ran.

    ``runs`` says where each block's last (labelling) task ran, ``step_nodes`` every node that ran
    a Lloyd step; ``labels`` holds the labels of in-memory blocks in block order (None when parts
    were written); ``label_files`` the Parquet parts written. ``fit_rows`` are the rows the fit saw
    (a fold-nested fit's training rows, else all ``rows``) and ``inertia`` is theirs.
    """

    centroids: np.ndarray
    inertia: float
    n_iter: int
    seconds: float
    rows: int
    num_gpus: float
    scaler: Scaler | None
    runs: tuple[BlockRun, ...]
    labels: np.ndarray | None
    label_files: tuple[str, ...]
    silhouette: float | None
    empty_clusters: int
    step_nodes: frozenset[str] = frozenset()
    fit_rows: int = 0

    def devices(self) -> dict[str, Any]:
        """What did the work: GPUs requested per task, nodes, devices, blocks and rows per node."""
        nodes: dict[str, dict[str, Any]] = {}
        for run in self.runs:
            node = nodes.setdefault(run.node_id, {"devices": [], "blocks": 0, "rows": 0})
            if run.device not in node["devices"]:
                node["devices"].append(run.device)
            node["blocks"] += 1
            node["rows"] += run.rows
        return {
            "num_gpus_per_task": self.num_gpus,
            "devices": sorted({r.device for r in self.runs}),
            "nodes": nodes,
        }


def _split(index: np.ndarray | None, sizes: Sequence[int]) -> list[np.ndarray]:
    """Global row indices -> local indices per block (None: every row of every block)."""
    bounds = np.cumsum([0, *sizes])
    if index is None:
        return [np.arange(n) for n in sizes]
    return [index[(index >= lo) & (index < hi)] - lo for lo, hi in itertools.pairwise(bounds)]


@dataclasses.dataclass(frozen=True)
class LoadedBlocks:
    """Blocks held in Ray's object store.

    Matrix refs, tile-key refs (None for in-memory blocks), per-block statistics and the GPUs per
    task they were loaded with; for a fold-nested fit, the statistics of each block's training
    rows (first in the block) and the case ids the split does not list.
    """

    matrices: tuple[Any, ...]
    keys: tuple[Any, ...]
    stats: tuple[BlockStats, ...]
    nodes: tuple[str | None, ...]
    num_gpus: float
    fits: tuple[BlockStats | None, ...] = ()
    unlisted: tuple[str, ...] = ()

    def fit_stats(self, block: int) -> BlockStats:
        """Statistics of the rows of ``block`` the fit sees (its training rows, else all)."""
        fit = self.fits[block] if self.fits else None
        return self.stats[block] if fit is None else fit

    def fit_rows(self, block: int) -> int | None:
        """Rows of ``block`` the fit sees (its first ones), or None for all of them."""
        fit = self.fits[block] if self.fits else None
        return None if fit is None else fit.rows

    def placement(self, block: int) -> dict[str, Any]:
        """Task options that keep a task of ``block`` on the node that loaded it (soft).

        Small blocks are inlined in the driver's object store, so Ray's locality-aware scheduling
        alone would not keep their tasks where they were loaded; a lost node lets Ray go elsewhere.
        """
        node = self.nodes[block]
        if node is None:
            return {}
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}


def load_blocks(blocks: Sequence[BlockSource], *, options: DistributedOptions) -> LoadedBlocks:
    """Read every block inside a task (Parquet) or take its ref; keep them in the object store.

    Args:
        blocks: Parquet blocks or object refs of (n, d) float matrices.
        options: the resources of the tasks (``num_gpus`` is resolved here).

    Returns:
        Refs to the matrices and keys and each block's row count and sums.
    """
    ensure_ray()
    gpus = resolve_num_gpus(options.num_gpus)
    task = {"num_cpus": options.task_cpus, "num_gpus": gpus}
    load = ray.remote(load_parquet)
    homes = fitting_nodes(options.task_cpus, gpus)
    matrices: list[Any] = []
    keys: list[Any] = []
    stat_refs: list[Any] = []
    for i, block in enumerate(blocks):
        if isinstance(block, ParquetBlock):
            returned: Any = load.options(num_returns=3, **task, **round_robin(homes, i)).remote(block)
            m, kk, s = returned
            matrices.append(m)
            keys.append(kk)
            stat_refs.append(s)
        else:
            matrices.append(block)
            keys.append(None)
            stat_refs.append(ray.remote(block_tasks.stats).options(**task).remote(block))
    found: list[BlockInfo] = ray.get(stat_refs)
    unlisted = sorted({c for info in found for c in info.unlisted})
    return LoadedBlocks(tuple(matrices), tuple(keys), tuple(f.stats for f in found),
                        tuple(f.node for f in found), gpus, tuple(f.fit for f in found), tuple(unlisted))


def fit_blocks(blocks: Sequence[BlockSource] | LoadedBlocks, k: int, seed: int, *,
               options: DistributedOptions, label_dir: Path | None = None) -> DistributedFit:
    """k-means over blocks of rows in Ray tasks (see the module docstring).

    Args:
        blocks: Parquet blocks, object refs of (n, d) float matrices, or blocks already loaded
            by :func:`load_blocks` (reused across several k).
        k: number of clusters (<= total rows).
        seed: seed of the subsample, k-means++ and the silhouette sample.
        options: resources, seeding, stopping rule, z-scoring and silhouette.
        label_dir: folder receiving one ``part-<block>.parquet`` (tile keys + ``cluster``) per
            Parquet block; None returns the labels instead (in-memory blocks).

    Returns:
        The fit, with the node and device of every block's last task.
    """
    start = time.perf_counter()
    loaded = blocks if isinstance(blocks, LoadedBlocks) else load_blocks(blocks, options=options)
    matrices, stats, gpus = loaded.matrices, loaded.stats, loaded.num_gpus
    task = {"num_cpus": options.task_cpus, "num_gpus": gpus}
    live = [i for i, s in enumerate(stats) if s.rows > 0]
    fitting = [i for i in live if loaded.fit_stats(i).rows > 0]
    total = reduce_stats([stats[i] for i in live]) if live else None
    fit_total = reduce_stats([loaded.fit_stats(i) for i in fitting]) if fitting else None
    if total is None or fit_total is None or not 1 <= k <= fit_total.rows:
        raise ValueError(f"k={k} needs 1 <= k <= number of rows ({fit_total.rows if fit_total else 0})")
    if not (np.isfinite(total.total).all() and np.isfinite(total.total_sq).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    scaler = total.scaler() if options.standardize else None
    variance = fit_total.variance() / (scaler.scale**2 if scaler is not None else 1.0)
    fit_sizes = [loaded.fit_stats(i).rows for i in fitting]

    sample_task = ray.remote(block_tasks.sample)
    parts = [
        sample_task.options(num_cpus=options.task_cpus, **loaded.placement(i)).remote(
            matrices[i], pick, scaler)
        for i, pick in zip(fitting, _split(seed_indices(fit_total.rows, options.seed_rows, seed), fit_sizes),
                           strict=True)
    ]
    init = ray.get(ray.remote(block_tasks.seed_centroids).options(num_cpus=1).remote(k, seed, *parts))

    partial = ray.remote(block_tasks.partial)
    step_nodes: set[str] = set()

    def step(centroids: np.ndarray) -> LloydPartial:
        c_ref = ray.put(centroids)
        summed, nodes = block_tasks.reduce_tree([
            partial.options(**task, **loaded.placement(i)).remote(
                matrices[i], c_ref, scaler, gpus, options.chunk_rows, loaded.fit_rows(i))
            for i in fitting
        ])
        step_nodes.update(nodes)
        return summed

    run = lloyd(step, init, tol=float(variance.mean()) * options.tol, max_iter=options.max_iter)
    infos, files, silhouette = _label_blocks(loaded, live, run.centroids, scaler, seed, options=options,
                                             label_dir=label_dir)
    runs = tuple(BlockRun(i, info["node"], info["device"], info["rows"])
                 for i, info in zip(live, infos, strict=True))
    in_memory = [info["labels"] for info in infos if info["labels"] is not None]
    return DistributedFit(
        centroids=run.centroids, inertia=float(sum(info["inertia"] for info in infos)), n_iter=run.n_iter,
        seconds=time.perf_counter() - start, rows=total.rows, num_gpus=gpus, scaler=scaler, runs=runs,
        labels=np.concatenate(in_memory) if in_memory and not files else None,
        label_files=tuple(files[i] for i in sorted(files)), silhouette=silhouette,
        empty_clusters=run.empty_clusters, step_nodes=frozenset(step_nodes),
        fit_rows=fit_total.rows,
    )


def _label_blocks(loaded: LoadedBlocks, live: Sequence[int], centroids: np.ndarray, scaler: Scaler | None,
                  seed: int, *, options: DistributedOptions,
                  label_dir: Path | None) -> tuple[list[dict[str, Any]], dict[int, str], float | None]:
    """Label every row of the ``live`` blocks: their results, the parts written, the silhouette."""
    sizes = [loaded.stats[i].rows for i in live]
    rows = sum(sizes)
    sample_size = min(options.silhouette_sample, rows)
    sil_index = (np.sort(np.random.default_rng(seed).choice(rows, sample_size, replace=False))
                 if sample_size else np.empty(0, np.int64))
    label = ray.remote(block_tasks.label)
    task = {"num_cpus": options.task_cpus, "num_gpus": loaded.num_gpus}
    c_ref = ray.put(centroids)
    files: dict[int, str] = {}
    if label_dir is not None:
        files = {i: str(label_dir / f"part-{i:05d}.parquet") for i in live if loaded.keys[i] is not None}
    infos: list[dict[str, Any]] = ray.get([
        label.options(**task, **loaded.placement(i)).remote(
            loaded.matrices[i], loaded.keys[i], c_ref, scaler, loaded.num_gpus, options.chunk_rows,
            files.get(i), pick, loaded.fit_rows(i))
        for i, pick in zip(live, _split(sil_index, sizes), strict=True)
    ])
    silhouette = None
    if sample_size:
        sample = np.concatenate([info["sample"] for info in infos])
        labels = np.concatenate([info["sample_labels"] for info in infos])
        score = ray.remote(block_tasks.silhouette).options(num_cpus=1)
        silhouette = ray.get(score.remote(seed, sample, labels))
    return infos, files, silhouette
