"""What a per-case clustering runs inside Ray tasks: one case's k-means, and one group's label parts.

A case task reads only the store parts that hold the case's slides, keeps the case's rows in tile-key
order (slide, y, x: the driver engines' order), and clusters each magnification's rows for every k
with the in-process torch engine (k capped at the case's rows). It returns a small summary
(centroids, inertia, its rows of the silhouette sample) and, as a second object, its tile keys and
labels; a writer task later gathers the labels of a group of consecutive cases into one row-sized
part per (magnification, k).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mixture_ray.cluster.block_sources import at_magnification, node_id
from mixture_ray.cluster.block_tasks import task_device
from mixture_ray.cluster.kmeans_torch import Scaler, TorchKMeans, device_label

if TYPE_CHECKING:
    import pyarrow as pa


@dataclasses.dataclass(frozen=True)
class CaseJob:
    """One case to cluster.

    Args:
        case: the case id.
        slides: its slides.
        paths: the store parts holding them (and only those, where the index says so).
        feature: the feature column.
        ks: numbers of clusters (each capped at the case's rows at a magnification).
        seed: seed of the subsample and k-means++ (the same for every case, as the driver engines).
        max_iter: most Lloyd iterations.
        num_gpus: GPUs the task holds (CUDA when torch sees one).
        magnifications: label -> magnification, for the magnifications where the case has rows.
        offsets: label -> k -> the case's first global cluster id.
        picks: label -> the case's rows (in its tile-key order) in the silhouette sample.
        scalers: label -> the z-scoring of that magnification (None: not z-scored).
    """

    case: str
    slides: tuple[str, ...]
    paths: tuple[str, ...]
    feature: str
    ks: tuple[int, ...]
    seed: int
    max_iter: int
    num_gpus: float
    magnifications: dict[str, float]
    offsets: dict[str, dict[int, int]]
    picks: dict[str, np.ndarray]
    scalers: dict[str, Scaler | None]


@dataclasses.dataclass(frozen=True)
class CaseFit:
    """One case at one magnification and k: its centroids, inertia, seconds, sample rows and labels."""

    centroids: np.ndarray
    inertia: float
    seconds: float
    sample: np.ndarray
    sample_labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class CaseSummary:
    """What a case task returns to the driver: fits by (label, k), its rows per label, where it ran."""

    case: str
    fits: dict[tuple[str, int], CaseFit]
    rows: dict[str, int]
    node: str
    device: str


def read_case(job: CaseJob) -> pa.Table:
    """The case's rows from its parts, in tile-key order."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mixture_ray.store.embeddings import KEYS

    wanted = pa.array(job.slides, pa.string())
    tables = []
    for path in job.paths:
        table = pq.read_table(path, columns=[*KEYS, job.feature])
        tables.append(table.filter(pc.fill_null(pc.is_in(table["slide_id"], value_set=wanted), False)))
    table = pa.concat_tables(tables)
    return table.sort_by([("slide_id", "ascending"), ("y", "ascending"), ("x", "ascending")])


def cluster_case(job: CaseJob) -> tuple[CaseSummary, dict[str, pa.Table]]:
    """Cluster one case at each of its magnifications for every k (run in a task).

    Returns:
        The summary, and per magnification label the tile keys with ``cluster-<k>`` (global id)
        and ``case_cluster-<k>`` (the case's own id) columns.
    """
    import pyarrow as pa

    from mixture_ray.store.embeddings import KEYS, fixed_list_to_matrix

    device = task_device(job.num_gpus)
    engine = TorchKMeans(device=str(device), max_iter=job.max_iter)
    table = read_case(job)
    fits: dict[tuple[str, int], CaseFit] = {}
    tables: dict[str, pa.Table] = {}
    rows: dict[str, int] = {}
    for label, value in job.magnifications.items():
        part = at_magnification(table, value)
        x = fixed_list_to_matrix(part[job.feature])
        scaler = job.scalers.get(label)
        if scaler is not None:
            x = ((x - scaler.mean) / scaler.scale).astype(np.float32)
        keys = part.select(KEYS)
        pick = job.picks.get(label, np.empty(0, np.int64))
        for k in job.ks:
            start = time.perf_counter()
            fit = engine.fit(x, max(1, min(k, len(x))), job.seed)
            offset = job.offsets[label][k]
            keys = keys.append_column(f"cluster-{k}", pa.array(fit.labels + offset, pa.int32()))
            keys = keys.append_column(f"case_cluster-{k}", pa.array(fit.labels, pa.int32()))
            fits[label, k] = CaseFit(fit.centroids, fit.inertia, time.perf_counter() - start, x[pick],
                                     fit.labels[pick] + offset)
        tables[label] = keys
        rows[label] = len(x)
    return CaseSummary(job.case, fits, rows, node_id(), device_label(device)), tables


def write_group(out_files: dict[str, dict[int, str]], *cases: dict[str, pa.Table]) -> int:
    """Write the labels of consecutive cases as one part per (magnification, k) (run in a task).

    Args:
        out_files: label -> k -> the part to write.
        cases: each case's tables from :func:`cluster_case`, in case order.

    Returns:
        The rows written per (magnification, k).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mixture_ray.store.embeddings import KEYS

    written = 0
    for label, by_k in out_files.items():
        found = [c[label] for c in cases if label in c]
        if not found:
            continue
        table = pa.concat_tables(found)
        for k, out_file in by_k.items():
            part = table.select([*KEYS, f"cluster-{k}", f"case_cluster-{k}"])
            part = part.rename_columns([*KEYS, "cluster", "case_cluster"])
            Path(out_file).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, out_file)
        written += len(table)
    return written
