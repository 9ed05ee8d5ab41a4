"""Tiling throughput: the Ray Data pipeline vs a naive single-process OpenSlide loop.

Writes a large synthetic slide (16384^2 by default, 8192^2 with --quick), tiles every tissue
tile at 20x (280 px) with 1 and 2 pixel workers, and times a naive loop that calls OpenSlide
``read_region`` per tile on the same coordinates doing the same per-tile work (RGB, background
fraction, JPEG encode). Also reports the driver's peak RSS when tiling 5 vs 50 small slides.

    python benchmarks/bench_tiling.py --out bench_out/tiling.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402
from mixture_ray.config import build_config  # noqa: E402
from mixture_ray.store.folder import committed_files  # noqa: E402
from mixture_ray.synth.config import SynthConfig  # noqa: E402
from mixture_ray.tile.config import TileConfig  # noqa: E402


def make_slide(root: Path, side: int, seed: int = 0) -> Path:
    """One synthetic slide of ``side`` x ``side`` px; returns its manifest."""
    from mixture_ray.synth.cohort import write_cohort

    cohort = write_cohort(
        build_config(
            SynthConfig,
            {
                "out_dir": str(root),
                "n_cases": 1,
                "min_slides_per_case": 1,
                "max_slides_per_case": 1,
                "width": side,
                "height": side,
                "seed": seed,
            },
        )
    )
    return Path(cohort.manifest)


def tile_config(manifest: Path, out: Path, workers: int) -> TileConfig:
    return build_config(
        TileConfig,
        {
            "manifest": str(manifest),
            "out_dir": str(out),
            "magnifications": [20.0],
            "max_tiles_per_slide": 0,
            "pool.workers": workers,
        },
    )


def time_pipeline(manifest: Path, out: Path, workers: int) -> tuple[float, int]:
    from mixture_ray.tile.stage import run as run_tiling

    start = time.perf_counter()
    report = run_tiling(tile_config(manifest, out, workers))
    elapsed = time.perf_counter() - start
    assert report.complete, report.failures
    return elapsed, report.tiles_written


def time_naive(slide: Path, coords: list[tuple[int, int]], tile: int) -> tuple[float, float]:
    """Seconds for read_region + RGB + background + encode per tile, and for read only."""
    import openslide

    from mixture_ray.store.codec import background_fraction, encode_tile

    with openslide.OpenSlide(str(slide)) as handle:
        start = time.perf_counter()
        for x, y in coords:
            rgb = np.asarray(handle.read_region((x, y), 0, (tile, tile)).convert("RGB"))
            background_fraction(rgb)
            encode_tile(rgb, "jpeg", 90)
        full = time.perf_counter() - start
    with openslide.OpenSlide(str(slide)) as handle:
        start = time.perf_counter()
        for x, y in coords:
            handle.read_region((x, y), 0, (tile, tile))
        read_only = time.perf_counter() - start
    return full, read_only


RSS_SCRIPT = """
import resource, sys, os
sys.path.insert(0, {repo!r})
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray
ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
from mixture_ray.tile.config import TileConfig  # noqa: E402
from mixture_ray.config import build_config
from mixture_ray.tile.stage import run as run_tiling
cfg = build_config(TileConfig, {{"manifest": {manifest!r}, "out_dir": {out!r},
    "magnifications": [20.0], "max_tiles_per_slide": 50}})
report = run_tiling(cfg)
assert report.complete, report.failures
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def copies_manifest(manifest: Path, n: int, work: Path) -> Path:
    """A manifest listing the first slide of ``manifest`` ``n`` times under distinct ids."""
    lines = manifest.read_text().splitlines()
    header, row = lines[0], lines[1].split(",")
    out = work / f"manifest_{manifest.parent.name}_{n}.csv"
    slide_path = str((manifest.parent / row[2]).resolve())
    body = [f"s{i:03d},c{i:03d},{slide_path}," for i in range(n)]
    out.write_text("\n".join([header, *body]) + "\n")
    return out


def driver_peak_rss(small_manifest: Path, n: int, work: Path) -> int:
    """Peak RSS (bytes) of a fresh driver process tiling ``n`` copies of a small slide."""
    manifest = copies_manifest(small_manifest, n, work)
    script = RSS_SCRIPT.format(repo=str(REPO), manifest=str(manifest), out=str(work / f"rss_tiles_{n}"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="8192^2 slide, ~1 minute")
    parser.add_argument("--side", type=int, default=None, help="slide edge in px")
    args = parser.parse_args()
    side = args.side or (8192 if args.quick else 16384)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="bench_tiling_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        manifest = make_slide(work / "big", side)
        synth_s = time.perf_counter() - t0
        runs: dict[int, dict[str, float]] = {}
        for workers in (1, 2):
            elapsed, tiles = time_pipeline(manifest, work / f"tiles_w{workers}", workers)
            runs[workers] = {"seconds": elapsed, "tiles": tiles, "tiles_per_s": tiles / elapsed}
        # A 4-slide cohort (the same file under 4 ids) amortises start-up as real cohorts do.
        cohort = copies_manifest(manifest, 4, work)
        elapsed, tiles = time_pipeline(cohort, work / "tiles_cohort", 2)
        cohort_run = {"seconds": elapsed, "tiles": tiles, "tiles_per_s": tiles / elapsed}
        marginal = (tiles - runs[2]["tiles"]) / (elapsed - runs[2]["seconds"])
        table = pq.read_table(committed_files(work / "tiles_w2"), columns=["x", "y", "source"])
        coords = list(zip(table["x"].to_pylist(), table["y"].to_pylist(), strict=True))
        slide = Path(table["source"][0].as_py())
        naive_s, naive_read_s = time_naive(slide, coords, 280)
        naive_tps = len(coords) / naive_s
        small = make_slide(work / "small", 1536, seed=1)
        rss5 = driver_peak_rss(small, 5, work)
        rss50 = driver_peak_rss(small, 50, work)
    ray.shutdown()
    cores = 2
    per_core = cohort_run["tiles_per_s"] / cores
    result: dict[str, Any] = {
        "name": "tiling_pipeline_vs_naive_openslide",
        "unit": "tiles/s per core",
        "value": per_core,
        "baseline_name": "naive single-process OpenSlide read_region loop (same per-tile work)",
        "baseline_value": naive_tps,
        "ratio": per_core / naive_tps,
        "target_ratio": 2.5,
        "pipeline_tiles_per_s": {
            "1_slide_1_worker": runs[1]["tiles_per_s"],
            "1_slide_2_workers": runs[2]["tiles_per_s"],
            "4_slides_2_workers": cohort_run["tiles_per_s"],
            "marginal_2_workers_excluding_startup": marginal,
        },
        "ratio_marginal_per_core": marginal / cores / naive_tps,
        "seconds": {
            "1_slide_1_worker": runs[1]["seconds"],
            "1_slide_2_workers": runs[2]["seconds"],
            "4_slides_2_workers": cohort_run["seconds"],
        },
        "scaling_2_vs_1_workers": runs[2]["tiles_per_s"] / runs[1]["tiles_per_s"],
        "naive_read_only_tiles_per_s": len(coords) / naive_read_s,
        "tiles": len(coords),
        "driver_peak_rss_bytes": {"5_slides": rss5, "50_slides": rss50, "ratio_50_vs_5": rss50 / rss5},
        "synth_seconds": synth_s,
        "hardware": hardware_info(),
        "params": {
            "slide_px": side,
            "tile": 280,
            "magnification": 20,
            "cores": cores,
            "note": "pipeline time includes coordinates, Ray Data start-up and Parquet write",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
