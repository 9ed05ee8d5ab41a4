"""NMF class weights of an ``explain apply`` per tile: the mean weight over each tile's footprint.

The weight maps of ``explain apply`` (``apply/<slide_id>/k<K>_weights.npy``, rows x cols x K) live on
the slide's feature grid: cell (r, c) is the level-0 square of edge ``cell_level0`` starting at
(c * cell_level0, r * cell_level0) (``grids/<slide_id>/meta.json``). A tile's footprint is the grid
cells whose centre lies inside its level-0 square (the cell holding the tile's centre when the tile
is smaller than a cell), and of those the covered ones (``count.npy`` > 0); the measurement is the
mean weight of each class over them (none covered: no value).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def nmf_name(k: int, j: int) -> str:
    """Measurement name of class ``j`` of the NMF with ``k`` classes (``nmf_k4_class2``)."""
    return f"nmf_k{k}_class{j}"


@dataclasses.dataclass(frozen=True)
class AppliedNmf:
    """A complete ``explain apply``: where it is, the Ks applied and the slides it covers."""

    explain: Path
    ks: tuple[int, ...]
    slides: frozenset[str]

    @classmethod
    def read(cls, explain: Path) -> AppliedNmf:
        """The apply of ``explain`` (its ``apply/`` must be complete).

        Args:
            explain: the explain folder (``grids/``, ``apply/``).

        Returns:
            The Ks and slides of the apply.
        """
        from mixture_ray.store.folder import SUCCESS, read_settings, require_complete

        require_complete(explain / "apply", "explain apply")
        applied = json.loads((explain / "apply" / SUCCESS).read_text())
        ks = applied.get("n_classes") or read_settings(explain / "apply")["n_classes"]
        return cls(Path(explain), tuple(int(k) for k in ks), frozenset(str(s) for s in applied["slides"]))

    def names(self) -> list[str]:
        """Every measurement name, K by K and class by class."""
        return [nmf_name(k, j) for k in self.ks for j in range(k)]

    def tile_means(self, slide_id: str, tiles: pd.DataFrame) -> dict[str, np.ndarray]:
        """Mean class weight over each tile's footprint, per measurement name (NaN: no covered cell).

        Args:
            slide_id: the slide of the tiles.
            tiles: its tiles: ``x``, ``y`` (level-0 top-left) and ``size_level0``.

        Returns:
            Measurement name -> float64 (len(tiles),); all NaN for a slide the apply does not cover.
        """
        n = len(tiles)
        if slide_id not in self.slides:
            return {name: np.full(n, np.nan) for name in self.names()}
        grid = self.explain / "grids" / slide_id
        meta = json.loads((grid / "meta.json").read_text())
        cell = float(meta.get("cell_level0") or meta["cell_px"] * meta["target_downsample"])
        covered = np.load(grid / "count.npy") > 0
        boxes = footprints(tiles["x"].to_numpy(np.float64), tiles["y"].to_numpy(np.float64),
                           tiles["size_level0"].to_numpy(np.float64), cell, covered.shape)
        counts = box_sums(covered.astype(np.float64)[..., None], boxes)[:, 0]
        out: dict[str, np.ndarray] = {}
        for k in self.ks:
            weights = np.load(self.explain / "apply" / slide_id / f"k{k}_weights.npy", mmap_mode="r")
            sums = box_sums(np.where(covered[..., None], weights, 0.0), boxes)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(counts[:, None] > 0, sums / counts[:, None], np.nan)
            for j in range(k):
                out[nmf_name(k, j)] = means[:, j]
        return out


def footprints(x: np.ndarray, y: np.ndarray, size: np.ndarray, cell: float,
               shape: tuple[int, int]) -> np.ndarray:
    """Grid boxes (row0, col0, row1, col1; ends exclusive, clipped) of the cells centred in each tile.

    Args:
        x: level-0 left edge per tile.
        y: level-0 top edge per tile.
        size: level-0 edge per tile.
        cell: level-0 edge of a grid cell.
        shape: (rows, cols) of the grid.

    Returns:
        int64 (n, 4); a tile smaller than a cell gets the cell holding its centre.
    """

    def span(start: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        first = np.ceil(start / cell - 0.5).astype(np.int64)
        end = np.ceil((start + size) / cell - 0.5).astype(np.int64)
        centre = np.floor((start + size / 2) / cell).astype(np.int64)
        empty = end <= first
        first, end = np.where(empty, centre, first), np.where(empty, centre + 1, end)
        return np.clip(first, 0, count), np.clip(end, 0, count)

    r0, r1 = span(y, shape[0])
    c0, c1 = span(x, shape[1])
    return np.stack([r0, c0, r1, c1], axis=1)


def box_sums(values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Sums of ``values`` (rows, cols, C) over grid boxes, by a summed-area table (float64).

    Args:
        values: the grid.
        boxes: (n, 4) row0, col0, row1, col1 (ends exclusive, within the grid).

    Returns:
        (n, C) sums (0 for an empty box).
    """
    rows, cols, channels = values.shape
    table = np.zeros((rows + 1, cols + 1, channels), np.float64)
    np.cumsum(np.cumsum(np.asarray(values, np.float64), axis=0), axis=1, out=table[1:, 1:])
    r0, c0, r1, c1 = (boxes[:, i] for i in range(4))
    sums: np.ndarray = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
    return sums

