"""Tile coordinates (and features) as TRIDENT writes them, with CLAM's legacy attributes.

Per slide and magnification, under ``<mag>x_<patch>px_<overlap>px_overlap/`` (TRIDENT's folder name):

- ``patches/<slide_id>_patches.h5``: dataset ``coords`` (N, 2) int64, level-0 (x, y) of each tile's
  top-left corner, with TRIDENT's attributes ``patch_size`` (px at the target magnification),
  ``patch_size_level0``, ``level0_magnification``, ``target_magnification``, ``overlap``, ``name``,
  ``savetodir``, ``level0_width``, ``level0_height``, and CLAM's ``patch_level``, ``downsample``,
  ``level_dim``, ``downsampled_level_dim``, ``custom_downsample`` (read px / stored px);
- ``features_<encoder>/<slide_id>.h5``: ``features`` (N, D) float32 and the same ``coords``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def trident_folder(target_magnification: float, patch_size: int, overlap: int) -> str:
    """``20x_256px_0px_overlap``: TRIDENT's name for a coordinate set."""
    return f"{target_magnification:g}x_{patch_size}px_{overlap}px_overlap"


def coords_attributes(*, slide_id: str, savetodir: str, patch_size: int, patch_size_level0: int,
                      target_magnification: float, overlap: int, level: int,
                      level_dimensions: tuple[tuple[int, int], ...],
                      level_downsamples: tuple[float, ...]) -> dict[str, Any]:
    """The attributes of a ``coords`` dataset (TRIDENT's, then CLAM's legacy ones)."""
    width, height = level_dimensions[0]
    level_w, level_h = level_dimensions[level]
    downsample = float(level_downsamples[level])
    read_px = patch_size_level0 / downsample
    return {
        "patch_size": int(patch_size),
        "patch_size_level0": int(patch_size_level0),
        "level0_magnification": float(target_magnification * patch_size_level0 / patch_size),
        "target_magnification": float(target_magnification),
        "overlap": int(overlap),
        "name": slide_id,
        "savetodir": savetodir,
        "level0_width": int(width),
        "level0_height": int(height),
        "patch_level": int(level),
        "downsample": np.array([downsample, downsample], np.float64),
        "level_dim": np.array([width, height], np.int64),
        "downsampled_level_dim": np.array([level_w, level_h], np.int64),
        "custom_downsample": float(read_px / patch_size),
    }


def write_coords(path: Path, coords: np.ndarray, attributes: Mapping[str, Any],
                 features: np.ndarray | None = None, encoder: str = "") -> None:
    """Write a coordinates file (``features`` None) or a features file, atomically."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as fh:
        data = fh.create_dataset("coords", data=np.asarray(coords, np.int64).reshape(-1, 2),
                                 maxshape=(None, 2), chunks=True)
        for key, value in attributes.items():
            data.attrs[key] = value
        if features is not None:
            feats = fh.create_dataset("features", data=np.asarray(features, np.float32))
            feats.attrs["name"] = str(attributes["name"])
            feats.attrs["savetodir"] = str(path.parent)
            feats.attrs["encoder"] = encoder
    os.replace(tmp, path)
