from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mixture_ray.cluster import get_kmeans_engine
from mixture_ray.errors import MissingExtraError
from mixture_ray.store.clusterings import nearest_centroid


def blobs(n: int = 6000, d: int = 16, k: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (k, d))
    truth = rng.integers(0, k, n)
    return (centres[truth] + rng.normal(0, 1, (n, d))).astype(np.float32), truth


def test_cpu_engine_recovers_planted_clusters_and_matches_plain_kmeans() -> None:
    x, truth = blobs()
    fit = get_kmeans_engine("sklearn").fit(x, 8, seed=0)
    plain = get_kmeans_engine("sklearn-lloyd").fit(x, 8, seed=0)
    assert adjusted_rand_score(truth, fit.labels) > 0.99
    assert fit.inertia <= plain.inertia * 1.01
    assert fit.centroids.shape == (8, 16) and fit.centroids.dtype == np.float32
    again = get_kmeans_engine("sklearn").fit(x, 8, seed=0)
    assert np.array_equal(fit.labels, again.labels)


def test_nearest_centroid_matches_brute_force() -> None:
    x, _ = blobs(n=1000, d=8, k=5, seed=1)
    centroids = x[:7] + 0.5
    labels, dist = nearest_centroid(x, centroids, batch_rows=97)
    brute = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert np.array_equal(labels, brute.argmin(1))
    assert np.allclose(dist, brute.min(1), rtol=1e-4, atol=1e-3)


def test_bad_input_is_refused() -> None:
    x, _ = blobs(n=50)
    engine = get_kmeans_engine("sklearn")
    with pytest.raises(ValueError, match="k=80"):
        engine.fit(x, 80, seed=0)
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        engine.fit(x, 4, seed=0)
    with pytest.raises(ValueError, match="unknown k-means engine"):
        get_kmeans_engine("faiss")  # type: ignore[arg-type]


def test_cuml_engine_names_the_extra_without_gpu() -> None:
    from mixture_ray.cluster.engines import cuml_available

    if cuml_available():
        pytest.skip("cuML and a GPU are present")
    with pytest.raises(MissingExtraError, match=r"\[gpu\]"):
        get_kmeans_engine("cuml").fit(blobs(n=100)[0], 4, seed=0)
