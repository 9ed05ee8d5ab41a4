"""Sample feature vectors from slide grids, fit NMF per K, save and load H (no Ray here).

:func:`fit_grids` is the whole fit from files to files: the body of explain fit's Ray task.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mixture_ray.explain.extract import load_grid
from mixture_ray.explain.nmf import TorchNMF, device_label, resolve_device

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from mixture_ray.explain.extract import SlideGrid


def valid_vectors(grid: SlideGrid) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices of covered cells, their feature vectors n x C float32)."""
    index = np.flatnonzero(grid.count.ravel() > 0)
    flat = np.asarray(grid.grid).reshape(-1, grid.grid.shape[-1])
    return index, np.ascontiguousarray(flat[index], dtype=np.float32)


def sample_vectors(grids: Sequence[SlideGrid], n: int, seed: int) -> np.ndarray:
    """At most ``n`` covered-cell vectors drawn without replacement across all slides."""
    counts = [int((g.count > 0).sum()) for g in grids]
    total = sum(counts)
    if total == 0:
        raise ValueError("no covered grid cells to fit NMF on")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=min(n, total), replace=False))
    parts, offset = [], 0
    for grid, count in zip(grids, counts, strict=True):
        local = chosen[(chosen >= offset) & (chosen < offset + count)] - offset
        if len(local):
            parts.append(valid_vectors(grid)[1][local])
        offset += count
    return np.concatenate(parts)


def fit_nmf(vectors: np.ndarray, ks: Sequence[int], *, max_iter: int, tol: float, seed: int,
            device: str, out: Path) -> list[dict[str, Any]]:
    """Fit one NMF per K; save ``k<K>.pt`` ({"H": K x C}); returns one summary row per K."""
    rows = []
    for k in ks:
        start = time.perf_counter()
        model = TorchNMF(k, max_iter=max_iter, tol=tol, seed=seed, device=device).fit(vectors)
        assert model.components_ is not None
        h = model.components_.detach().cpu()
        torch.save({"H": h}, out / f"k{k}.pt")
        norm = float(np.linalg.norm(vectors))
        rows.append({"k": k, "n_vectors": len(vectors), "channels": vectors.shape[1],
                     "reconstruction_err": model.reconstruction_err_,
                     "relative_err": model.reconstruction_err_ / norm if norm else 0.0,
                     "n_iter": model.n_iter_, "seconds": time.perf_counter() - start})
    return rows


def fit_grids(grids: Path, slide_ids: Sequence[str], ks: Sequence[int], *, n_vectors: int,
              max_iter: int, tol: float, seed: int, device: str,
              out: Path) -> tuple[list[dict[str, Any]], str]:
    """Read the slides' grids, sample their vectors, fit one NMF per K and save each H in ``out``.

    Args:
        grids: the grids folder (``<slide_id>/`` per slide).
        slide_ids: the slides whose grids are sampled, in this order.
        ks: the class counts K fitted.
        n_vectors: feature vectors sampled at most (see :func:`sample_vectors`).
        max_iter: NMF iterations at most.
        tol: NMF stopping tolerance.
        seed: the sampling and NMF initialisation seed.
        device: torch device setting (``auto``: CUDA when torch sees a GPU, else CPU).
        out: the NMF folder; ``k<K>.pt`` is written there per K.

    Returns:
        (one summary row per K as :func:`fit_nmf` gives, the device label: ``cpu`` or ``cuda:<i>``).
    """
    vectors = sample_vectors([load_grid(grids / i) for i in slide_ids], n_vectors, seed)
    used = resolve_device(device)
    rows = fit_nmf(vectors, ks, max_iter=max_iter, tol=tol, seed=seed, device=str(used), out=out)
    return rows, device_label(used)


def load_h(nmf_dir: Path, k: int, device: torch.device) -> torch.Tensor:
    """H (K x C) of a fitted NMF, loaded with weights_only=True."""
    state = torch.load(nmf_dir / f"k{k}.pt", map_location="cpu", weights_only=True)
    return torch.as_tensor(state["H"], dtype=torch.float32).to(device)
