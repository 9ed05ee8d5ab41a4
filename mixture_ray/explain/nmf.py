"""Torch NMF (accelerated HALS with extrapolation) on CPU or GPU; V (n x C) ~= W (n x K) H (K x C).

``TorchNMF(k).fit(V)`` returns self with ``components_`` (H), ``w_`` (W), ``reconstruction_err_``
(Frobenius norm of V - W H, as scikit-learn reports it, but accumulated in float64) and ``n_iter_``;
``transform(V)`` solves W with H fixed.

The solver (one outer iteration = one W update, then one H update):

* initialisation: NNDSVDa, as scikit-learn's ``init="nndsvda"``;
* each factor update is ``inner`` (W) or ``inner_h`` (H) sweeps of HALS column updates on the Gram
  matrices (V H^T, H H^T), i.e. the exact coordinate descent of scikit-learn's ``cd`` solver, with
  the two expensive products over V computed once per update (accelerated HALS, Gillis & Glineur
  2012);
* extrapolation between outer iterations, W^ = W_n + beta (W_n - W_{n-1}) (projected on W >= 0) and
  H^ = H_n + beta (H_n - H_{n-1}), with beta grown while the error decreases and cut, with a restart
  from the plain iterate, when it rises (HER, Ang & Gillis 2019);
* the error of each iterate (W^_n, H_n) is ||V||^2 - 2 <W^, V H^T> + <W^T W^, H H^T>, accumulated
  in float64 from the float32 product V H_n^T (sums of C terms each), which the next W update needs
  anyway: it matches the float64 residual norm to ~1e-8 relative, so stopping at a target error is
  exact. The form with W^T V (float32 sums of n terms; a single MKL sgemm of 100k rows is off by
  ~1e-5 relative) is available one product earlier and only steers beta.

The factors returned are those of the lowest error seen.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mixture_ray.errors import ConfigError

# Extrapolation schedule of Ang & Gillis (2019), tuned on bench_nmf's matrices and the tests' data.
# Near a stationary point rounding noise makes the error "rise" every few iterations; the floor
# keeps beta from decaying towards float32 denormals (which slow every update on CPU ~10x).
_BETA0, _ETA, _GAMMA, _GAMMA_BAR, _BETA_MIN = 0.25, 1.5, 1.1, 1.05, 1e-2


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but torch sees no CUDA GPU")
    return torch.device(device)


def device_label(device: torch.device) -> str:
    """``cpu`` or ``cuda:<i>`` (the index the current process sees), for run records."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index}"


def _as_tensor(v: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32, device=device)
    if t.ndim != 2:
        raise ValueError(f"NMF input must be 2-D (got shape {tuple(t.shape)})")
    if t.numel() and float(t.min()) < 0:
        raise ValueError("NMF input must be non-negative")
    return t.contiguous()


def _sq_norm(x: torch.Tensor) -> float:
    """||x||^2 accumulated in float64 (no float64 copy of x on CPU)."""
    if x.device.type == "cpu":
        xn = x.numpy()
        return float(np.einsum("ij,ij->", xn, xn, dtype=np.float64))
    return float(torch.linalg.vector_norm(x, dtype=torch.float64)) ** 2


def _randomized_svd(v: torch.Tensor, k: int, seed: int, oversample: int = 10,
                    niter: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k (U, S, V^T) of v by a randomized range finder.

    QR-normalised power iterations (Halko et al. 2011, as ``torch.svd_lowrank``), with v^T-products
    taken as ``_left_product``.
    """
    q = min(k + oversample, min(v.shape))
    omega = torch.randn(v.shape[1], q, generator=torch.Generator().manual_seed(seed)).to(v.device)
    basis = torch.linalg.qr(v @ omega).Q
    for _ in range(niter):
        back = torch.linalg.qr(_left_product(basis.T.contiguous(), v).T).Q  # C x q
        basis = torch.linalg.qr(v @ back).Q
    ub, s, vh = torch.linalg.svd(_left_product(basis.T.contiguous(), v), full_matrices=False)
    return (basis @ ub[:, :k]), s[:k], vh[:k]


def _nndsvda(v: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVD initialisation with zeros filled by the mean (scikit-learn's ``nndsvda``)."""
    u, s, vh = _randomized_svd(v, k, seed)
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


def _hals(xt: torch.Tensor, at: torch.Tensor, b: torch.Tensor, sweeps: int) -> torch.Tensor:
    """HALS sweeps, in place, on the rows of ``xt`` (K x m) minimising ||M - xt^T F||.

    ``at = F M^T`` (K x m) and ``b = F F^T`` (K x K); row j of ``xt`` is one factor column, kept
    contiguous so that each coordinate step streams over memory once.
    """
    diag = b.diagonal().clamp(min=1e-12)
    for _ in range(sweeps):
        for j in range(xt.shape[0]):
            step = torch.addmv(at[j], xt.T, b[j], alpha=-1)
            xt[j].addcdiv_(step, diag[j]).clamp_(min=0)
    return xt


def _left_product(wt: torch.Tensor, x: torch.Tensor, rows: int = 2048) -> torch.Tensor:
    """W^T V (K x C) from W^T (K x n).

    On CPU, as a batch of row-block products summed: for this (short and wide) x (tall) shape that
    runs about 2x faster than one ``wt @ x``.
    """
    n_blocks = x.shape[0] // rows
    if x.device.type != "cpu" or n_blocks < 2:
        return wt @ x
    cut = n_blocks * rows
    blocks = wt[:, :cut].reshape(wt.shape[0], n_blocks, rows).transpose(0, 1)
    out = torch.bmm(blocks, x[:cut].view(n_blocks, rows, x.shape[1])).sum(0)
    if cut < x.shape[0]:
        out += wt[:, cut:] @ x[cut:]
    return out


def _sq_error(norm2: float, wt: torch.Tensor, wtw64: torch.Tensor, vht: torch.Tensor,
              h: torch.Tensor) -> float:
    """||V - W H||^2 from ||V||^2, W^T (K x n), W^T W in float64, (V H^T)^T (K x n) and H.

    Accumulated in float64 (the float32 terms of the cross sum are single products).
    """
    h64 = h.double()
    cross = float((wt * vht).sum(dtype=torch.float64))
    return max(norm2 - 2 * cross + float((wtw64 * (h64 @ h64.T)).sum()), 0.0)


def _gram_sq_error(norm2: float, h: torch.Tensor, wtv: torch.Tensor, wtw64: torch.Tensor) -> float:
    """||V - W H||^2 from W^T V (float32 sums over n, off by ~1e-5 relative): only steers beta."""
    hd = h.double()
    return norm2 - 2 * float((hd * wtv.double()).sum()) + float((wtw64 * (hd @ hd.T)).sum())


def _schedule(rose: bool, beta: float, beta_max: float) -> tuple[float, float, float]:
    """(H extrapolation factor now, next beta, next beta cap) of HER after one iteration."""
    if rose:  # restart from the plain iterate; damp beta and cap it where it failed
        return 0.0, max(beta / _ETA, _BETA_MIN), beta
    return beta, min(beta_max, _GAMMA * beta), min(1.0, _GAMMA_BAR * beta_max)


class TorchNMF:
    """Frobenius NMF by accelerated HALS with extrapolation (see the module docstring)."""

    def __init__(self, n_components: int, *, max_iter: int = 400, tol: float = 1e-4,
                 inner: int = 3, seed: int = 0, device: str = "auto", inner_h: int = 10,
                 extrapolate: bool = True) -> None:
        if n_components <= 0:
            raise ConfigError(f"n_components: must be > 0 (got {n_components})")
        if inner <= 0 or inner_h <= 0:
            raise ConfigError(f"inner, inner_h: must be > 0 (got {inner}, {inner_h})")
        self.n_components = n_components
        self.max_iter, self.tol, self.inner, self.seed = max_iter, tol, inner, seed
        self.inner_h, self.extrapolate = inner_h, extrapolate
        self.device = resolve_device(device)
        self.components_: torch.Tensor | None = None
        self.reconstruction_err_ = math.nan
        self.n_iter_ = 0
        self.errors_: list[float] = []

    def fit(self, v: np.ndarray | torch.Tensor, *, target_err: float | None = None) -> TorchNMF:
        """Fit H (and W, kept as ``w_``).

        Stops when the best error improved by less than ``tol`` (relative) over the last 10
        iterations, after ``max_iter`` iterations, or, when ``target_err`` is given, at the first
        iterate whose error is <= ``target_err`` (the tolerance rule is then not used).
        ``errors_[i]`` is the error of iterate i + 1; ``n_iter_`` the iterate returned.
        """
        x = _as_tensor(v, self.device)
        norm2 = _sq_norm(x)
        w, h = _nndsvda(x, self.n_components, self.seed)
        wt = w.T.contiguous()
        beta, beta_max = (_BETA0, 1.0) if self.extrapolate else (0.0, 0.0)
        h_coef = 0.0  # extrapolation factor applied to H before the next W update
        h_prev = a_prev = wt_hat = wtw64 = None
        cheap_prev = math.inf
        best, best_it, checked = math.inf, 0, math.inf
        best_w, best_h = wt, h
        self.errors_ = []
        for it in range(1, self.max_iter + 2):
            at = (x @ h.T).T.contiguous()  # (V H_{it-1}^T)^T, K x n
            if wt_hat is not None and wtw64 is not None:  # error of the previous iterate (W^, H)
                err = math.sqrt(_sq_error(norm2, wt_hat, wtw64, at, h))
                self.errors_.append(err)
                if err < best:
                    best, best_it, best_w, best_h = err, it - 1, wt_hat, h
                if target_err is not None and err <= target_err:
                    break
                if target_err is None and (it - 1) % 10 == 0:
                    if checked - best < self.tol * checked:
                        break
                    checked = best
            if it > self.max_iter:
                break
            if h_coef and h_prev is not None and a_prev is not None:
                h_hat = h + h_coef * (h - h_prev)
                at_hat = at + h_coef * (at - a_prev)
            else:
                h_hat, at_hat = h, at
            wt_new = _hals(wt.clone(), at_hat, h_hat @ h_hat.T, self.inner)
            wt_hat = (wt_new + beta * (wt_new - wt)).clamp_(min=0) if beta else wt_new
            wtv = _left_product(wt_hat, x)
            w64 = wt_hat.double()
            wtw64 = w64 @ w64.T
            h_new = _hals(h.clone(), wtv, wtw64.float(), self.inner_h)
            if self.extrapolate:
                cheap = _gram_sq_error(norm2, h_new, wtv, wtw64)
                h_coef, beta, beta_max = _schedule(cheap > cheap_prev, beta, beta_max)
                cheap_prev = cheap
            h_prev, a_prev, h, wt = h, at, h_new, wt_new
        self.n_iter_ = best_it
        self.w_ = best_w.T.contiguous()
        self.components_ = best_h
        self.reconstruction_err_ = best
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
    hht, vht = h @ h.T, (x @ h.T).T.contiguous()
    wt: torch.Tensor = torch.linalg.lstsq(hht, vht).solution.clamp(min=0).contiguous()
    previous = math.inf
    for it in range(max_iter):
        wt = _hals(wt, vht, hht, 1)
        if it % 10 == 9:
            err = float((-2 * (wt * vht).sum() + ((wt @ wt.T) * hht).sum()).double())
            if abs(previous - err) < tol * max(abs(previous), 1e-12):
                break
            previous = err
    return wt.T.contiguous()


def reconstruction_error(v: np.ndarray | torch.Tensor, w: torch.Tensor | np.ndarray,
                         h: torch.Tensor | np.ndarray) -> float:
    """Frobenius norm of V - W H."""
    vt = torch.as_tensor(v, dtype=torch.float64)
    wt, ht = torch.as_tensor(w, dtype=torch.float64).cpu(), torch.as_tensor(h, dtype=torch.float64).cpu()
    return float(torch.linalg.norm(vt.cpu() - wt @ ht))
