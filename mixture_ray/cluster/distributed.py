"""Distributed k-means: torch Lloyd steps in Ray tasks over blocks of rows, reduced on the driver.

A block is some consecutive Parquet parts of an embedding store, about ``block_rows`` rows of one
magnification read inside a task (``block_sources.py`` plans them from the store's index), or a Ray
object ref of an (n, d) matrix. The driver never holds the rows:

1. load: one task per block reads it and keeps the matrix and its tile keys in Ray's object store
   on the node that read it (tasks request the same resources as the Lloyd steps, so blocks
   land where they are used); it returns row counts and per-dimension sums (for z-scoring and
   the tolerance);
2. seed: each block hands over its rows of the seeded subsample to one task that runs k-means++
   (the CPU engine's seeding, so both engines start from the same centroids);
3. Lloyd: each iteration sends the k x d centroids to one task per block (scheduled where its
   block lives) that returns k x d sums, k counts and its inertia; tasks add them up 16 at a time
   in block order (a tree), so the driver fetches at most 16 and the sums repeat exactly;
4. label: one last task per block assigns its rows, writes ``keys + cluster`` as its own Parquet
   part (or returns the labels for in-memory blocks) and returns its inertia and its rows of the
   silhouette sample.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from mixture_ray.cluster.block_sources import (
    GpuSetting,
    ParquetBlock,
    fitting_nodes,
    load_parquet,
    node_id,
    resolve_num_gpus,
    round_robin,
)
from mixture_ray.cluster.kmeans_torch import (
    BlockStats,
    LloydPartial,
    Scaler,
    assign,
    block_stats,
    device_label,
    kmeans_plusplus,
    lloyd,
    lloyd_partials,
    reduce_partials,
    reduce_stats,
    resolve_device,
    seed_indices,
)
from mixture_ray.ray_runtime import ensure_ray

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Partial sums reduced per task of the reduction tree (the driver gets at most this many).
REDUCE_FAN_IN = 16


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
    were written); ``label_files`` the Parquet parts written.
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


def _task_device(num_gpus: float) -> Any:
    return resolve_device("cuda" if num_gpus > 0 else "cpu", fallback=True)


def _stats(matrix: np.ndarray) -> tuple[BlockStats, None]:
    return block_stats(matrix), None  # an in-memory block: no node to keep its tasks on


def _sample(matrix: np.ndarray, index: np.ndarray, scaler: Scaler | None) -> np.ndarray:
    rows = np.asarray(matrix[index], dtype=np.float32)
    if scaler is not None:
        rows = ((rows - scaler.mean) / scaler.scale).astype(np.float32)
    return rows


def _seed(k: int, seed: int, *parts: np.ndarray) -> np.ndarray:
    return kmeans_plusplus(np.concatenate(parts), k, seed)


def _partial(matrix: np.ndarray, centroids: np.ndarray, scaler: Scaler | None, num_gpus: float,
             chunk_rows: int | None) -> tuple[LloydPartial, frozenset[str]]:
    device = _task_device(num_gpus)
    part = lloyd_partials(matrix, centroids, device=device, scaler=scaler, chunk_rows=chunk_rows)
    return part, frozenset([node_id()])


def _merge(*results: tuple[LloydPartial, frozenset[str]]) -> tuple[LloydPartial, frozenset[str]]:
    """Sum partial results in the order given (so the sums do not depend on arrival order)."""
    return reduce_partials([p for p, _ in results]), frozenset().union(*(n for _, n in results))


def reduce_tree(refs: Sequence[Any], fan_in: int | None = None) -> tuple[LloydPartial, frozenset[str]]:
    """Reduce refs of ``(partial, nodes)`` in Ray tasks, ``fan_in`` at a time, in block order.

    The driver fetches at most ``fan_in`` results, so it holds O(fan_in x k x d) whatever the
    number of blocks; a fixed grouping makes the float sums the same from run to run.
    """
    fan_in = fan_in or REDUCE_FAN_IN
    merge = ray.remote(_merge).options(num_cpus=0)
    level = list(refs)
    while len(level) > fan_in:
        level = [merge.remote(*level[i:i + fan_in]) for i in range(0, len(level), fan_in)]
    return _merge(*ray.get(level))


def _label(matrix: np.ndarray, keys: Any, centroids: np.ndarray, scaler: Scaler | None, num_gpus: float,
           chunk_rows: int | None, out_file: str | None, sample: np.ndarray) -> dict[str, Any]:
    device = _task_device(num_gpus)
    labels, inertia = assign(matrix, centroids, device=device, scaler=scaler, chunk_rows=chunk_rows)
    if out_file is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        Path(out_file).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(keys.append_column("cluster", pa.array(labels, pa.int32())), out_file)
    return {
        "inertia": inertia, "node": node_id(), "device": device_label(device), "rows": len(labels),
        "labels": None if out_file is not None else labels,
        "sample": _sample(matrix, sample, scaler), "sample_labels": labels[sample],
    }


def _silhouette(seed: int, rows: np.ndarray, labels: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2 or len(rows) < 3:
        return None
    return float(silhouette_score(rows, labels, random_state=seed))


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
    task they were loaded with.
    """

    matrices: tuple[Any, ...]
    keys: tuple[Any, ...]
    stats: tuple[BlockStats, ...]
    nodes: tuple[str | None, ...]
    num_gpus: float

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
            stat_refs.append(ray.remote(_stats).options(**task).remote(block))
    found: list[tuple[BlockStats, str | None]] = ray.get(stat_refs)
    return LoadedBlocks(tuple(matrices), tuple(keys), tuple(s for s, _ in found),
                        tuple(n for _, n in found), gpus)


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
    matrices, keys, stats, gpus = loaded.matrices, loaded.keys, loaded.stats, loaded.num_gpus
    task = {"num_cpus": options.task_cpus, "num_gpus": gpus}
    live = [i for i, s in enumerate(stats) if s.rows > 0]
    if not live:
        raise ValueError(f"k={k} needs 1 <= k <= number of rows (0)")
    total = reduce_stats([stats[i] for i in live])
    if not 1 <= k <= total.rows:
        raise ValueError(f"k={k} needs 1 <= k <= number of rows ({total.rows})")
    if not (np.isfinite(total.total).all() and np.isfinite(total.total_sq).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    scaler = total.scaler() if options.standardize else None
    variance = total.variance() / (scaler.scale**2 if scaler is not None else 1.0)
    sizes = [stats[i].rows for i in live]

    sample_task = ray.remote(_sample)
    picks = _split(seed_indices(total.rows, options.seed_rows, seed), sizes)
    parts = [
        sample_task.options(num_cpus=options.task_cpus, **loaded.placement(i)).remote(
            matrices[i], pick, scaler)
        for i, pick in zip(live, picks, strict=True)
    ]
    init = ray.get(ray.remote(_seed).options(num_cpus=1).remote(k, seed, *parts))

    partial = ray.remote(_partial)
    step_nodes: set[str] = set()

    def step(centroids: np.ndarray) -> LloydPartial:
        c_ref = ray.put(centroids)
        summed, nodes = reduce_tree([
            partial.options(**task, **loaded.placement(i)).remote(
                matrices[i], c_ref, scaler, gpus, options.chunk_rows)
            for i in live
        ])
        step_nodes.update(nodes)
        return summed

    run = lloyd(step, init, tol=float(variance.mean()) * options.tol, max_iter=options.max_iter)

    sample_size = min(options.silhouette_sample, total.rows)
    sil_index = (np.sort(np.random.default_rng(seed).choice(total.rows, sample_size, replace=False))
                 if sample_size else np.empty(0, np.int64))
    label = ray.remote(_label)
    c_ref = ray.put(run.centroids)
    files: dict[int, str] = {}
    if label_dir is not None:
        files = {i: str(label_dir / f"part-{i:05d}.parquet") for i in live if keys[i] is not None}
    infos: list[dict[str, Any]] = ray.get([
        label.options(**task, **loaded.placement(i)).remote(
            matrices[i], keys[i], c_ref, scaler, gpus, options.chunk_rows, files.get(i), pick)
        for i, pick in zip(live, _split(sil_index, sizes), strict=True)
    ])
    silhouette = None
    if sample_size:
        rows = np.concatenate([info["sample"] for info in infos])
        labels_sample = np.concatenate([info["sample_labels"] for info in infos])
        silhouette = ray.get(ray.remote(_silhouette).options(num_cpus=1).remote(seed, rows, labels_sample))
    runs = tuple(BlockRun(i, info["node"], info["device"], info["rows"])
                 for i, info in zip(live, infos, strict=True))
    in_memory = [info["labels"] for info in infos if info["labels"] is not None]
    return DistributedFit(
        centroids=run.centroids, inertia=float(sum(info["inertia"] for info in infos)), n_iter=run.n_iter,
        seconds=time.perf_counter() - start, rows=total.rows, num_gpus=gpus, scaler=scaler, runs=runs,
        labels=np.concatenate(in_memory) if in_memory and not files else None,
        label_files=tuple(files[i] for i in sorted(files)), silhouette=silhouette,
        empty_clusters=run.empty_clusters, step_nodes=frozenset(step_nodes),
    )
