"""Non-integrated baseline: per-case frequencies of the nearest k-means centroid, for each k.

Cohort tiles (their embeddings) are assigned to the saved centroids of ``mixture-ray cluster``
(``mag-<m>/k-<k>/centroids.npy`` with its ``scaler.json``); columns are ``<mag>x/c<cluster>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixture_ray.cases.frequencies import case_counts, combine, frequencies
from mixture_ray.errors import ConfigError
from mixture_ray.store.clusterings import clustering_folder, nearest_centroid
from mixture_ray.store.embeddings import load_embeddings
from mixture_ray.store.schemas import magnification_label

if TYPE_CHECKING:
    from collections.abc import Sequence


def load_centroids(clusters: Path, magnification: float, k: int) -> tuple[np.ndarray, dict[str, object]]:
    """Centroids and scaler of one saved clustering; a clear error naming what exists otherwise."""
    folder = clustering_folder(clusters, magnification, k)
    if not (folder / "centroids.npy").exists():
        found = sorted(p.name for p in folder.parent.glob("k-*")) if folder.parent.exists() else []
        raise ConfigError(
            f"clusters: {folder} has no centroids (found {found or 'none'} at "
            f"{magnification_label(magnification)}); "
            f"run `mixture-ray cluster --ks ...` with k={k} first"
        )
    return np.load(folder / "centroids.npy"), json.loads((folder / "scaler.json").read_text())


def assign(x: np.ndarray, centroids: np.ndarray, scaler: dict[str, object]) -> np.ndarray:
    """Nearest-centroid cluster per row, in the space the clustering was fitted in."""
    if scaler.get("mean") is not None:
        mean = np.asarray(scaler["mean"], np.float32)
        scale = np.asarray(scaler["scale"], np.float32)
        x = (x - mean) / scale
    labels, _ = nearest_centroid(x, centroids)
    return labels


def clustered_feature(clusters: Path) -> str:
    """The embedding column the clusterings were fitted on (from the cluster stage's metrics.csv)."""
    path = Path(clusters) / "metrics.csv"
    if not path.exists():
        raise ConfigError(f"clusters: {path} not found; give a folder written by `mixture-ray cluster`")
    features = sorted(set(pd.read_csv(path)["feature"].astype(str)))
    if len(features) != 1:
        raise ConfigError(f"clusters: {path} mixes embedding columns {features}; cluster one of them")
    return features[0]


def baseline_tables(embeddings: Sequence[Path], clusters: Path, ks: Sequence[int]) -> dict[int, pd.DataFrame]:
    """Per-case cluster frequencies for each k (magnifications side by side)."""
    feature = clustered_feature(clusters)
    per_mag = {}
    for store in embeddings:
        for mag, (keys, x) in load_embeddings(store, feature).items():
            if np.isnan(mag):
                raise ConfigError(f"embeddings: {store} has tiles of unknown magnification")
            per_mag[mag] = (keys, x)
    out: dict[int, pd.DataFrame] = {}
    for k in ks:
        tables = []
        for mag, (keys, x) in sorted(per_mag.items()):
            centroids, scaler = load_centroids(clusters, mag, k)
            labels = pd.Series(assign(x, centroids, scaler)).map(lambda c: f"c{c}")
            names = [f"c{c}" for c in range(len(centroids))]
            tables.append(case_counts(keys, labels, names, magnification_label(mag)))
        out[k], _ = frequencies(combine(tables))
    return out
