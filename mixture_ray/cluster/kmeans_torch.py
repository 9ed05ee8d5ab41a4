"""Torch k-means kernels (CPU or CUDA, no Ray): seeding, one Lloyd step as partial sums, the loop.

One Lloyd step over a block of rows is :func:`lloyd_partials`: rows are assigned to the nearest
centroid by argmin of ``||c||^2 - 2 x c^T`` (``||x||^2`` does not change the argmin) in row
chunks, and the block returns only per-cluster sums (k x d; a one-hot GEMM per chunk, added up in
float64), counts and its inertia (the squared distance to the assigned centroid, recomputed
exactly as ``||x - c||^2``). Partials
of any number of blocks add up (:func:`reduce_partials`), so the same step runs in one process
(:class:`TorchKMeans`) or in Ray tasks over blocks (``mixture_ray.cluster.distributed``), where only
k x d numbers travel per block and iteration.

Seeding is the CPU engine's: scikit-learn's k-means++ on a seeded subsample of at most
``seed_rows`` rows (the same rows for the same seed), so both engines start from the same
centroids; the stopping rule is scikit-learn's (sum of squared centroid shifts <= ``tol`` x the
mean per-dimension variance). A cluster that loses all its rows keeps its previous centroid
(scikit-learn moves it to a far point instead; this is rare on real embeddings).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from mixture_ray.cluster.engines import KMeansFit, check_matrix
from mixture_ray.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

#: Rows per chunk of the assignment (distances are chunk x k floats).
CPU_CHUNK_ROWS = 32_768
CUDA_CHUNK_ROWS = 262_144


def resolve_device(device: str, *, fallback: bool = False) -> torch.device:
    """The torch device for a setting.

    Args:
        device: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:<i>``.
        fallback: give the CPU instead of an error when CUDA is asked for but missing (a Ray task
            granted a GPU resource on a node whose torch sees none).

    Returns:
        The device.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        if fallback:
            return torch.device("cpu")
        raise ConfigError(f"device: {device!r} requested but torch sees no CUDA GPU")
    return torch.device(device)


def device_label(device: torch.device) -> str:
    """``cpu`` or ``cuda:<i> (<GPU name>)``, for reports."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Per-dimension ``(x - mean) / scale`` applied to rows as they are read (z-scoring)."""

    mean: np.ndarray
    scale: np.ndarray

    def as_dict(self) -> dict[str, list[float]]:
        """JSON form, as the cluster stage writes ``scaler.json``."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}


@dataclasses.dataclass(frozen=True)
class BlockStats:
    """Row count, per-dimension sum and sum of squares (float64) of a block: mean and variance."""

    rows: int
    total: np.ndarray
    total_sq: np.ndarray

    def variance(self) -> np.ndarray:
        """Per-dimension population variance."""
        mean = self.total / max(self.rows, 1)
        return np.maximum(self.total_sq / max(self.rows, 1) - mean * mean, 0.0)

    def scaler(self) -> Scaler:
        """The z-scoring of these rows (a zero spread keeps scale 1)."""
        scale = np.sqrt(self.variance())
        scale[scale == 0] = 1.0
        return Scaler(self.total / max(self.rows, 1), scale)


@dataclasses.dataclass(frozen=True)
class LloydPartial:
    """One Lloyd step over some rows: per-cluster sums (k, d) float64, counts (k,), inertia."""

    sums: np.ndarray
    counts: np.ndarray
    inertia: float
    rows: int


def _chunks(x: np.ndarray | torch.Tensor, device: torch.device, chunk_rows: int | None,
            scaler: Scaler | None) -> Iterator[torch.Tensor]:
    """Float32 row chunks of ``x`` on ``device``, z-scored when a scaler is given."""
    step = chunk_rows or (CUDA_CHUNK_ROWS if device.type == "cuda" else CPU_CHUNK_ROWS)
    shift = scale = None
    if scaler is not None:
        shift = torch.as_tensor(scaler.mean, dtype=torch.float32, device=device)
        scale = torch.as_tensor(scaler.scale, dtype=torch.float32, device=device)
    for start in range(0, len(x), step):
        part = x[start:start + step]
        with warnings.catch_warnings():  # read-only arrays (Ray's object store): never written
            warnings.simplefilter("ignore", UserWarning)
            chunk = torch.as_tensor(part, dtype=torch.float32).to(device, non_blocking=True)
        if shift is not None and scale is not None:
            chunk = (chunk - shift) / scale
        yield chunk


def _nearest(chunk: torch.Tensor, c: torch.Tensor, c_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row and the exact squared distance to it."""
    labels = torch.addmm(c_sq, chunk, c.T, alpha=-2.0).argmin(dim=1)
    dist = (chunk - c.index_select(0, labels)).square_().sum(dim=1)
    return labels, dist


def block_stats(x: np.ndarray | torch.Tensor, *, device: torch.device | None = None,
                chunk_rows: int | None = None) -> BlockStats:
    """Row count, sum and sum of squares of a block, accumulated in float64.

    Args:
        x: the rows (n, d).
        device: where to compute (default CPU).
        chunk_rows: rows per chunk (default by device).

    Returns:
        The block's statistics.
    """
    dev = device or torch.device("cpu")
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=dev)
    total_sq = torch.zeros_like(total)
    for chunk in _chunks(x, dev, chunk_rows, None):
        c64 = chunk.double()
        total += c64.sum(0)
        total_sq += c64.square().sum(0)
    return BlockStats(len(x), total.cpu().numpy(), total_sq.cpu().numpy())


def lloyd_partials(x: np.ndarray | torch.Tensor, centroids: np.ndarray, *, device: torch.device,
                   scaler: Scaler | None = None, chunk_rows: int | None = None) -> LloydPartial:
    """Assign the rows of a block to the nearest centroid and sum them per cluster.

    Args:
        x: the block's rows (n, d); a numpy array or a tensor on any device.
        centroids: (k, d) current centroids, in the (scaled) clustering space.
        device: where the arithmetic runs.
        scaler: z-scoring applied to each chunk as it is read, or None.
        chunk_rows: rows per chunk (default by device).

    Returns:
        Per-cluster sums and counts and the inertia of this block against ``centroids``.
    """
    c = torch.as_tensor(centroids, dtype=torch.float32, device=device)
    c_sq = c.square().sum(dim=1)
    sums = torch.zeros(c.shape, dtype=torch.float64, device=device)
    counts = torch.zeros(len(c), dtype=torch.int64, device=device)
    inertia = torch.zeros((), dtype=torch.float64, device=device)
    for chunk in _chunks(x, device, chunk_rows, scaler):
        labels, dist = _nearest(chunk, c, c_sq)
        onehot = torch.zeros(len(c), len(chunk), dtype=chunk.dtype, device=device)
        onehot[labels, torch.arange(len(chunk), device=device)] = 1.0
        sums += (onehot @ chunk).double()  # a GEMM: float32 within a chunk, float64 across chunks
        counts += torch.bincount(labels, minlength=len(c))
        inertia += dist.sum(dtype=torch.float64)
    return LloydPartial(sums.cpu().numpy(), counts.cpu().numpy(), float(inertia), len(x))


def assign(x: np.ndarray | torch.Tensor, centroids: np.ndarray, *, device: torch.device,
           scaler: Scaler | None = None, chunk_rows: int | None = None) -> tuple[np.ndarray, float]:
    """Labels (int32) of the nearest centroid for every row and the block's inertia.

    Args:
        x: the rows (n, d).
        centroids: (k, d) centroids in the (scaled) clustering space.
        device: where the arithmetic runs.
        scaler: z-scoring applied to each chunk, or None.
        chunk_rows: rows per chunk (default by device).

    Returns:
        (labels, inertia).
    """
    c = torch.as_tensor(centroids, dtype=torch.float32, device=device)
    c_sq = c.square().sum(dim=1)
    labels, inertia = [], 0.0
    for chunk in _chunks(x, device, chunk_rows, scaler):
        best, dist = _nearest(chunk, c, c_sq)
        labels.append(best.to(torch.int32).cpu())
        inertia += float(dist.sum(dtype=torch.float64))
    out = torch.cat(labels).numpy() if labels else np.empty(0, np.int32)
    return out, inertia


def reduce_partials(parts: Sequence[LloydPartial]) -> LloydPartial:
    """Sum the partial results of several blocks (what the driver does with k x d arrays)."""
    if not parts:
        raise ValueError("no partial results to reduce")
    return LloydPartial(
        np.sum([p.sums for p in parts], axis=0),
        np.sum([p.counts for p in parts], axis=0),
        float(sum(p.inertia for p in parts)),
        sum(p.rows for p in parts),
    )


def reduce_stats(parts: Sequence[BlockStats]) -> BlockStats:
    """Sum the statistics of several blocks."""
    return BlockStats(sum(p.rows for p in parts), np.sum([p.total for p in parts], axis=0),
                      np.sum([p.total_sq for p in parts], axis=0))


def seed_indices(n: int, seed_rows: int, seed: int) -> np.ndarray | None:
    """Sorted row indices of the seeding subsample (None: all ``n`` rows), as the CPU engine draws them."""
    if n <= seed_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, seed_rows, replace=False))


def kmeans_plusplus(rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ centroids (k, d) float32 from ``rows`` (scikit-learn's greedy k-means++)."""
    from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus

    centres, _ = sk_kmeans_plusplus(np.ascontiguousarray(rows, dtype=np.float32), k, random_state=seed)
    return np.asarray(centres, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class LloydRun:
    """Where Lloyd's iterations stopped: the final centroids and the number of iterations."""

    centroids: np.ndarray
    n_iter: int
    empty_clusters: int


def lloyd(step: Callable[[np.ndarray], LloydPartial], init: np.ndarray, *, tol: float,
          max_iter: int) -> LloydRun:
    """Lloyd's iterations driven by ``step`` (one assignment pass over all rows, reduced).

    Args:
        step: centroids -> reduced partial sums over all rows (one process or many Ray tasks).
        init: (k, d) starting centroids.
        tol: absolute tolerance on the sum of squared centroid shifts (scikit-learn's
            ``tol x mean variance``).
        max_iter: most iterations.

    Returns:
        The centroids after the last update (assign the rows to them for labels and inertia).
    """
    centroids = np.asarray(init, dtype=np.float64)
    n_iter, empty = 0, 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
        part = step(centroids.astype(np.float32))
        filled = part.counts > 0
        new = centroids.copy()
        new[filled] = part.sums[filled] / part.counts[filled, None]
        empty = int((~filled).sum())
        shift = float(np.square(new - centroids).sum())
        centroids = new
        if shift <= tol:
            break
    return LloydRun(centroids.astype(np.float32), n_iter, empty)


class TorchKMeans:
    """k-means in one process with torch on CPU or one GPU (the data are copied to the device once).

    Args:
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``.
        seed_rows: rows of the k-means++ seeding subsample (as the CPU engine).
        max_iter: most Lloyd iterations.
        tol: relative tolerance (scikit-learn's ``tol``).
        chunk_rows: rows per assignment chunk (default by device).
    """

    name = "torch"

    def __init__(self, device: str = "auto", seed_rows: int = 100_000, max_iter: int = 300,
                 tol: float = 1e-4, chunk_rows: int | None = None) -> None:
        self.device = resolve_device(device)
        self.seed_rows, self.max_iter, self.tol, self.chunk_rows = seed_rows, max_iter, tol, chunk_rows

    def fit(self, x: np.ndarray, k: int, seed: int) -> KMeansFit:
        """Cluster ``x`` (n, d) into ``k`` clusters.

        Args:
            x: the rows.
            k: number of clusters.
            seed: seed of the subsample and of k-means++.

        Returns:
            Centroids, labels, inertia, iterations, seconds and ``engine`` = ``torch:<device>``.
        """
        x = check_matrix(x, k)
        start = time.perf_counter()
        index = seed_indices(len(x), self.seed_rows, seed)
        init = kmeans_plusplus(x if index is None else x[index], k, seed)
        data = torch.from_numpy(x).to(self.device)
        stats = block_stats(data, device=self.device, chunk_rows=self.chunk_rows)
        tol = float(stats.variance().mean()) * self.tol
        run = lloyd(lambda c: lloyd_partials(data, c, device=self.device, chunk_rows=self.chunk_rows),
                    init, tol=tol, max_iter=self.max_iter)
        labels, inertia = assign(data, run.centroids, device=self.device, chunk_rows=self.chunk_rows)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return KMeansFit(run.centroids, labels, inertia, run.n_iter, time.perf_counter() - start,
                         f"{self.name}:{self.device.type}")
