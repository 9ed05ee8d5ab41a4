"""k-means engines: scikit-learn on CPU, cuML on GPU, torch (CPU/CUDA, one process or Ray tasks).

All share one ``fit(x, k, seed)`` surface (the torch kernels live in ``kmeans_torch``, the Ray
fan-out over blocks in ``distributed``).

The CPU engine seeds with k-means++ on a seeded subsample of at most 100k rows and then runs
Lloyd iterations on all rows. Plain ``sklearn.cluster.KMeans`` spends most of its time on the
k-means++ pass over every row; on 1M x 128 rows (k=50) the subsample seeding reached the same
inertia in less time, while MiniBatchKMeans seeding was faster but stuck 1.7 % higher
(``benchmarks/bench_kmeans.py`` measures engine and plain KMeans in one run).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal, Protocol

import numpy as np

from mixture_ray.errors import MissingExtraError

EngineName = Literal["auto", "sklearn", "sklearn-lloyd", "cuml", "torch", "distributed"]


@dataclasses.dataclass(frozen=True)
class KMeansFit:
    """A fitted clustering: centroids (k, d) float32, labels (n,) int32, inertia, timing."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    seconds: float
    engine: str


class KMeansEngine(Protocol):
    """What every engine offers."""

    name: str

    def fit(self, x: np.ndarray, k: int, seed: int) -> KMeansFit:
        """Cluster ``x`` (n, d) into ``k`` clusters, deterministically for a seed."""
        ...


def check_matrix(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, d) matrix after checking shape, k and finiteness."""
    if x.ndim != 2:
        raise ValueError(f"k-means needs a 2-D matrix, got shape {x.shape}")
    if not 1 <= k <= len(x):
        raise ValueError(f"k={k} needs 1 <= k <= number of rows ({len(x)})")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32)


class SklearnSubsampleLloyd:
    """k-means++ seeding on a seeded subsample, then Lloyd iterations on all rows (CPU default)."""

    name = "sklearn"

    def __init__(self, seed_rows: int = 100_000, max_iter: int = 300) -> None:
        self.seed_rows = seed_rows
        self.max_iter = max_iter

    def fit(self, x: np.ndarray, k: int, seed: int) -> KMeansFit:
        """Cluster ``x`` into ``k``: k-means++ seeds from up to ``seed_rows`` rows, then Lloyd on all rows."""
        from sklearn.cluster import KMeans, kmeans_plusplus

        x = check_matrix(x, k)
        start = time.perf_counter()
        rng = np.random.default_rng(seed)
        rows = (
            x if len(x) <= self.seed_rows else x[np.sort(rng.choice(len(x), self.seed_rows, replace=False))]
        )
        centres, _ = kmeans_plusplus(rows, k, random_state=seed)
        model = KMeans(n_clusters=k, init=centres, n_init=1, max_iter=self.max_iter, random_state=seed).fit(x)
        return KMeansFit(
            centroids=model.cluster_centers_.astype(np.float32),
            labels=model.labels_.astype(np.int32),
            inertia=float(model.inertia_),
            n_iter=int(model.n_iter_),
            seconds=time.perf_counter() - start,
            engine=self.name,
        )


class SklearnLloyd:
    """Plain ``sklearn.cluster.KMeans`` (k-means++ on all rows, Lloyd): the reference."""

    name = "sklearn-lloyd"

    def fit(self, x: np.ndarray, k: int, seed: int) -> KMeansFit:
        """Cluster ``x`` into ``k`` with sklearn's KMeans defaults."""
        from sklearn.cluster import KMeans

        x = check_matrix(x, k)
        start = time.perf_counter()
        model = KMeans(n_clusters=k, random_state=seed).fit(x)
        return KMeansFit(
            model.cluster_centers_.astype(np.float32),
            model.labels_.astype(np.int32),
            float(model.inertia_),
            int(model.n_iter_),
            time.perf_counter() - start,
            self.name,
        )


class CumlKMeans:
    """cuML KMeans on one GPU (k-means|| init); inputs are copied to the device once."""

    name = "cuml"

    def fit(self, x: np.ndarray, k: int, seed: int) -> KMeansFit:
        """Cluster ``x`` into ``k`` with cuML on the GPU (needs the ``gpu`` extra)."""
        try:
            import cupy
            from cuml.cluster import KMeans
        except ImportError as exc:
            raise MissingExtraError("the cuML k-means engine", "gpu") from exc
        x = check_matrix(x, k)
        start = time.perf_counter()
        device_x = cupy.asarray(x)
        model = KMeans(n_clusters=k, random_state=seed, init="scalable-k-means++").fit(device_x)
        labels = cupy.asnumpy(model.labels_).astype(np.int32)
        centroids = cupy.asnumpy(model.cluster_centers_).astype(np.float32)
        return KMeansFit(
            centroids,
            labels,
            float(model.inertia_),
            int(model.n_iter_),
            time.perf_counter() - start,
            self.name,
        )


def cuml_available() -> bool:
    """True when cuML imports and a CUDA device is visible."""
    try:
        import cuml  # noqa: F401
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:
        return False


def get_kmeans_engine(name: EngineName = "auto") -> KMeansEngine:
    """The engine called ``name``.

    Args:
        name: ``auto`` (cuML where a GPU and cuML exist, else scikit-learn), ``sklearn``,
            ``sklearn-lloyd``, ``cuml``, ``torch`` (one process, CUDA when available) or
            ``distributed`` (torch Lloyd steps in Ray tasks over row blocks; imports Ray).

    Returns:
        An engine with ``fit(x, k, seed)``.
    """
    if name == "auto":
        return CumlKMeans() if cuml_available() else SklearnSubsampleLloyd()
    if name == "torch":
        from mixture_ray.cluster.kmeans_torch import TorchKMeans

        return TorchKMeans()
    if name == "distributed":
        from mixture_ray.cluster.distributed_engine import DistributedKMeans

        return DistributedKMeans()
    engines: dict[str, type[KMeansEngine]] = {
        "sklearn": SklearnSubsampleLloyd,
        "sklearn-lloyd": SklearnLloyd,
        "cuml": CumlKMeans,
    }
    if name not in engines:
        choices = ", ".join([*engines, "torch", "distributed"])
        raise ValueError(f"unknown k-means engine {name!r}; choose auto, {choices}")
    return engines[name]()
