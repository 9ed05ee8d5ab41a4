"""Torch NMF (accelerated HALS) that runs on CPU or GPU; V (n x C) ~= W (n x K) H (K x C).

``TorchNMF(k).fit(V)`` returns self with ``components_`` (H), ``reconstruction_err_`` (Frobenius
norm, as scikit-learn reports it) and ``n_iter_``; ``transform(V)`` solves W with H fixed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mixture_ray.errors import ConfigError


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but torch sees no CUDA GPU")
    return torch.device(device)


def _as_tensor(v: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32, device=device)
    if t.ndim != 2:
        raise ValueError(f"NMF input must be 2-D (got shape {tuple(t.shape)})")
    if bool((t < 0).any()):
        raise ValueError("NMF input must be non-negative")
    return t


def _nndsvda(v: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD initialisation with zeros filled by the mean (scikit-learn's ``nndsvda``)."""
    torch.manual_seed(seed)
    u, s, vt = torch.svd_lowrank(v, q=min(k + 10, min(v.shape)), niter=4)
    u, s, vh = u[:, :k], s[:k], vt[:, :k].T
    w = torch.zeros(v.shape[0], k, device=v.device)
    h = torch.zeros(k, v.shape[1], device=v.device)
    w[:, 0] = s[0].sqrt() * u[:, 0].abs()
    h[0] = s[0].sqrt() * vh[0].abs()
    for j in range(1, k):
        x, y = u[:, j], vh[j]
        xp, xn, yp, yn = x.clamp(min=0), (-x).clamp(min=0), y.clamp(min=0), (-y).clamp(min=0)
        mp = xp.norm() * yp.norm()
        mn = xn.norm() * yn.norm()
        if mp > mn:
            uu, vv, sigma = xp / xp.norm(), yp / yp.norm(), mp
        else:
            uu, vv, sigma = xn / xn.norm().clamp(min=1e-12), yn / yn.norm().clamp(min=1e-12), mn
        lbd = (s[j] * sigma).sqrt()
        w[:, j], h[j] = lbd * uu, lbd * vv
    avg = v.mean()
    w[w < 1e-6] = avg
    h[h < 1e-6] = avg
    return w, h


def _hals(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, inner: int) -> torch.Tensor:
    """Update the rows of ``x`` (n x K) to minimise ||M - x F||, given a = M F^T, b = F F^T."""
    for _ in range(inner):
        for j in range(x.shape[1]):
            step = (a[:, j] - x @ b[:, j]) / b[j, j].clamp(min=1e-12)
            x[:, j] = (x[:, j] + step).clamp(min=1e-16)
    return x


def _sq_error(norm2: float, h: torch.Tensor, wtv: torch.Tensor, wtw: torch.Tensor) -> float:
    """||V - W H||^2 from ||V||^2, H, W^T V and W^T W (no n x C residual is formed)."""
    h64 = h.double()
    value = norm2 - 2 * float((h64 * wtv.double()).sum()) + float((wtw.double() * (h64 @ h64.T)).sum())
    return max(value, 0.0)


class TorchNMF:
    """Frobenius NMF by accelerated HALS (Gillis & Glineur): a few cheap inner sweeps per product."""

    def __init__(self, n_components: int, *, max_iter: int = 400, tol: float = 1e-4,
                 inner: int = 3, seed: int = 0, device: str = "auto") -> None:
        if n_components <= 0:
            raise ConfigError(f"n_components: must be > 0 (got {n_components})")
        self.n_components = n_components
        self.max_iter, self.tol, self.inner, self.seed = max_iter, tol, inner, seed
        self.device = resolve_device(device)
        self.components_: torch.Tensor | None = None
        self.reconstruction_err_ = math.nan
        self.n_iter_ = 0
        self.errors_: list[float] = []

    def fit(self, v: np.ndarray | torch.Tensor, *, target_err: float | None = None) -> TorchNMF:
        """Fit H (and W, kept as ``w_``); stop on ``tol`` or once the error is <= ``target_err``."""
        x = _as_tensor(v, self.device)
        norm2 = float(x.double().pow(2).sum())
        w, h = _nndsvda(x, self.n_components, self.seed)
        previous = math.inf
        self.errors_ = []
        for it in range(1, self.max_iter + 1):
            w = _hals(w, x @ h.T, h @ h.T, self.inner)
            wtv, wtw = w.T @ x, w.T @ w
            h = _hals(h.T.contiguous(), wtv.T, wtw, self.inner).T.contiguous()
            err = math.sqrt(_sq_error(norm2, h, wtv, wtw))
            self.errors_.append(err)
            self.n_iter_ = it
            if target_err is not None and err <= target_err:
                break
            if target_err is None and it % 10 == 0:
                if previous - err < self.tol * previous:
                    break
                previous = err
        self.w_, self.components_ = w, h
        self.reconstruction_err_ = float(torch.linalg.norm(x - w @ h)) if x.numel() < 5e7 else err
        return self

    def transform(self, v: np.ndarray | torch.Tensor, *, max_iter: int = 200) -> torch.Tensor:
        """W >= 0 minimising ||V - W H|| with the fitted H fixed."""
        if self.components_ is None:
            raise RuntimeError("TorchNMF.transform called before fit")
        return transform(v, self.components_, max_iter=max_iter, tol=self.tol)


def transform(v: np.ndarray | torch.Tensor, h: torch.Tensor, *, max_iter: int = 200,
              tol: float = 1e-4) -> torch.Tensor:
    """Solve W >= 0 for V ~= W H with ``h`` (K x C) fixed (HALS on W, least-squares start)."""
    x = _as_tensor(v, h.device)
    hht, vht = h @ h.T, x @ h.T
    w = torch.linalg.lstsq(hht, vht.T).solution.T.clamp(min=1e-16).contiguous()
    previous = math.inf
    for it in range(max_iter):
        w = _hals(w, vht, hht, 1)
        if it % 10 == 9:
            err = float((-2 * (w * vht).sum() + ((w.T @ w) * hht).sum()).double())
            if abs(previous - err) < tol * max(abs(previous), 1e-12):
                break
            previous = err
    return w


def reconstruction_error(v: np.ndarray | torch.Tensor, w: torch.Tensor | np.ndarray,
                         h: torch.Tensor | np.ndarray) -> float:
    """Frobenius norm of V - W H."""
    vt = torch.as_tensor(v, dtype=torch.float64)
    wt, ht = torch.as_tensor(w, dtype=torch.float64).cpu(), torch.as_tensor(h, dtype=torch.float64).cpu()
    return float(torch.linalg.norm(vt.cpu() - wt @ ht))
