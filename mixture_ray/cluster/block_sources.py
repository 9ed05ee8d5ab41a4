"""Blocks of the distributed k-means: which files make a block, and where its tasks run.

A block is several consecutive Parquet parts of an embedding store, about ``block_rows`` rows, read
inside one task. The plan needs no data file: rows come from the store's index. There are at least
two blocks per task slot of the cluster (as files allow), so every slot has work and a slow block
does not hold up a step; and none above ``block_rows``, so a block fits its node's object store.
A block of a fold-nested fit (``fit_split``) puts the rows of the split's training cases first.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import ray

from mixture_ray.cluster.kmeans_torch import BlockStats, block_stats
from mixture_ray.ray_runtime import cluster_resources, ensure_ray
from mixture_ray.store.case_split import Split

if TYPE_CHECKING:
    from collections.abc import Sequence

GpuSetting = Literal["auto"] | float
#: Default rows per block: 250,000 x 512 float32 is 512 MB in a node's object store.
BLOCK_ROWS = 250_000


@dataclasses.dataclass(frozen=True)
class ParquetBlock:
    """Rows of some Parquet files of an embedding store, read inside a task.

    Args:
        paths: the files (local paths or URIs pyarrow reads), read in this order.
        feature: the fixed-size-list column holding the vectors.
        magnification: keep rows of this magnification (NaN: rows without one); None keeps all.
        split: a case split: the rows of its training cases come first (a fold-nested fit).
    """

    paths: tuple[str, ...]
    feature: str
    magnification: float | None = None
    split: Split | None = None


@dataclasses.dataclass(frozen=True)
class BlockInfo:
    """What a block's load returns to the driver: its statistics and where it lives.

    Args:
        stats: every row's count, sums and sums of squares.
        node: the Ray node holding the block (None: an in-memory block).
        fit: the statistics of the training rows (first in the block) of a fold-nested fit.
        unlisted: case ids of the block that are in neither part of the split.
    """

    stats: BlockStats
    node: str | None
    fit: BlockStats | None = None
    unlisted: tuple[str, ...] = ()


def plan_blocks(files: Sequence[str], *, rows: int, block_rows: int,
                min_blocks: int) -> list[tuple[str, ...]]:
    """Cut a store's files, in order, into blocks of consecutive files.

    Args:
        files: the store's committed parts.
        rows: the store's rows (from its index); parts are row-sized, so a file holds about
            ``rows / len(files)``.
        block_rows: most rows a block should hold (a block is at least one file).
        min_blocks: fewest blocks wanted (two per task slot), when there are that many files.

    Returns:
        The files of each block.
    """
    if not files:
        return []
    per_file = max(1.0, rows / len(files))
    by_rows = max(1, int(block_rows // per_file))
    by_slots = max(1, len(files) // max(1, min_blocks))
    size = min(by_rows, by_slots)
    return [tuple(files[i:i + size]) for i in range(0, len(files), size)]


def node_id() -> str:
    """The Ray node this task runs on."""
    return str(ray.get_runtime_context().get_node_id())


def at_magnification(table: Any, magnification: float) -> Any:
    """The rows of an Arrow table at ``magnification`` (NaN: the rows without one)."""
    import pyarrow.compute as pc

    column = table["magnification"]
    mask = pc.is_null(column) if math.isnan(magnification) else pc.equal(column, magnification)
    return table.filter(pc.fill_null(mask, False))


def load_parquet(block: ParquetBlock) -> tuple[np.ndarray, Any, BlockInfo]:
    """Read a block's files (one magnification's rows): the matrix, the tile keys and its info."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mixture_ray.store.embeddings import KEYS, fixed_list_to_matrix

    tables = []
    for path in block.paths:
        table = pq.read_table(path, columns=[*KEYS, block.feature])
        tables.append(table if block.magnification is None else at_magnification(table, block.magnification))
    table = pa.concat_tables(tables).combine_chunks()
    fit_rows: int | None = None
    unlisted: tuple[str, ...] = ()
    if block.split is not None:
        cases = table["case_id"].cast(pa.string())
        train = pc.fill_null(pc.is_in(cases, pa.array(block.split.train, pa.string())), False)
        table = pa.concat_tables([table.filter(train), table.filter(pc.invert(train))]).combine_chunks()
        fit_rows = int(pc.sum(train).as_py() or 0)
        unlisted = tuple(block.split.missing(c for c in pc.unique(cases).to_pylist() if c is not None))
    matrix = fixed_list_to_matrix(table[block.feature]) if len(table) else np.empty((0, 0), np.float32)
    fit = None if fit_rows is None else block_stats(matrix[:fit_rows])
    return matrix, table.select(KEYS), BlockInfo(block_stats(matrix), node_id(), fit, unlisted)


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


def _fitting(cpus: float, gpus: float) -> list[dict[str, Any]]:
    found = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        resources = node.get("Resources", {})
        if node.get("Alive") and resources.get("CPU", 0.0) >= cpus and resources.get("GPU", 0.0) >= gpus:
            found.append(node)
    return sorted(found, key=lambda n: str(n["NodeID"]))


def fitting_nodes(cpus: float, gpus: float) -> list[str]:
    """Ids of the alive nodes whose total resources fit one task, in a stable order.

    Ray's ``SPREAD`` strategy is best effort: when one node frees its CPU first, it can take every
    block. Blocks are dealt round-robin over these nodes instead (soft affinity, so a node that
    disappears lets Ray place the block elsewhere).
    """
    return [str(node["NodeID"]) for node in _fitting(cpus, gpus)]


def task_slots(cpus: float, gpus: float) -> int:
    """Block tasks the alive nodes can run at once (at least 1)."""
    slots = 0
    for node in _fitting(cpus, gpus):
        resources = node.get("Resources", {})
        fit = int(resources.get("CPU", 0.0) // cpus) if cpus > 0 else 1
        if gpus > 0:
            fit = min(fit, int(resources.get("GPU", 0.0) // gpus))
        slots += fit
    return max(1, slots)


def round_robin(nodes: Sequence[str], index: int) -> dict[str, Any]:
    """Task options placing block ``index`` on one of ``nodes`` in turn (soft), or SPREAD."""
    if not nodes:
        return {"scheduling_strategy": "SPREAD"}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(nodes[index % len(nodes)], soft=True)}


def store_magnifications(files: Sequence[str]) -> list[float]:
    """Distinct magnifications (NaN for rows without one) of Parquet files, each read in a task.

    For stores whose markers predate the magnification counts (the index has them otherwise).

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
