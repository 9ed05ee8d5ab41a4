"""Scale: what each stage costs the driver as a cohort grows from N slides to 10 N.

A simulated cohort of small synthetic slides (a few distinct slides, symlinked under N ids, about
10 tiles each at one magnification) runs tile -> embed (ResNet18 on 64 px tiles) -> cluster, once
per size, each size in a fresh process with its own local Ray, so the driver's peak memory is that
size's alone. Per stage it reports wall time, the driver's CPU seconds per slide, the driver's peak
RSS, the store's files and rows. Cluster runs the distributed engine (the one meant for 50 M
tiles: the driver engines load every row on the driver, so their memory grows with tiles by design).
The baseline is the smallest size, measured in the same run:
``ratio`` is (10 x the small size's wall time) / (the large size's wall time) for the slowest
stage, so >= 0.91 means every stage grew by at most 11x.

It also compares embedding throughput on small slides (about 10 tiles each) with large slides
(a few slides of many tiles) holding the same number of tiles: the per-slide cost of a stage.

    python benchmarks/bench_scale.py --out bench_out/scale.json [--quick] [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402

#: Distinct synthetic slides behind the symlinks (each is read from the page cache once warm).
BASE_SLIDES = 8
TILE = 64
TILES_PER_SLIDE = 10


def make_base(work: Path, side: int, n: int, seed: int) -> list[tuple[Path, float]]:
    """``n`` distinct synthetic slides of ``side`` px; their paths and mpp."""
    from mixture_ray.config import build_config
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.synth.config import SynthConfig

    cohort = write_cohort(build_config(SynthConfig, {
        "out_dir": str(work), "n_cases": n, "min_slides_per_case": 1, "max_slides_per_case": 1,
        "width": side, "height": side, "seed": seed}))
    manifest = Path(cohort.manifest)
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:]]
    return [((manifest.parent / r[2]).resolve(), float(r[3] or 0.5)) for r in rows]


def symlinked_manifest(base: list[tuple[Path, float]], n: int, work: Path) -> Path:
    """A manifest of ``n`` slides, each a symlink to one of ``base`` (one case per slide)."""
    folder = work / f"slides_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["slide_id,case_id,path,mpp"]
    for i in range(n):
        source, mpp = base[i % len(base)]
        link = folder / f"s{i:05d}{source.suffix}"
        if not link.exists():
            link.symlink_to(source)
        lines.append(f"s{i:05d},c{i:05d},{link},{mpp}")
    manifest = work / f"manifest_{n}.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


class DriverMeter:
    """Wall time, the driver's CPU seconds and its peak RSS (sampled) over one stage."""

    def __enter__(self) -> DriverMeter:
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0, self.t0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self.done.is_set():
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.perf_counter() - self.t0
        self.cpu = usage.ru_utime + usage.ru_stime - self.cpu0
        self.done.set()
        self.thread.join()


def store_files(store: Path) -> int:
    """Data files of a store (Parquet files outside hidden folders)."""
    return sum(1 for p in store.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts))


def run_size(manifest: Path, work: Path, n: int) -> dict[str, Any]:
    """tile -> embed -> cluster on one cohort in this process; per-stage figures."""
    import logging

    import ray

    from mixture_ray.cluster.config import ClusterConfig
    from mixture_ray.cluster.stage import run as run_cluster
    from mixture_ray.config import build_config
    from mixture_ray.embed.config import EmbedConfig
    from mixture_ray.embed.stage import run as run_embed
    from mixture_ray.tile.config import TileConfig
    from mixture_ray.tile.stage import run as run_tile

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    tiles, embeddings, clusters = work / "tiles", work / "embeddings", work / "clusters"
    stages: dict[str, dict[str, Any]] = {}

    def record(name: str, meter: DriverMeter, store: Path | None, rows: int) -> None:
        stages[name] = {"wall_s": meter.wall, "driver_cpu_s": meter.cpu, "driver_cpu_ms_per_slide":
                        1000 * meter.cpu / n, "driver_peak_rss_bytes": meter.peak, "rows": rows,
                        "files": store_files(store) if store else None}

    with DriverMeter() as meter:
        tiled = run_tile(build_config(TileConfig, {
            "manifest": str(manifest), "out_dir": str(tiles), "tile_size": TILE, "magnifications": [20.0],
            "max_tiles_per_slide": TILES_PER_SLIDE, "pool.workers": 2}))
    assert tiled.complete, tiled.failures[:3]
    record("tile", meter, tiles, tiled.tiles_written)
    with DriverMeter() as meter:
        embedded = run_embed(build_config(EmbedConfig, {
            "tiles": str(tiles), "out_dir": str(embeddings), "model": "random", "pool.batch_size": 256}))
    assert embedded.complete, embedded.failures[:3]
    record("embed", meter, embeddings, embedded.tiles_embedded)
    with DriverMeter() as meter:
        run_cluster(build_config(ClusterConfig, {"embeddings": str(embeddings), "out_dir": str(clusters),
                                                 "ks": [8], "silhouette_sample": 0, "engine": "distributed",
                                                 "num_gpus": 0}))
    record("cluster", meter, None, embedded.tiles_embedded)
    ray.shutdown()
    return {"slides": n, "stages": stages}


def embed_tiles_per_s(manifest: Path, work: Path, max_tiles: int) -> dict[str, float]:
    """Embedding throughput (tiles/s, whole stage) on the slides of ``manifest``."""
    import logging

    import ray

    from mixture_ray.config import build_config
    from mixture_ray.embed.config import EmbedConfig
    from mixture_ray.embed.stage import run as run_embed
    from mixture_ray.tile.config import TileConfig
    from mixture_ray.tile.stage import run as run_tile

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    tiled = run_tile(build_config(TileConfig, {
        "manifest": str(manifest), "out_dir": str(work / "tiles"), "tile_size": TILE,
        "magnifications": [20.0], "max_tiles_per_slide": max_tiles, "pool.workers": 2}))
    assert tiled.complete, tiled.failures[:3]
    t0 = time.perf_counter()
    embedded = run_embed(build_config(EmbedConfig, {
        "tiles": str(work / "tiles"), "out_dir": str(work / "embeddings"), "model": "random",
        "pool.batch_size": 256}))
    seconds = time.perf_counter() - t0
    ray.shutdown()
    return {"tiles": embedded.tiles_embedded, "seconds": seconds,
            "tiles_per_s": embedded.tiles_embedded / seconds, "slides": tiled.slides_committed,
            "files": store_files(work / "embeddings")}


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process: prints its JSON on the last line."""
    work = Path(args.work)
    if args.child == "scale":
        result = run_size(Path(args.manifest), work, args.n)
    else:
        result = embed_tiles_per_s(Path(args.manifest), work, args.max_tiles)
    print(json.dumps(result))


def in_child(*extra: str) -> dict[str, Any]:
    """Run :func:`child` in a fresh Python process and read its result."""
    done = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True,
                          env={**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")})
    if done.returncode:
        raise SystemExit(f"bench_scale child {extra} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 slides: a smoke test")
    parser.add_argument("--sizes", default=None, help="comma-separated slide counts (default 1000,10000)")
    parser.add_argument("--child", choices=["scale", "embed"], help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-tiles", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.out is None:
        parser.error("--out is required")
    sizes = [int(s) for s in (args.sizes or ("100,1000" if args.quick else "1000,10000")).split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        base = make_base(work / "base", 512, BASE_SLIDES, seed=0)
        runs = []
        for n in sizes:
            manifest = symlinked_manifest(base, n, work)
            print(f"[bench_scale] {n} slides ...", flush=True)
            runs.append(in_child("--child", "scale", "--manifest", str(manifest), "--work",
                                 str(work / f"run_{n}"), "--n", str(n)))
        # Per-slide cost: the same number of tiles on small slides and on a few large ones.
        small_n = 100 if args.quick else 500
        small = in_child("--child", "embed", "--manifest", str(symlinked_manifest(base, small_n, work)),
                         "--work", str(work / "small"), "--max-tiles", str(TILES_PER_SLIDE))
        large_base = make_base(work / "large_base", 2048, 4, seed=1)
        large_manifest = symlinked_manifest(large_base, 4, work / "large")
        large = in_child("--child", "embed", "--manifest", str(large_manifest), "--work", str(work / "large"),
                         "--max-tiles", str(small["tiles"] // 4 + 1))
    first, last = runs[0], runs[-1]
    growth = last["slides"] / first["slides"]
    ratios = {s: growth * first["stages"][s]["wall_s"] / last["stages"][s]["wall_s"] for s in first["stages"]}
    worst = min(ratios, key=lambda s: ratios[s])
    rss_ratio = (max(v["driver_peak_rss_bytes"] for v in last["stages"].values())
                 / max(v["driver_peak_rss_bytes"] for v in first["stages"].values()))
    result = {
        "name": "scale_stage_time_growth",
        "unit": f"(growth x wall time at {first['slides']}) / wall time at {last['slides']}, slowest stage",
        "value": ratios[worst], "baseline_name": f"linear growth from {first['slides']} slides (same run)",
        "baseline_value": 1.0, "ratio": ratios[worst], "target_ratio": growth / (growth * 1.1),
        "worst_stage": worst, "per_stage_ratio": ratios, "driver_peak_rss_ratio": rss_ratio,
        "target_driver_peak_rss_ratio": 1.3, "runs": runs,
        "small_vs_large_slides_embed": {"small": small, "large": large, "target_ratio": 0.8,
                                        "ratio": small["tiles_per_s"] / large["tiles_per_s"]},
        "hardware": hardware_info(),
        "params": {"sizes": sizes, "tile": TILE, "tiles_per_slide": TILES_PER_SLIDE,
                   "base_slides": BASE_SLIDES, "slide_px": 512, "quick": args.quick, "repeats": 1,
                   "note": "one run per size (each in a fresh process and local Ray); symlinked slides"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("name", "value", "ratio", "worst_stage", "per_stage_ratio",
                                             "driver_peak_rss_ratio")}, indent=2))
    print(json.dumps({"small_vs_large_embed_ratio": result["small_vs_large_slides_embed"]["ratio"]}))


if __name__ == "__main__":
    main()
