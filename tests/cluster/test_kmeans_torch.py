"""Torch k-means kernels and engine against scikit-learn KMeans on the same data and seeds (no Ray)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_blobs

from mixture_ray.cluster import get_kmeans_engine
from mixture_ray.cluster.kmeans_torch import (
    TorchKMeans,
    assign,
    block_stats,
    kmeans_plusplus,
    lloyd_partials,
    reduce_partials,
    reduce_stats,
    resolve_device,
    seed_indices,
)
from mixture_ray.errors import ConfigError


def anisotropic(n: int = 12_000, d: int = 24, centers: int = 30, seed: int = 0) -> np.ndarray:
    """Overlapping anisotropic Gaussians of unequal weights (embedding-like, no clean optimum)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3.0, (centers, d))
    scales = rng.uniform(0.5, 2.0, (centers, d))
    which = rng.choice(centers, size=n, p=rng.dirichlet(np.full(centers, 2.0)))
    return (means[which] + rng.standard_normal((n, d)) * scales[which]).astype(np.float32)


DATASETS = {
    "blobs": lambda: make_blobs(6000, 16, centers=8, cluster_std=1.5, random_state=0)[0].astype(np.float32),
    "digits": lambda: load_digits().data.astype(np.float32),
    "anisotropic": anisotropic,
}


@pytest.mark.parametrize("data", sorted(DATASETS))
@pytest.mark.parametrize("k", [4, 10, 25])
def test_inertia_equals_sklearn_kmeans_with_the_same_seeds(data: str, k: int) -> None:
    x = DATASETS[data]()
    ours = TorchKMeans(device="cpu", seed_rows=4000).fit(x, k, seed=3)
    index = seed_indices(len(x), 4000, 3)
    init = kmeans_plusplus(x if index is None else x[index], k, 3)
    ref = KMeans(k, init=init, n_init=1, random_state=3).fit(x)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=0.01)
    if data == "blobs":  # a clear optimum: plain KMeans (k-means++ on all rows) lands there too
        plain = KMeans(k, random_state=3).fit(x)
        assert ours.inertia <= plain.inertia_ * 1.01
    assert ours.labels.dtype == np.int32 and ours.centroids.shape == (k, x.shape[1])
    assert ours.engine == "torch:cpu"


def test_engine_factory_and_sklearn_engine_agree() -> None:
    x = DATASETS["blobs"]()
    torch_fit = get_kmeans_engine("torch").fit(x, 8, seed=0)
    sk_fit = get_kmeans_engine("sklearn").fit(x, 8, seed=0)
    assert torch_fit.inertia == pytest.approx(sk_fit.inertia, rel=1e-4)
    assert np.array_equal(torch_fit.labels, sk_fit.labels)


def test_partials_of_blocks_add_up_to_the_whole() -> None:
    x = anisotropic(n=5000)
    centroids = x[:7].copy()
    cpu = torch.device("cpu")
    whole = lloyd_partials(x, centroids, device=cpu)
    parts = reduce_partials([lloyd_partials(x[a:a + 1234], centroids, device=cpu, chunk_rows=300)
                             for a in range(0, len(x), 1234)])
    assert np.array_equal(whole.counts, parts.counts) and whole.rows == parts.rows == 5000
    assert np.allclose(whole.sums, parts.sums, rtol=1e-5, atol=1e-2)  # float32 sums within a chunk
    assert whole.inertia == pytest.approx(parts.inertia, rel=1e-9)
    brute = ((x[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(-1)
    labels, inertia = assign(x, centroids, device=cpu, chunk_rows=999)
    assert np.array_equal(labels, brute.argmin(1))
    assert inertia == pytest.approx(brute.min(1).sum(), rel=1e-5)
    stats = reduce_stats([block_stats(x[:2000]), block_stats(x[2000:])])
    assert np.allclose(stats.variance(), x.astype(np.float64).var(0), rtol=1e-6)


def test_cuda_request_without_gpu_falls_back_only_when_allowed() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("cuda", fallback=True).type == "cpu"
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_device("cuda")


def test_kernels_do_not_import_ray() -> None:
    import subprocess

    code = "import sys, mixture_ray.cluster.kmeans_torch; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
def test_cuda_engine_matches_the_cpu_engine() -> None:
    x = anisotropic(n=20_000)
    gpu = TorchKMeans(device="cuda").fit(x, 16, seed=0)
    cpu = TorchKMeans(device="cpu").fit(x, 16, seed=0)
    assert gpu.engine == "torch:cuda"
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-4)
