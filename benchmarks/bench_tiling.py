"""Tiling throughput: the Ray Data pipeline vs a naive single-process OpenSlide loop.

Writes a large synthetic slide (16384^2 by default, 8192^2 with --quick), tiles every tissue
tile at 20x (280 px) with 1 and 2 pixel workers, and times a naive loop that calls OpenSlide
``read_region`` per tile on the same coordinates doing the same per-tile work (RGB, background
fraction, JPEG encode). The pipeline tiles the slide under 4 ids (a 4-slide cohort). Also times
the pipeline's own worker code in a plain in-process loop (the cost of Ray), the start-up (a tiny
slide) apart from steady-state tiles/s, and the peak RSS of the driver and of the largest Ray
worker when tiling 5 vs 50 small slides. Full runs quote the median of 3 repeats.

    python benchmarks/bench_tiling.py --out bench_out/tiling.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
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


def time_in_process(manifest: Path) -> tuple[float, int]:
    """The pipeline's own per-slide and per-tile code (coordinates, pixel reader) in a plain loop, no Ray."""
    import pyarrow as pa

    from mixture_ray.store.manifest import read_manifest
    from mixture_ray.tile.pixels import SlideCoordinates, TilePixelReader, pixel_reader_kwargs

    cfg = tile_config(manifest, manifest.parent / "unused", 1)
    rows = pa.Table.from_pandas(read_manifest(manifest), preserve_index=False)
    reader = TilePixelReader(**pixel_reader_kwargs(cfg))
    start = time.perf_counter()
    tiles = 0
    for block in SlideCoordinates(cfg)(rows):
        for offset in range(0, block.num_rows, cfg.pool.batch_size):
            tiles += reader(block.slice(offset, cfg.pool.batch_size)).num_rows
    return time.perf_counter() - start, tiles


RSS_SCRIPT = """
import os, sys, threading, time
sys.path.insert(0, {repo!r})
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import psutil, ray
ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
from mixture_ray.tile.config import TileConfig  # noqa: E402
from mixture_ray.config import build_config
from mixture_ray.tile.stage import run as run_tiling
me = psutil.Process()
peaks = {{"driver": 0, "worker": 0}}
done = threading.Event()
def sample():
    while not done.is_set():
        peaks["driver"] = max(peaks["driver"], me.memory_info().rss)
        for proc in psutil.process_iter(["cmdline"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
                if "ray::" in cmd or "default_worker.py" in cmd:
                    peaks["worker"] = max(peaks["worker"], proc.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        time.sleep(0.1)
thread = threading.Thread(target=sample, daemon=True)
thread.start()
cfg = build_config(TileConfig, {{"manifest": {manifest!r}, "out_dir": {out!r},
    "magnifications": [20.0], "max_tiles_per_slide": 50, "pool.workers": 2}})
report = run_tiling(cfg)
done.set(); thread.join()
assert report.complete, report.failures
print(peaks["driver"], peaks["worker"])
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


def peak_rss(small_manifest: Path, n: int, work: Path) -> tuple[int, int]:
    """Peak RSS (bytes) of a fresh driver and of its largest Ray worker, tiling ``n`` copies of a slide."""
    manifest = copies_manifest(small_manifest, n, work)
    script = RSS_SCRIPT.format(repo=str(REPO), manifest=str(manifest), out=str(work / f"rss_tiles_{n}"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    driver, worker = result.stdout.strip().splitlines()[-1].split()
    return int(driver), int(worker)


def one_repeat(work: Path, manifest: Path, cohort: Path, tiny: Path, index: int) -> dict[str, float]:
    """Every timing of one repeat (a fresh output folder each).

    The pipeline tiles a 4-slide cohort (the big slide under 4 ids, as a real cohort amortises
    start-up); the naive and in-process loops run over the big slide once (tiles/s is per tile).
    """
    times: dict[str, float] = {}
    startup_s, _ = time_pipeline(tiny, work / f"tiny_{index}", 2)
    times["startup_s"] = startup_s
    for workers in (1, 2):
        elapsed, tiles = time_pipeline(cohort, work / f"tiles_w{workers}_{index}", workers)
        times[f"w{workers}_s"], times["tiles"] = elapsed, tiles
        times[f"w{workers}_tps"] = tiles / elapsed
        # Steady state: the run without its fixed start-up (NaN when the run is no longer than it).
        steady = elapsed - startup_s
        times[f"w{workers}_steady_tps"] = tiles / steady if steady > 0.5 else float("nan")
    columns = ["slide_id", "x", "y", "source"]
    table = pq.read_table(committed_files(work / f"tiles_w2_{index}"), columns=columns)
    table = table.filter(pc.equal(table["slide_id"], table["slide_id"][0]))  # one copy of the slide
    coords = list(zip(table["x"].to_pylist(), table["y"].to_pylist(), strict=True))
    naive_s, naive_read_s = time_naive(Path(table["source"][0].as_py()), coords, 280)
    times["naive_tps"], times["naive_read_tps"] = len(coords) / naive_s, len(coords) / naive_read_s
    in_process_s, in_tiles = time_in_process(manifest)
    times["in_process_tps"] = in_tiles / in_process_s
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="8192^2 slide, one repeat: a smoke test")
    parser.add_argument("--side", type=int, default=None, help="slide edge in px")
    parser.add_argument("--repeats", type=int, default=None, help="full runs; the median is quoted (3)")
    args = parser.parse_args()
    side = args.side or (8192 if args.quick else 16384)
    repeats = args.repeats or (1 if args.quick else 3)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="bench_tiling_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        manifest = make_slide(work / "big", side)
        synth_s = time.perf_counter() - t0
        tiny = make_slide(work / "tiny", 768, seed=2)
        time_pipeline(tiny, work / "warm_up", 2)  # the session's first execution starts Ray's workers
        cohort = copies_manifest(manifest, 4, work)
        runs = [one_repeat(work, manifest, cohort, tiny, i) for i in range(repeats)]
        small = make_slide(work / "small", 1536, seed=1)
        rss5 = peak_rss(small, 5, work)
        rss50 = peak_rss(small, 50, work)
    ray.shutdown()
    med = {key: float(statistics.median(r[key] for r in runs)) for key in runs[0]}
    cores = 2
    per_core = med["w2_tps"] / cores
    result: dict[str, Any] = {
        "name": "tiling_pipeline_vs_naive_openslide",
        "unit": "tiles/s per core",
        "value": per_core,
        "baseline_name": "naive single-process OpenSlide read_region loop (same per-tile work)",
        "baseline_value": med["naive_tps"],
        "ratio": per_core / med["naive_tps"],
        "target_ratio": 2.5,
        "ratio_steady_state_per_core": med["w2_steady_tps"] / cores / med["naive_tps"],
        "vs_in_process_worker_code": {
            "ratio": med["w1_tps"] / med["in_process_tps"], "target_ratio": 0.8,
            "ratio_steady_state": med["w1_steady_tps"] / med["in_process_tps"],
            "in_process_tiles_per_s": med["in_process_tps"], "pipeline_1_worker_tiles_per_s": med["w1_tps"]},
        "scaling_2_vs_1_workers": {"ratio": med["w2_tps"] / med["w1_tps"], "target_ratio": 1.8,
                                   "steady_state": med["w2_steady_tps"] / med["w1_steady_tps"]},
        "startup_seconds": med["startup_s"],
        "pipeline_tiles_per_s": {"1_worker": med["w1_tps"], "2_workers": med["w2_tps"],
                                 "1_worker_steady": med["w1_steady_tps"],
                                 "2_workers_steady": med["w2_steady_tps"]},
        "seconds": {"1_worker": med["w1_s"], "2_workers": med["w2_s"]},
        "naive_read_only_tiles_per_s": med["naive_read_tps"],
        "tiles": int(med["tiles"]),
        "peak_rss_bytes": {"driver_5_slides": rss5[0], "driver_50_slides": rss50[0],
                           "driver_ratio_50_vs_5": rss50[0] / rss5[0],
                           "worker_5_slides": rss5[1], "worker_50_slides": rss50[1],
                           "worker_ratio_50_vs_5": rss50[1] / max(1, rss5[1])},
        "repeats": runs,
        "synth_seconds": synth_s,
        "hardware": hardware_info(),
        "params": {
            "slide_px": side, "tile": 280, "magnification": 20, "cores": cores, "repeats": repeats,
            "quick": args.quick,
            "note": "medians of the repeats; pipeline time includes coordinates, Ray Data start-up and the "
                    "Parquet write; steady state subtracts the start-up (a 768 px slide tiled the same way)",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("name", "value", "baseline_value", "ratio")}, indent=2))


if __name__ == "__main__":
    main()
