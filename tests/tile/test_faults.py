"""Tiling survives killed workers and a killed driver; memory does not grow with slide size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixture_ray.config import build_config
from mixture_ray.store.folder import COMMITTED, StageFolder, committed_files
from mixture_ray.synth.config import SynthConfig
from mixture_ray.tile.config import TileConfig
from mixture_ray.tile.pixels import SlideCoordinates, TilePixelReader, pixel_reader_kwargs
from mixture_ray.tile.stage import run as run_tiling
from tests.conftest import REPO

TILE = 64


def make_cohort(root: Path, n_cases: int, side: int, seed: int) -> Path:
    from mixture_ray.synth.cohort import write_cohort

    cfg = build_config(
        SynthConfig,
        {"out_dir": root, "n_cases": n_cases, "min_slides_per_case": 1, "max_slides_per_case": 1,
         "width": side, "height": side, "seed": seed},
    )
    return Path(write_cohort(cfg).manifest)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("cohort"), 4, 1024, 11)


def tile_cfg(manifest: Path, out: Path, **extra: Any) -> TileConfig:
    values: dict[str, Any] = {"manifest": manifest, "out_dir": out, "tile_size": TILE,
                              "magnifications": [20.0], "max_tiles_per_slide": 60, "pool.batch_size": 16}
    values.update(extra)
    return build_config(TileConfig, values)


def tiles_of(out: Path) -> pd.DataFrame:
    frame = pq.read_table(committed_files(out)).to_pandas()
    return frame.sort_values(["slide_id", "x", "y"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def clean(fault_dir: Path, cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("clean") / "tiles"
    assert run_tiling(tile_cfg(cohort, out)).complete
    return tiles_of(out)


def assert_same_tiles(a: pd.DataFrame, b: pd.DataFrame) -> None:
    columns = ["slide_id", "magnification", "x", "y", "background_fraction", "image"]
    pd.testing.assert_frame_equal(a[columns], b[columns])


@pytest.mark.parametrize("point", ["tile.pixels", "tile.coordinates"])
def test_killed_worker_is_retried_and_output_is_unchanged(
    point: str, fault_dir: Path, cohort: Path, clean: pd.DataFrame, tmp_path: Path
) -> None:
    (fault_dir / point).touch()
    report = run_tiling(tile_cfg(cohort, tmp_path / "tiles"))
    assert not (fault_dir / point).exists(), "the fault was never triggered"
    assert list(fault_dir.glob(f"{point}.claimed-*")), "no process claimed the fault"
    assert report.complete, report.failures
    assert_same_tiles(tiles_of(tmp_path / "tiles"), clean)


def test_killed_driver_then_rerun_skips_finished_slides(
    fault_dir: Path, cohort: Path, clean: pd.DataFrame, tmp_path: Path
) -> None:
    import ray

    out = tmp_path / "tiles"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "PYTHONPATH": str(REPO)}
    # Parts of 100 rows for slides of about 60 tiles: slides span parts, so the first commit can
    # hold a slide whose other rows were still in an uncommitted part when the driver died.
    command = [sys.executable, "-m", "mixture_ray.cli", "tile", "--manifest", str(cohort), "--out-dir",
               str(out), "--tile-size", str(TILE), "--magnifications", "[20]", "--max-tiles-per-slide", "60",
               "--pool.batch-size", "16", "--pool.part-rows", "100"]
    # The driver exits abruptly (as if killed) right after its first commit.
    (fault_dir / "tile.driver-after-commit").touch()
    env["MIXTURE_RAY_FAULTS"] = str(fault_dir)
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert proc.wait(timeout=180) == 137, "the driver was not killed mid-stage"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    markers = list(out.glob(f"chunk-*/{COMMITTED}"))
    assert len(markers) == 1, "the driver was not killed after its first commit"
    assert not (out / "_SUCCESS").exists()
    index = StageFolder(out, stage="tile").index()
    before = index.committed()
    assert before, "the first commit held no whole slide"
    report = run_tiling(tile_cfg(cohort, out, **{"pool.part_rows": 100}))
    assert report.complete
    assert report.slides_skipped == len(before)
    # Rows of a slide cut by the kill were removed before the rerun tiled it again: every tile
    # once, the same tiles as a run that was never killed.
    assert_same_tiles(tiles_of(out), clean)
    assert StageFolder(out, stage="tile").committed_items() == {
        s: int(n) for s, n in clean.groupby("slide_id").size().items()}


def peak_traced_bytes(manifest: Path, cache_mb: int) -> tuple[int, int]:
    """Peak Python/numpy allocation (coordinates, then reading every tile)."""
    cfg = tile_cfg(manifest, manifest.parent / "unused", max_tiles_per_slide=0, tile_cache_mb=cache_mb)
    row = pd.read_csv(manifest).iloc[0]
    rows = pa.Table.from_pylist([{"slide_id": row.slide_id, "case_id": row.case_id,
                                  "path": str(manifest.parent / row.path), "mpp": None}])
    reader = TilePixelReader(**pixel_reader_kwargs(cfg))
    tracemalloc.start()
    try:
        coords = pa.concat_tables(list(SlideCoordinates(cfg)(rows)))
        coordinates_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        for start in range(0, coords.num_rows, cfg.pool.batch_size):
            reader(coords.slice(start, cfg.pool.batch_size))
        return coordinates_peak, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        del reader


def test_tiling_memory_does_not_grow_with_slide_size(tmp_path: Path) -> None:
    small = make_cohort(tmp_path / "small", 1, 1024, 5)
    large = make_cohort(tmp_path / "large", 1, 4096, 5)  # 16x the area, 16x the tiles
    _coords_small, pixels_small = peak_traced_bytes(small, cache_mb=2)
    coords_large, pixels_large = peak_traced_bytes(large, cache_mb=2)
    # Pixels are read tile by tile through a bounded cache: flat in slide size.
    assert pixels_large < 1.2 * pixels_small + (1 << 20), (pixels_small, pixels_large)
    # Coordinates hold metadata rows and a thumbnail mask read in blocks of at most 2048^2 px.
    block_bytes = 2048 * 2048 * 3 * 2
    assert coords_large < block_bytes + (4096 // TILE) ** 2 * 256, coords_large
