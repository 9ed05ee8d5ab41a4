"""Slide GradCAM: overlap average of tile GradCAMs, its figure, and grids made without it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mixture_ray.config import build_config
from mixture_ray.explain.apply import GRADCAM_PNG, apply_grid, compare_png
from mixture_ray.explain.config import ExplainFitConfig
from mixture_ray.explain.extract import SlideGrid, extract_slide, load_grid
from mixture_ray.explain.plots import COLOUR_BAR_PX, GRADCAM_CMAP, gradcam_image, side_by_side
from mixture_ray.explain.slide_cam import NoGradCamError, slide_gradcam

WIDTH, HEIGHT, TISSUE = 256, 192, 160  # target px; x >= TISSUE is white (no tissue tiles)
THUMB = 256  # thumbnail: 256 x 192, 8 px per grid cell (the cell is 8 target px)


def _grid(boxes: list[tuple[int, int, int, int]], cams: np.ndarray | None,
          shape: tuple[int, int], folder: Path) -> SlideGrid:
    tiles = pd.DataFrame(boxes, columns=["r0", "c0", "r1", "c1"])
    return SlideGrid("s", np.zeros((*shape, 1), np.float32), np.zeros(shape, np.int32), tiles,
                     cams, {}, folder)


def test_slide_gradcam_averages_overlapping_tiles_by_hand(tmp_path: Path) -> None:
    a = np.ones((4, 4), np.float32)
    a[0, 0] = 5.0
    b = np.full((4, 4), 3.0, np.float32)
    c = np.full((4, 4), 7.0, np.float32)  # half outside the grid on the right
    boxes = [(0, 0, 4, 4), (0, 2, 4, 6), (2, 4, 6, 8)]
    cam = slide_gradcam(_grid(boxes, np.stack([a, b, c]), (4, 6), tmp_path))
    expected = np.array([[5, 1, 2, 2, 3, 3],
                         [1, 1, 2, 2, 3, 3],
                         [1, 1, 2, 2, 5, 5],  # (3 + 7) / 2
                         [1, 1, 2, 2, 5, 5]], np.float32)
    np.testing.assert_allclose(cam, expected)
    with pytest.raises(NoGradCamError, match=r"no cams\.npy"):
        slide_gradcam(_grid(boxes, None, (4, 6), tmp_path))
    with pytest.raises(NoGradCamError, match="for 3 tiles"):
        slide_gradcam(_grid(boxes, np.stack([a, b]), (4, 6), tmp_path))
    with pytest.raises(NoGradCamError, match="do not fit"):
        slide_gradcam(_grid(boxes, np.ones((3, 5, 5), np.float32), (4, 6), tmp_path))


def _viridis(level: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return np.rint(np.asarray(colormaps[GRADCAM_CMAP](level))[..., :3] * 255).astype(np.uint8)


def test_gradcam_image_scales_to_the_max_and_leaves_uncovered_cells_white() -> None:
    cam = np.array([[0.0, 1.0, 2.0], [4.0, 9.0, 0.5]], np.float32)  # 9 is uncovered: not the max
    valid = np.array([[True, True, True], [True, False, True]])
    image = np.asarray(gradcam_image(cam, valid, (300, 200), "GradCAM (class 1), scaled to the slide's max"))
    assert image.shape == (200 + COLOUR_BAR_PX, 300, 3)
    assert (image[100:200, 100:200] == 255).all()  # the uncovered cell: white
    np.testing.assert_array_equal(image[150, 0], _viridis(np.array(1.0)))  # 4 = the covered max
    np.testing.assert_array_equal(image[50, 0], _viridis(np.array(0.0)))
    np.testing.assert_array_equal(image[50, 150], _viridis(np.array(0.25)))
    bar = image[200:]
    assert (bar == _viridis(np.array(0.0))).all(axis=-1).any()  # the colour ramp's ends
    assert (bar == _viridis(np.array(1.0))).all(axis=-1).any()
    assert (bar < 60).all(axis=-1).sum() > 50  # black caption text
    narrow = gradcam_image(cam, valid, (30, 20), "a caption much wider than thirty pixels")
    assert narrow.height == 20 + COLOUR_BAR_PX and narrow.width > 30  # widened for the caption
    assert (np.asarray(narrow)[:20, 30:] == 255).all()
    panels = [("a", Image.new("RGB", (30, 20))), ("b", Image.new("RGB", (40, 50)))]
    assert side_by_side(panels).size == (30 + 8 + 40, 18 + 50)


@pytest.fixture(scope="module")
def slide_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Path]:
    """A tiny slide (tissue left, white right) and its grid: resnet18 layer2, 64-px tiles, stride 32."""
    from mixture_ray.synth.defects import write_like_svs

    root = tmp_path_factory.mktemp("slidecam")
    rng = np.random.default_rng(0)
    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    image[:, :TISSUE] = rng.integers(0, 200, (HEIGHT, TISSUE, 3), dtype=np.uint8)
    path = write_like_svs(root / "s.svs", image, mpp=0.5, tile=64)
    cfg = build_config(ExplainFitConfig, {
        "out_dir": root, "manifest": root / "none.csv", "layer": "layer2", "mpp": 0.5,
        "tile_size": 64, "stride": 32, "border": 1, "device": "cpu", "batch_size": 8,
        "thumbnail_px": THUMB})
    threads = torch.get_num_threads()
    try:
        error = extract_slide(cfg.grid_spec(), cfg.run_settings(), root / "grids", "s", str(path), 0.5)
    finally:
        torch.set_num_threads(threads)
    assert error is None, error
    return root / "grids" / "s", cfg.grid_spec(), path


def _direct_slide_cam(folder: Path, spec: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Each tile through forward_with_cam alone, its border cut, summed onto the grid cell by cell."""
    from mixture_ray.explain.gradcam import forward_with_cam
    from mixture_ray.explain.model import build_model
    from mixture_ray.explain.tiles import read_tile, to_batch
    from mixture_ray.slides import open_slide, plan_level

    grid = load_grid(folder)
    rows, cols = grid.count.shape
    total, count = np.zeros((rows, cols)), np.zeros((rows, cols), int)
    reader = open_slide(str(path))
    try:
        plan = plan_level(reader, mpp=spec.mpp, manifest_mpp=0.5)
        pixels = [read_tile(reader, plan, int(t.tx), int(t.ty), 64, (WIDTH, HEIGHT))
                  for t in grid.tiles.itertuples(index=False)]
    finally:
        reader.close()
    model = build_model(spec.arch, spec.num_classes, None)  # the task's network (no checkpoint)
    _, _, cams = forward_with_cam(model, "layer2", to_batch(pixels), 1)  # all tiles in one batch
    assert cams is not None and cams.shape == (len(pixels), 8, 8)
    for tile, cam in zip(grid.tiles.itertuples(index=False), cams.numpy(), strict=True):
        for i in range(6):  # the 8 x 8 map less its 1-px border
            for j in range(6):
                r, c = int(tile.r0) + i, int(tile.c0) + j
                if 0 <= r < rows and 0 <= c < cols:
                    total[r, c] += cam[1 + i, 1 + j]
                    count[r, c] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0), count


def test_slide_gradcam_equals_tiles_through_forward_with_cam(slide_grid: tuple[Path, Any, Path]) -> None:
    folder, spec, path = slide_grid
    grid = load_grid(folder)
    cam = slide_gradcam(grid)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the grid task (task_cpus: 1)
    try:
        expected, count = _direct_slide_cam(folder, spec, path)
    finally:
        torch.set_num_threads(threads)
    assert cam.shape == grid.count.shape == (HEIGHT // 8, WIDTH // 8)
    np.testing.assert_array_equal(count, grid.count)
    assert count.max() >= 4 and (count == 0).any()  # overlaps, and cells without tissue tiles
    assert cam.max() > 0 and cam[count > 0].std() > 0
    np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-5 * float(cam.max()))
    assert (cam[count == 0] == 0).all()


def _nmf(folder: Path, channels: int) -> Path:
    nmf = folder / "nmf"
    nmf.mkdir()
    torch.save({"H": torch.rand(2, channels, generator=torch.Generator().manual_seed(0))}, nmf / "k2.pt")
    return nmf


def test_apply_writes_the_gradcam_figures(slide_grid: tuple[Path, Any, Path], tmp_path: Path) -> None:
    folder, _, _ = slide_grid
    grid = load_grid(folder)
    out = tmp_path / "apply" / "s"
    applied = apply_grid(folder, _nmf(tmp_path, grid.grid.shape[-1]), [2], device="cpu", out=out,
                         target=1)
    assert applied.gradcam_skipped is None
    assert applied.gradcam_files == (GRADCAM_PNG, compare_png(2)) == ("gradcam.png", "k2_gradcam_compare.png")
    assert "GradCAM: gradcam.png, k2_gradcam_compare.png" in applied.summary()
    cam = slide_gradcam(grid)
    np.testing.assert_array_equal(np.load(out / "gradcam.npy"), cam)
    with Image.open(folder / "thumb.png") as thumb:
        w, h = thumb.size
    assert (w, h) == (THUMB, THUMB * HEIGHT // WIDTH)
    figure = np.asarray(Image.open(out / GRADCAM_PNG).convert("RGB"))
    assert figure.shape == (h + COLOUR_BAR_PX, w, 3)
    valid = grid.count > 0
    level = np.where(valid, cam / cam[valid].max(), 0.0)
    expected = np.where(valid[..., None], _viridis(level), 255).astype(np.uint8)
    np.testing.assert_array_equal(figure[:h], expected.repeat(8, axis=0).repeat(8, axis=1))
    assert (figure[:h, TISSUE + 56:] == 255).all()  # right of the last tissue tile's kept cells
    compare = Image.open(out / compare_png(2))
    assert compare.size == (3 * w + 2 * 8, 18 + h + COLOUR_BAR_PX)
    panel = np.asarray(compare.convert("RGB"))[18:, 2 * (w + 8):]
    np.testing.assert_array_equal(panel, figure)  # the GradCAM panel is the figure
    multi = np.asarray(Image.open(out / "k2_multiclass.png").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(compare.convert("RGB"))[18: 18 + h, w + 8: 2 * w + 8], multi)


def test_a_grid_without_gradcam_is_applied_and_its_figure_skipped_with_the_reason(
        slide_grid: tuple[Path, Any, Path], tmp_path: Path) -> None:
    folder, _, _ = slide_grid
    old = tmp_path / "grids" / "s"
    shutil.copytree(folder, old)
    (old / "cams.npy").unlink()  # as a grid made with gradcam: false, or before GradCAM was kept
    grid = load_grid(old)
    assert grid.cams is None
    out = tmp_path / "apply" / "s"
    applied = apply_grid(old, _nmf(tmp_path, grid.grid.shape[-1]), [2], device="cpu", out=out, target=1)
    assert applied.gradcam_files == ()
    assert applied.gradcam_skipped is not None and "no cams.npy" in applied.gradcam_skipped
    assert "GradCAM figures skipped: " in applied.summary()
    assert (out / "k2_multiclass.png").exists() and (out / "k2_classes.npy").exists()
    assert not any((out / name).exists() for name in ("gradcam.npy", GRADCAM_PNG, compare_png(2)))
