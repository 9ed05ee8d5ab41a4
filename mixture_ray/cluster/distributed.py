"""Distributed k-means: torch Lloyd steps in Ray tasks over blocks of rows, reduced on the driver.

A block is a Parquet file of an embedding store (rows of one magnification, read inside a task)
or a Ray object ref of an (n, d) matrix. The driver never holds the rows:

1. load: one task per block reads it and keeps the matrix and its tile keys in Ray's object store
   on the node that read it (tasks request the same resources as the Lloyd steps, so blocks
   land where they are used); it returns row counts and per-dimension sums (for z-scoring and
   the tolerance);
2. seed: each block hands over its rows of the seeded subsample to one task that runs k-means++
   (the CPU engine's seeding, so both engines start from the same centroids);
3. Lloyd: each iteration sends the k x d centroids to one task per block (scheduled where its
   block lives) that returns k x d sums, k counts and its inertia; the driver adds them up;
4. label: one last task per block assigns its rows, writes ``keys + cluster`` as its own Parquet
   part (or returns the labels for in-memory blocks) and returns its inertia and its rows of the
   silhouette sample.

Memory: a node holds its blocks (rows x dims x 4 bytes each, plus one chunk in flight on the
device); the driver holds k x d centroids and sums, and the silhouette sample (at most
``silhouette_sample`` rows) on its way to the task that scores it; the seeding subsample (at most
``seed_rows`` x d floats) goes from the blocks' tasks straight to the seeding task.

Tasks request ``num_gpus`` GPUs (``auto``: 1 where the cluster has or can autoscale to GPUs); a
task granted a GPU whose torch sees no CUDA device computes on the CPU and says so in its result.
Every task of a block after its load is kept (softly) on the node that loaded it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import ray

from mixture_ray.cluster.engines import KMeansFit, check_matrix
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
from mixture_ray.ray_runtime import cluster_resources, ensure_ray

if TYPE_CHECKING:
    from collections.abc import Sequence

GpuSetting = Literal["auto"] | float


@dataclasses.dataclass(frozen=True)
class ParquetBlock:
    """Rows of one Parquet file of an embedding store, read inside a task.

    Args:
        path: the file (local path or URI pyarrow reads).
        feature: the fixed-size-list column holding the vectors.
        magnification: keep rows of this magnification (NaN: rows without one); None keeps all.
    """

    path: str
    feature: str
    magnification: float | None = None


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


def resolve_num_gpus(setting: GpuSetting) -> float:
    """GPUs per block task for a setting.

    Args:
        setting: ``auto`` or a number (returned as it is: a request the autoscaler can meet).

    Returns:
        ``auto``: 1 when the running cluster has GPUs or its autoscaler config can add GPU
        nodes, else 0.
    """
    if setting != "auto":
        return float(setting)
    if cluster_resources().get("GPU", 0) > 0:
        return 1.0
    try:  # the autoscaler's node types (private API: absent on a local session)
        from ray._private.state import state

        most = state.get_max_resources_from_cluster_config() or {}
        return 1.0 if most.get("GPU", 0) > 0 else 0.0
    except Exception:
        return 0.0


def _node() -> str:
    return str(ray.get_runtime_context().get_node_id())


def _task_device(num_gpus: float) -> Any:
    return resolve_device("cuda" if num_gpus > 0 else "cpu", fallback=True)


def _load_parquet(block: ParquetBlock) -> tuple[np.ndarray, Any, tuple[BlockStats, str]]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mixture_ray.store.embeddings import KEYS, fixed_list_to_matrix

    table = pq.read_table(block.path, columns=[*KEYS, block.feature])
    mag = block.magnification
    if mag is not None:
        column = table["magnification"]
        mask = pc.is_null(column) if math.isnan(mag) else pc.equal(column, mag)
        table = table.filter(pc.fill_null(mask, False))
    matrix = fixed_list_to_matrix(table[block.feature]) if len(table) else np.empty((0, 0), np.float32)
    return matrix, table.select(KEYS), (block_stats(matrix), _node())


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
             chunk_rows: int | None) -> tuple[LloydPartial, str, str]:
    device = _task_device(num_gpus)
    part = lloyd_partials(matrix, centroids, device=device, scaler=scaler, chunk_rows=chunk_rows)
    return part, _node(), device_label(device)


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
        "inertia": inertia, "node": _node(), "device": device_label(device), "rows": len(labels),
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


def fitting_nodes(cpus: float, gpus: float) -> list[str]:
    """Ids of the alive nodes whose total resources fit one task, in a stable order.

    Ray's ``SPREAD`` strategy is best effort: when one node frees its CPU first, it can take every
    block. Blocks are dealt round-robin over these nodes instead (soft affinity, so a node that
    disappears lets Ray place the block elsewhere).
    """
    found = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        resources = node.get("Resources", {})
        if node.get("Alive") and resources.get("CPU", 0.0) >= cpus and resources.get("GPU", 0.0) >= gpus:
            found.append(str(node["NodeID"]))
    return sorted(found)


def _round_robin(nodes: Sequence[str], index: int) -> dict[str, Any]:
    if not nodes:
        return {"scheduling_strategy": "SPREAD"}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(nodes[index % len(nodes)], soft=True)}


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
    load = ray.remote(_load_parquet)
    homes = fitting_nodes(options.task_cpus, gpus)
    matrices: list[Any] = []
    keys: list[Any] = []
    stat_refs: list[Any] = []
    for i, block in enumerate(blocks):
        if isinstance(block, ParquetBlock):
            returned: Any = load.options(num_returns=3, **task, **_round_robin(homes, i)).remote(block)
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


def store_magnifications(files: Sequence[str]) -> list[float]:
    """Distinct magnifications (NaN for rows without one) of Parquet files, each read in a task.

    Args:
        files: Parquet files with a ``magnification`` column.

    Returns:
        Sorted magnifications (NaN first).
    """
    ensure_ray()
    found: set[float] = set()
    for mags in ray.get([ray.remote(_magnifications).options(num_cpus=1).remote(f) for f in files]):
        found.update(mags)
    nan = [m for m in found if math.isnan(m)]
    return nan[:1] + sorted(m for m in found if not math.isnan(m))


def _magnifications(path: str) -> list[float]:
    import pyarrow.parquet as pq

    column = pq.read_table(path, columns=["magnification"])["magnification"].unique().to_pylist()
    return [math.nan if m is None else float(m) for m in column]


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
        results: list[tuple[LloydPartial, str, str]] = ray.get([
            partial.options(**task, **loaded.placement(i)).remote(
                matrices[i], c_ref, scaler, gpus, options.chunk_rows)
            for i in live
        ])
        step_nodes.update(node for _, node, _ in results)
        return reduce_partials([p for p, _, _ in results])

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


class DistributedKMeans:
    """The distributed engine behind ``fit(x, k, seed)``: ``x`` is cut into blocks put in Ray's store.

    For a matrix already in the driver (benchmarks, tests); the cluster stage hands Parquet
    blocks to :func:`fit_blocks` instead, so its rows never reach the driver.

    Args:
        block_rows: rows per block.
        options: resources, seeding and stopping rule.
    """

    name = "distributed"

    def __init__(self, block_rows: int = 1_000_000, options: DistributedOptions | None = None) -> None:
        self.block_rows = block_rows
        self.options = options or DistributedOptions()
        self.last: DistributedFit | None = None

    def fit(self, x: np.ndarray, k: int, seed: int) -> KMeansFit:
        """Cluster ``x`` into ``k`` clusters over ``ceil(n / block_rows)`` blocks.

        Args:
            x: the rows (n, d).
            k: number of clusters.
            seed: seed of the subsample and of k-means++.

        Returns:
            The fit; where the blocks ran is kept in ``self.last``.
        """
        x = check_matrix(x, k)
        ensure_ray()
        refs = [ray.put(x[i:i + self.block_rows]) for i in range(0, len(x), self.block_rows)]
        fit = fit_blocks(refs, k, seed, options=self.options)
        self.last = fit
        assert fit.labels is not None
        return KMeansFit(fit.centroids, fit.labels, fit.inertia, fit.n_iter, fit.seconds, self.name)
