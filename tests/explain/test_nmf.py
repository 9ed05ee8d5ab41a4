"""Torch NMF against scikit-learn on the same data (fit and transform with H fixed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF

from mixture_ray.errors import ConfigError
from mixture_ray.explain.nmf import TorchNMF, reconstruction_error, resolve_device, transform


def _data(n: int = 3000, c: int = 64, rank: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.gamma(1.0, 1.0, (n, rank))
    h = rng.gamma(0.5, 1.0, (rank, c)) * (rng.random((rank, c)) < 0.4)
    return (w @ h + rng.gamma(1.0, 0.2, (n, c))).astype(np.float32)


@pytest.mark.parametrize("k", [4, 6])
def test_fit_error_within_one_percent_of_sklearn(k: int) -> None:
    v = _data()
    ref = NMF(k, init="nndsvda", max_iter=500, tol=1e-5, random_state=0).fit(v)
    ours = TorchNMF(k, device="cpu", tol=1e-5, max_iter=500).fit(v)
    assert ours.components_ is not None
    err = reconstruction_error(v, ours.w_, ours.components_)
    assert err == pytest.approx(ours.reconstruction_err_, rel=1e-3)
    assert err <= ref.reconstruction_err_ * 1.01
    assert (ours.components_ >= 0).all() and (ours.w_ >= 0).all()


def test_transform_with_fixed_h_matches_sklearn() -> None:
    v = _data(seed=1)
    ref = NMF(5, init="nndsvda", max_iter=300, random_state=0).fit(v[:2000])
    new = v[2000:]
    h = torch.as_tensor(ref.components_)
    w = transform(new, h)
    assert w.shape == (len(new), 5) and bool((w >= 0).all())
    ours = reconstruction_error(new, w, h)
    theirs = reconstruction_error(new, ref.transform(new), ref.components_)
    assert ours <= theirs * 1.01


def test_target_error_stops_early_and_rejects_negative_input() -> None:
    v = _data(n=1000, c=32)
    full = TorchNMF(4, device="cpu").fit(v)
    early = TorchNMF(4, device="cpu").fit(v, target_err=full.errors_[4])
    assert early.n_iter_ <= 5
    with pytest.raises(ValueError, match="non-negative"):
        TorchNMF(2, device="cpu").fit(-v)


def test_cuda_request_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.gpu
def test_gpu_fit_matches_cpu() -> None:
    v = _data()
    cpu = TorchNMF(4, device="cpu").fit(v)
    gpu = TorchNMF(4, device="cuda").fit(v)
    assert gpu.reconstruction_err_ == pytest.approx(cpu.reconstruction_err_, rel=0.01)


def test_error_estimate_is_exact_and_target_means_exact_error() -> None:
    """The solver's error (used to stop at a target) matches the float64 residual norm, so a fit
    stopped at scikit-learn's error really has that error (the premise of bench_nmf)."""
    v = _data(n=5000, c=96, seed=2)
    ref = NMF(6, init="nndsvda", solver="cd", tol=1e-4, max_iter=1000, random_state=0)
    w_ref = ref.fit_transform(v)
    target = reconstruction_error(v, w_ref, ref.components_)
    ours = TorchNMF(6, device="cpu", max_iter=2000).fit(v, target_err=target)
    assert ours.components_ is not None
    exact = reconstruction_error(v, ours.w_, ours.components_)
    assert ours.reconstruction_err_ == pytest.approx(exact, rel=1e-6)
    assert exact <= target
    assert ours.n_iter_ < ref.n_iter_
    assert ours.errors_[ours.n_iter_ - 1] == ours.reconstruction_err_


def test_plain_hals_without_extrapolation_matches_sklearn() -> None:
    """One sweep per factor and no extrapolation is scikit-learn's cd solver: same iterates."""
    v = _data(n=2000, c=48, seed=3)
    ref = NMF(4, init="nndsvda", solver="cd", tol=0, max_iter=30, random_state=0)
    w_ref = ref.fit_transform(v)
    ours = TorchNMF(4, device="cpu", inner=1, inner_h=1, extrapolate=False, tol=0, max_iter=30).fit(v)
    assert ours.n_iter_ == 30
    expected = reconstruction_error(v, w_ref, ref.components_)
    assert ours.reconstruction_err_ == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("n", [9000, 8192, 300])
def test_blocked_left_product_matches_matmul(n: int) -> None:
    from mixture_ray.explain.nmf import _left_product

    gen = torch.Generator().manual_seed(n)
    x, wt = torch.rand(n, 40, generator=gen), torch.rand(5, n, generator=gen)
    expected = wt.double() @ x.double()
    assert torch.allclose(_left_product(wt, x, rows=1024).double(), expected, rtol=1e-5)
