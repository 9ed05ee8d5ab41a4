"""A saved clustering (`mixture-ray cluster` output): its folder names and nearest-centroid assignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixture_ray.store.schemas import magnification_label


def clustering_folder(root: Path, magnification: float, k: int, prefix: str = "k") -> Path:
    """``root/mag-<label>/<prefix>-<k>``: where one clustering of the cluster stage lives."""
    return Path(root) / f"mag-{magnification_label(magnification)}" / f"{prefix}-{k}"


def nearest_centroid(
    x: np.ndarray, centroids: np.ndarray, batch_rows: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid (int32) and the squared distance to it, in row batches."""
    if x.ndim != 2 or centroids.ndim != 2 or x.shape[1] != centroids.shape[1]:
        raise ValueError(f"shapes do not match: rows {x.shape}, centroids {centroids.shape}")
    c = centroids.astype(np.float32)
    c_sq = (c * c).sum(axis=1)
    labels = np.empty(len(x), np.int32)
    dist = np.empty(len(x), np.float32)
    for start in range(0, len(x), batch_rows):
        rows = x[start : start + batch_rows].astype(np.float32)
        d = (rows * rows).sum(axis=1, keepdims=True) - 2.0 * rows @ c.T + c_sq
        best = d.argmin(axis=1)
        labels[start : start + len(rows)] = best
        dist[start : start + len(rows)] = np.maximum(d[np.arange(len(rows)), best], 0.0)
    return labels, dist
