"""AnnData ``.h5ad`` of the embeddings: ``X`` the features, ``obs`` the tile identity and labels.

``obsm["spatial"]`` holds the level-0 (x, y) of each tile, the scverse convention that squidpy and
LazySlide read; ``uns["mixture_ray"]`` records the embedding store and the settings it was made with.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd


def write_h5ad(path: Path, x: np.ndarray, obs: pd.DataFrame, provenance: dict[str, Any]) -> None:
    """Write one AnnData file atomically.

    Args:
        path: the ``.h5ad`` file.
        x: (n_tiles, n_features) float32 matrix.
        obs: one row per tile: ``slide_id``, ``case_id``, ``x``, ``y``, ``magnification`` and
            any label columns (strings become categoricals in the file).
        provenance: what made the data (stored as JSON text in ``uns["mixture_ray"]``).
    """
    import anndata as ad

    frame = obs.reset_index(drop=True).copy()
    frame.index = [f"{s}:{x}:{y}:{m:g}" for s, x, y, m in
                   zip(frame.slide_id, frame.x, frame.y, frame.magnification, strict=True)]
    spatial = frame[["x", "y"]].to_numpy(np.int64)
    adata = ad.AnnData(X=np.ascontiguousarray(x, np.float32), obs=frame,
                       obsm={"spatial": spatial},
                       uns={"mixture_ray": {key: json.dumps(value, default=str)
                                            for key, value in provenance.items()}})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    adata.write_h5ad(tmp)
    os.replace(tmp, path)
