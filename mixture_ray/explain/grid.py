"""Slide feature grid: overlapping tiles scattered onto one grid, averaged by sum + count.

A grid cell is one feature-map pixel of the layer (``cell`` target pixels). Large grids live
in ``.npy`` memory maps so memory stays bounded; the sum array becomes the mean in place.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path


@dataclasses.dataclass(frozen=True)
class GridGeometry:
    """Tiles of ``tile`` px every ``stride`` px over a ``width`` x ``height`` (target px) slide."""

    width: int
    height: int
    tile: int
    stride: int
    cell: int  # target px per feature-map pixel (layer stride)
    border: int  # feature-map px dropped at each tile edge

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the grid."""
        return math.ceil(self.height / self.cell), math.ceil(self.width / self.cell)

    def origins(self) -> list[tuple[int, int]]:
        """Top-left (x, y) target px of every tile.

        Tiles start ``border`` cells before 0 so the kept part of the first tile starts at the slide
        edge; reads outside are padded.
        """
        if self.stride % self.cell or self.tile % self.cell:
            raise ValueError(
                f"tile {self.tile} and stride {self.stride} must be multiples of the layer's "
                f"stride {self.cell} px so tiles land on whole grid cells"
            )
        start = -self.border * self.cell
        xs = range(start, max(self.width - self.border * self.cell, start + 1), self.stride)
        ys = range(start, max(self.height - self.border * self.cell, start + 1), self.stride)
        return [(x, y) for y in ys for x in xs]

    def kept_box(self, x: int, y: int, fmap: int) -> tuple[int, int, int, int]:
        """Grid (row0, col0, row1, col1) of a tile's kept feature pixels (may exceed the grid)."""
        r0, c0 = y // self.cell + self.border, x // self.cell + self.border
        keep = fmap - 2 * self.border
        return r0, c0, r0 + keep, c0 + keep


class GridAccumulator:
    """Running sum (rows x cols x C float32) and count (rows x cols int32) of feature vectors."""

    def __init__(self, shape: tuple[int, int], channels: int, *, path: Path | None = None) -> None:
        rows, cols = shape
        if path is None:
            self.sum: np.ndarray = np.zeros((rows, cols, channels), np.float32)
        else:
            self.sum = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                                 shape=(rows, cols, channels))
        self.count = np.zeros((rows, cols), np.int32)
        self.path = path

    def add(self, fmap: np.ndarray, box: tuple[int, int, int, int], border: int) -> None:
        """Add a (C, h, w) feature map minus ``border`` px at grid ``box``, clipped to the grid."""
        r0, c0, r1, c1 = box
        inner = fmap[:, border: fmap.shape[1] - border, border: fmap.shape[2] - border]
        rows, cols = self.count.shape
        rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, rows), min(c1, cols)
        if rr1 <= rr0 or cc1 <= cc0:
            return
        part = inner[:, rr0 - r0: rr1 - r0, cc0 - c0: cc1 - c0]
        self.sum[rr0:rr1, cc0:cc1] += np.moveaxis(part, 0, -1)
        self.count[rr0:rr1, cc0:cc1] += 1

    def mean(self, block_rows: int = 64) -> np.ndarray:
        """Average in place (cells never covered stay 0; see ``count``), block by block."""
        for r in range(0, self.count.shape[0], block_rows):
            n = np.maximum(self.count[r: r + block_rows], 1)[..., None]
            self.sum[r: r + block_rows] /= n
        if isinstance(self.sum, np.memmap):
            self.sum.flush()
        return self.sum
