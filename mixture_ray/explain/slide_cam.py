"""Slide-level GradCAM: each tile's GradCAM averaged over overlapping tiles on the slide grid.

The grid task keeps, per tile, the GradCAM of its kept feature pixels (``cams.npy``, the tile's
border already dropped, in ``tiles.parquet`` row order). Scattering them onto the grid at each
tile's kept box and dividing by the cover count is the same overlap average as the feature vectors
(:class:`~mixture_ray.explain.grid.GridAccumulator`), so a GradCAM cell lines up with an activation
vector and an NMF class cell. No Ray here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixture_ray.explain.grid import GridAccumulator

if TYPE_CHECKING:
    from mixture_ray.explain.extract import SlideGrid


class NoGradCamError(ValueError):
    """A slide grid without usable per-tile GradCAM (the message says why)."""


def slide_gradcam(grid: SlideGrid) -> np.ndarray:
    """The slide's GradCAM: per-tile GradCAM averaged over the tiles covering each grid cell.

    Args:
        grid: a loaded slide grid with ``cams`` (one kept-box GradCAM per row of ``tiles``).

    Returns:
        rows x cols float32, the mean GradCAM of the tiles covering each cell (0 where no tile
        does; ``grid.count > 0`` marks the covered cells).

    Raises:
        NoGradCamError: the grid has no GradCAM (made with ``gradcam: false`` or by an earlier
            version), or its GradCAM does not match its tiles.
    """
    if grid.cams is None:
        raise NoGradCamError(f"{grid.folder} has no cams.npy (the grid was made with gradcam: false "
                             "or by an earlier version of mixture_ray)")
    boxes = grid.tiles[["r0", "c0", "r1", "c1"]].to_numpy(np.int64)
    cams = grid.cams
    if cams.ndim != 3 or len(cams) != len(boxes):
        raise NoGradCamError(f"{grid.folder}: cams.npy holds {cams.shape[0] if cams.ndim else 0} "
                             f"GradCAMs of shape {cams.shape[1:]} for {len(boxes)} tiles")
    sizes = {(int(r1 - r0), int(c1 - c0)) for r0, c0, r1, c1 in boxes}
    if sizes and sizes != {cams.shape[1:]}:
        raise NoGradCamError(f"{grid.folder}: GradCAM maps {cams.shape[1:]} do not fit the tiles' "
                             f"kept boxes {sorted(sizes)}")
    acc = GridAccumulator(grid.count.shape, 1)
    for cam, (r0, c0, r1, c1) in zip(cams, boxes, strict=True):
        acc.add(cam[None].astype(np.float32, copy=False), (int(r0), int(c0), int(r1), int(c1)), 0)
    return acc.mean()[..., 0]
