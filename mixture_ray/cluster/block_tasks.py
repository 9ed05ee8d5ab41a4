"""What the distributed k-means runs inside Ray tasks on one block, and the tree that reduces the steps.

Each function takes a block's matrix (from Ray's object store) and small arguments and returns
small results: a seeding subsample, one Lloyd step's partial sums, the block's labels and inertia.
A block of a fold-nested fit (``fit_split``) holds its training rows first: ``fit_rows`` of them
are the rows the Lloyd steps and the seeding see; every row is labelled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from mixture_ray.cluster.block_sources import BlockInfo, node_id
from mixture_ray.cluster.kmeans_torch import (
    LloydPartial,
    Scaler,
    assign,
    block_stats,
    device_label,
    kmeans_plusplus,
    lloyd_partials,
    reduce_partials,
    resolve_device,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Partial sums reduced per task of the reduction tree (the driver gets at most this many).
REDUCE_FAN_IN = 16


def task_device(num_gpus: float) -> Any:
    """The torch device of a task granted ``num_gpus`` (the CPU where torch sees no GPU)."""
    return resolve_device("cuda" if num_gpus > 0 else "cpu", fallback=True)


def stats(matrix: np.ndarray) -> BlockInfo:
    """Statistics of an in-memory block (no node to keep its tasks on)."""
    return BlockInfo(block_stats(matrix), None)


def sample(matrix: np.ndarray, index: np.ndarray, scaler: Scaler | None) -> np.ndarray:
    """Rows ``index`` of a block as float32, z-scored when a scaler is given."""
    rows = np.asarray(matrix[index], dtype=np.float32)
    if scaler is not None:
        rows = ((rows - scaler.mean) / scaler.scale).astype(np.float32)
    return rows


def seed_centroids(k: int, seed: int, *parts: np.ndarray) -> np.ndarray:
    """k-means++ centroids from the blocks' parts of the seeding subsample (in block order)."""
    return kmeans_plusplus(np.concatenate(parts), k, seed)


def partial(matrix: np.ndarray, centroids: np.ndarray, scaler: Scaler | None, num_gpus: float,
            chunk_rows: int | None, fit_rows: int | None = None) -> tuple[LloydPartial, frozenset[str]]:
    """One Lloyd step over a block's first ``fit_rows`` rows (all when None) and the node it ran on."""
    device = task_device(num_gpus)
    rows = matrix if fit_rows is None else matrix[:fit_rows]
    part = lloyd_partials(rows, centroids, device=device, scaler=scaler, chunk_rows=chunk_rows)
    return part, frozenset([node_id()])


def merge(*results: tuple[LloydPartial, frozenset[str]]) -> tuple[LloydPartial, frozenset[str]]:
    """Sum partial results in the order given (so the sums do not depend on arrival order)."""
    return reduce_partials([p for p, _ in results]), frozenset().union(*(n for _, n in results))


def reduce_tree(refs: Sequence[Any], fan_in: int | None = None) -> tuple[LloydPartial, frozenset[str]]:
    """Reduce refs of ``(partial, nodes)`` in Ray tasks, ``fan_in`` at a time, in block order.

    The driver fetches at most ``fan_in`` results, so it holds O(fan_in x k x d) whatever the
    number of blocks; a fixed grouping makes the float sums the same from run to run.
    """
    fan_in = fan_in or REDUCE_FAN_IN
    remote_merge = ray.remote(merge).options(num_cpus=0)
    level = list(refs)
    while len(level) > fan_in:
        level = [remote_merge.remote(*level[i:i + fan_in]) for i in range(0, len(level), fan_in)]
    return merge(*ray.get(level))


def label(matrix: np.ndarray, keys: Any, centroids: np.ndarray, scaler: Scaler | None, num_gpus: float,
          chunk_rows: int | None, out_file: str | None, pick: np.ndarray,
          fit_rows: int | None = None) -> dict[str, Any]:
    """Assign a block's rows; write ``keys + cluster`` (``+ fitted`` for a fold-nested fit) or return them.

    The inertia returned is that of the rows the fit saw (the first ``fit_rows``; all when None),
    as the driver engines report it; ``pick`` are the block's rows of the silhouette sample.
    """
    device = task_device(num_gpus)
    split = len(matrix) if fit_rows is None else fit_rows
    labels, inertia = assign(matrix[:split], centroids, device=device, scaler=scaler, chunk_rows=chunk_rows)
    if split < len(matrix):
        rest, _ = assign(matrix[split:], centroids, device=device, scaler=scaler, chunk_rows=chunk_rows)
        labels = np.concatenate([labels, rest])
    if out_file is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        Path(out_file).parent.mkdir(parents=True, exist_ok=True)
        table = keys.append_column("cluster", pa.array(labels, pa.int32()))
        if fit_rows is not None:
            table = table.append_column("fitted", pa.array(np.arange(len(labels)) < fit_rows, pa.bool_()))
        pq.write_table(table, out_file)
    return {
        "inertia": inertia, "node": node_id(), "device": device_label(device), "rows": len(labels),
        "labels": None if out_file is not None else labels,
        "sample": sample(matrix, pick, scaler), "sample_labels": labels[pick],
    }


def silhouette(seed: int, rows: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette score of the gathered sample (None when undefined)."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2 or len(rows) < 3:
        return None
    return float(silhouette_score(rows, labels, random_state=seed))
