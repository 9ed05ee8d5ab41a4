"""Scale: what each stage costs the driver as a cohort grows from N slides to 10 N.

A simulated cohort of small synthetic slides (a few distinct slides, symlinked under N ids, about
10 tiles each at one magnification) runs tile -> embed (ResNet18 on 64 px tiles) -> cluster ->
classify -> maps -> cases -> review -> export (see ``scale_stages.py``), once per size, each size in
a fresh process with its own local Ray, so the driver's peak memory is that size's alone. Per stage
it reports wall time, the driver's CPU seconds per slide, the driver's peak RSS, the store's files
and rows. Cluster runs the distributed engine (the one meant for 50 M tiles: the driver engines
load every row on the driver, so their memory grows with tiles by design).
The baseline is the smallest size, measured in the same run:
``ratio`` is (10 x the small size's wall time) / (the large size's wall time) for the slowest
stage, so >= 0.91 means every stage grew by at most 11x.

The smallest size runs once more with every store in a bucket of moto's S3 server on loopback,
behind a proxy that counts requests: each stage's object-store requests per slide.

It also compares embedding throughput on small slides (about 10 tiles each) with large slides
(a few slides of many tiles) holding the same number of tiles: the per-slide cost of a stage.

    python benchmarks/bench_scale.py --out bench_out/scale.json [--quick] [--sizes 1000,10000] [--no-s3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402
from benchmarks.scale_stages import TILE, TILES_PER_SLIDE, run_stages, store_files  # noqa: E402

#: Distinct synthetic slides behind the symlinks (each is read from the page cache once warm).
BASE_SLIDES = 8


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


def s3_run(manifest: Path, work: Path, n: int, rate: float = 0.0) -> dict[str, Any]:
    """Every stage with its stores in a bucket of moto's S3 server, behind a proxy counting requests.

    The server and the proxy run as threads of this (the driver's) process, so this run's driver
    CPU and memory include them: only its request counts (and wall times against another run of
    this function) are quoted. ``rate``: the share of requests the proxy fails (seeded; 503, 500,
    or a dropped connection), as ``bench_s3_faults.py`` asks; the faults it injected are returned.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.cluster_path.faulty_s3 import FaultyProxy

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with FaultyProxy(f"http://{host}:{port}", rate=0.0, seed=0) as proxy:
            os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": proxy.endpoint})
            boto3.client("s3").create_bucket(Bucket="bench")
            proxy.rate = rate  # the bucket exists: from here on, the stages' requests fail at this rate
            result = run_stages(manifest, work, n, f"s3://bench/run_{n}", requests=lambda: proxy.forwarded)
            return {**result, "fault_rate": rate, "faults_injected": dict(proxy.injected)}
    finally:
        server.stop()


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
            "files": store_files(str(work / "embeddings"))}


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process: prints its JSON on the last line."""
    work = Path(args.work)
    if args.child == "scale":
        result = run_stages(Path(args.manifest), work, args.n, str(work / "stores"))
    elif args.child == "s3":
        result = s3_run(Path(args.manifest), work, args.n, args.rate)
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
    parser.add_argument("--no-s3", action="store_true", help="skip the request count on loopback S3")
    parser.add_argument("--s3-slides", type=int, default=1000, help="slides of the loopback S3 run")
    parser.add_argument("--no-embed-compare", action="store_true",
                        help="skip the small vs large slides embedding comparison")
    parser.add_argument("--child", choices=["scale", "s3", "embed"], help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-tiles", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
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
        runs: list[dict[str, Any]] = []
        s3 = None

        def keep_partial() -> None:  # a run cut short still leaves what it measured, marked partial
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"partial": True, "runs": runs, "s3_run": s3}, indent=2))

        for i, n in enumerate(sizes):
            manifest = symlinked_manifest(base, n, work)
            print(f"[bench_scale] {n} slides ...", flush=True)
            runs.append(in_child("--child", "scale", "--manifest", str(manifest), "--work",
                                 str(work / f"run_{n}"), "--n", str(n)))
            keep_partial()
            if i == 0 and not args.no_s3:  # before the largest size, which takes longest
                print(f"[bench_scale] {args.s3_slides} slides, stores on loopback S3 ...", flush=True)
                s3 = in_child("--child", "s3", "--manifest",
                              str(symlinked_manifest(base, args.s3_slides, work)),
                              "--work", str(work / f"s3_{args.s3_slides}"), "--n", str(args.s3_slides))
                keep_partial()
        # Per-slide cost: the same number of tiles on small slides and on a few large ones.
        small_n = 100 if args.quick else 500
        small: dict[str, Any] = {"tiles_per_s": float("nan")}
        large: dict[str, Any] = {"tiles_per_s": float("nan")}
        if not args.no_embed_compare:
            small = in_child("--child", "embed", "--manifest", str(symlinked_manifest(base, small_n, work)),
                             "--work", str(work / "small"), "--max-tiles", str(TILES_PER_SLIDE))
            large_base = make_base(work / "large_base", 2048, 4, seed=1)
            large_manifest = symlinked_manifest(large_base, 4, work / "large")
            large = in_child("--child", "embed", "--manifest", str(large_manifest), "--work",
                             str(work / "large"), "--max-tiles", str(small["tiles"] // 4 + 1))
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
        "s3_requests_per_slide": ({k: v["requests_per_slide"] for k, v in s3["stages"].items()}
                                  if s3 else None),
        "s3_run": s3,
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
                                             "driver_peak_rss_ratio", "s3_requests_per_slide")}, indent=2))
    print(json.dumps({"small_vs_large_embed_ratio": result["small_vs_large_slides_embed"]["ratio"]}))


if __name__ == "__main__":
    main()
