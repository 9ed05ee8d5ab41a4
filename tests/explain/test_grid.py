"""Overlap grid: scatter + average on a constructed example, border drop, clipping, memmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixture_ray.explain.grid import GridAccumulator, GridGeometry


def _fmap(value: float, channels: int = 2, size: int = 6) -> np.ndarray:
    return np.full((channels, size, size), value, np.float32)


def test_overlapping_tiles_are_averaged(tmp_path: Path) -> None:
    # tile 6 feature px, border 1 -> 4x4 kept cells; second tile 2 cells to the right
    acc = GridAccumulator((4, 6), 2)
    acc.add(_fmap(1.0), (0, 0, 4, 4), 1)
    acc.add(_fmap(3.0), (0, 2, 4, 6), 1)
    mean = acc.mean()
    assert acc.count.tolist() == [[1, 1, 2, 2, 1, 1]] * 4
    np.testing.assert_allclose(mean[:, :2], 1.0)
    np.testing.assert_allclose(mean[:, 2:4], 2.0)  # overlap: (1 + 3) / 2
    np.testing.assert_allclose(mean[:, 4:], 3.0)


def test_border_is_dropped_and_boxes_clip_to_the_grid() -> None:
    fmap = np.zeros((1, 6, 6), np.float32)
    fmap[0, 1:5, 1:5] = np.arange(16).reshape(4, 4)
    fmap[0, 0, :] = fmap[0, -1, :] = fmap[0, :, 0] = fmap[0, :, -1] = 99.0
    acc = GridAccumulator((3, 3), 1)
    acc.add(fmap, (-1, -1, 3, 3), 1)  # top-left cell of kept part lies outside the grid
    np.testing.assert_allclose(acc.mean()[..., 0], np.arange(16).reshape(4, 4)[1:, 1:])
    assert (acc.count == 1).all()


def test_memmap_grid_equals_in_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = [rng.random((3, 8, 8)).astype(np.float32) for _ in range(4)]
    boxes = [(0, 0, 4, 4), (0, 2, 4, 6), (2, 0, 6, 4), (2, 2, 6, 6)]
    mem = GridAccumulator((6, 6), 3)
    disk = GridAccumulator((6, 6), 3, path=tmp_path / "grid.npy")
    for fmap, box in zip(maps, boxes, strict=True):
        mem.add(fmap, box, 2)
        disk.add(fmap, box, 2)
    np.testing.assert_allclose(mem.mean(), disk.mean())
    assert isinstance(disk.sum, np.memmap)
    np.testing.assert_allclose(np.load(tmp_path / "grid.npy"), mem.sum)


def test_geometry_tiles_cover_the_slide_with_kept_cells() -> None:
    geom = GridGeometry(width=1000, height=600, tile=512, stride=256, cell=32, border=2)
    assert geom.shape == (19, 32)
    covered = np.zeros(geom.shape, bool)
    for x, y in geom.origins():
        r0, c0, r1, c1 = geom.kept_box(x, y, 16)
        assert (r1 - r0, c1 - c0) == (12, 12)
        covered[max(r0, 0): r1, max(c0, 0): c1] = True
    assert covered.all()
    with pytest.raises(ValueError, match="multiples"):
        GridGeometry(1000, 600, 512, 250, 32, 2).origins()
