"""Per-finding heatmaps as pyramidal OME-TIFF in slide geometry, readable by QuPath, tiffslide and OpenSlide.

One pixel per tile (the tile's level-0 square); the value is the finding's probability as
``1 + round(254 p)`` in R = G = B, and 0 where no tile was classified. The physical pixel size is
the tile's (``mpp x tile_size`` µm), in the OME-XML and in the TIFF resolution tags. The pyramid is
stored twice: as OME SubIFDs (OME readers, tiffslide) and as top-level reduced-resolution images,
the only pyramid OpenSlide's generic-TIFF reader follows.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

TILE_PX = 128


def heatmap_grid(rows: pd.DataFrame, values: np.ndarray, level0_size: tuple[int, int],
                 cell: int) -> np.ndarray:
    """uint8 (rows, cols) grid of one slide: ``1 + round(254 v)`` at each tile, 0 elsewhere."""
    width, height = level0_size
    grid = np.zeros((math.ceil(height / cell), math.ceil(width / cell)), np.uint8)
    cols = np.clip(rows["x"].to_numpy() // cell, 0, grid.shape[1] - 1)
    rws = np.clip(rows["y"].to_numpy() // cell, 0, grid.shape[0] - 1)
    grid[rws, cols] = (1 + np.round(254 * np.clip(values, 0.0, 1.0))).astype(np.uint8)
    return grid


def _levels(image: np.ndarray) -> list[np.ndarray]:
    levels = [image]
    while max(levels[-1].shape[:2]) > TILE_PX:
        levels.append(levels[-1][::2, ::2])
    return levels


def write_heatmap(path: Path, grid: np.ndarray, mpp: float, name: str) -> None:
    """Write ``grid`` as a pyramidal OME-TIFF (grey RGB) of ``mpp`` µm per pixel, atomically."""
    import tifffile

    rgb = np.repeat(grid[..., None], 3, axis=2)
    levels = _levels(rgb)

    def options(level: int) -> dict[str, Any]:
        size = mpp * 2**level
        return {"tile": (TILE_PX, TILE_PX), "photometric": "rgb", "compression": "zlib",
                "resolution": (1e4 / size, 1e4 / size), "resolutionunit": "CENTIMETER"}

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    metadata = {"axes": "YXS", "Name": name, "PhysicalSizeX": mpp, "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": mpp, "PhysicalSizeYUnit": "µm"}
    with tifffile.TiffWriter(tmp, ome=True) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, metadata=metadata, **options(0))
        for level, image in enumerate(levels[1:], start=1):
            tif.write(image, subfiletype=1, **options(level))
        for level, image in enumerate(levels[1:], start=1):  # OpenSlide follows these
            tif.write(image, subfiletype=1, metadata=None, **options(level))
    os.replace(tmp, path)
