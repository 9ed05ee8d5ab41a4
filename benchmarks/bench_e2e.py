"""Slides -> embeddings on the coordinates-only path, end to end, against the model alone.

Writes a synthetic cohort, then times the pipeline a user runs to get embeddings without storing
pixels: ``tile`` with ``encoding: none`` (coordinates, exact background rule) then ``embed``
reading each tile from its slide (CPU actors) and running ResNet18 on one model actor, with the
Parquet writes and per-slide commits. Its tiles/s is compared on the same cores with

* the model alone on ready tensors (the bare loop of ``bench_embedding``): target ratio >= 0.85,
  meaning the reading work hides behind the model;
* a naive one-process loop: OpenSlide ``read_region`` per tile + the same model, batch by batch:
  the pipeline should be faster (> 1).

The median of 3 repeats; ``--quick`` is a smoke test.

    python benchmarks/bench_e2e.py --out bench_out/e2e.json [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_embedding import time_bare  # noqa: E402
from benchmarks.hardware import hardware_info  # noqa: E402
from benchmarks.record import save_record, start_local_ray  # noqa: E402
from mixture_ray.config import build_config  # noqa: E402
from mixture_ray.embed.config import EmbedConfig  # noqa: E402
from mixture_ray.store.folder import committed_files  # noqa: E402
from mixture_ray.synth.config import SynthConfig  # noqa: E402
from mixture_ray.tile.config import TileConfig  # noqa: E402


def make_cohort(work: Path, side: int, n_cases: int) -> Path:
    """A synthetic cohort; returns its manifest."""
    from mixture_ray.synth.cohort import write_cohort

    cohort = write_cohort(build_config(
        SynthConfig, {"out_dir": str(work / "cohort"), "n_cases": n_cases, "min_slides_per_case": 1,
                      "max_slides_per_case": 1, "width": side, "height": side, "seed": 0}))
    return Path(cohort.manifest)


def time_pipeline(manifest: Path, out: Path, tile: int, max_tiles: int, batch: int,
                  threads: int) -> tuple[float, float, int]:
    """Seconds of tile (coordinates only) and of embed (pixels from the slides); tiles embedded."""
    from mixture_ray.embed.stage import run as run_embedding
    from mixture_ray.tile.stage import run as run_tiling

    start = time.perf_counter()
    tiles = run_tiling(build_config(TileConfig, {
        "manifest": str(manifest), "out_dir": str(out / "tiles"), "tile_size": tile, "magnifications": [20.0],
        "max_tiles_per_slide": max_tiles, "encoding": "none", "pool.workers": 2}))
    assert tiles.complete, tiles.failures
    tile_s = time.perf_counter() - start
    start = time.perf_counter()
    report = run_embedding(build_config(EmbedConfig, {
        "tiles": str(out / "tiles"), "out_dir": str(out / "emb"), "model": "random", "pool.batch_size": batch,
        "pool.workers": 1, "pool.actor_cpus": 1, "torch_threads": threads, "input.cpus": 1}))
    assert report.complete, report.failures
    return tile_s, time.perf_counter() - start, report.tiles_embedded


def read_from_slides(tiles: Path) -> Any:
    """The tiles of a coordinates-only store read from their slides (the bare loop's input)."""
    import torch

    from mixture_ray.slides.open_cache import OpenSlides

    table = pq.read_table(committed_files(tiles)).to_pylist()
    slides = OpenSlides("auto", tile_cache_bytes=64 << 20)
    pixels = [slides.read_tile(r["source"], level=r["level"], x=r["x"], y=r["y"],
                               read_size=slides.level_read_size(r["source"], level=r["level"],
                                                                size_level0=r["size_level0"]),
                               tile_size=r["tile_size"]) for r in table]
    slides.close()
    return torch.from_numpy(np.stack(pixels))


def time_naive(tiles: Path, batch: int, threads: int) -> tuple[float, int]:
    """One process: OpenSlide read_region per tile (level 0 at 20x), RGB, then the model per batch."""
    import openslide
    import torch

    from mixture_ray.embed.embedder import embed_tensor, preprocess
    from mixture_ray.models.encoder import load_encoder

    torch.set_num_threads(threads)
    encoder = load_encoder("random")
    columns = ["source", "x", "y", "size_level0", "tile_size"]
    rows = pq.read_table(committed_files(tiles), columns=columns).to_pylist()
    handles: dict[str, Any] = {}
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        images = []
        for row in rows[i : i + batch]:
            if row["source"] not in handles:
                handles[row["source"]] = openslide.OpenSlide(row["source"])
            handle = handles[row["source"]]
            region = handle.read_region((row["x"], row["y"]), 0, (row["size_level0"], row["size_level0"]))
            region = region.convert("RGB").resize((row["tile_size"], row["tile_size"]))
            images.append(np.asarray(region))
        embed_tensor(encoder, preprocess(torch.from_numpy(np.stack(images)), 1.0))
    elapsed = time.perf_counter() - start
    for handle in handles.values():
        handle.close()
    return elapsed, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="small cohort, one repeat: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="full runs; the median is quoted (3)")
    args = parser.parse_args()
    tile, side, max_tiles, n_cases = (112, 2048, 100, 2) if args.quick else (224, 8192, 600, 4)
    batch = 64
    repeats = args.repeats or (1 if args.quick else 3)
    cpus = len(os.sched_getaffinity(0))
    start_local_ray(cpus)
    import ray
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        work = Path(tmp)
        manifest = make_cohort(work, side, n_cases)
        for i in range(repeats):
            tile_s, embed_s, n = time_pipeline(manifest, work / f"run_{i}", tile, max_tiles, batch, cpus)
            data = read_from_slides(work / f"run_{i}" / "tiles")
            bare_s, n_bare = time_bare(data, batch, cpus)
            naive_s, n_naive = time_naive(work / f"run_{i}" / "tiles", batch, cpus)
            assert n == n_bare == n_naive, (n, n_bare, n_naive)
            runs.append({"pipeline_tps": n / (tile_s + embed_s), "tile_s": tile_s, "embed_s": embed_s,
                         "model_alone_tps": n_bare / bare_s, "naive_tps": n_naive / naive_s, "tiles": n})
    ray.shutdown()
    med = {key: float(statistics.median(r[key] for r in runs)) for key in runs[0]}
    result: dict[str, Any] = {
        "name": "e2e_slides_to_embeddings_vs_model_alone",
        "unit": "tiles/s",
        "value": med["pipeline_tps"],
        "baseline_name": "the model alone on ready tensors (bench_embedding's bare loop), same cores",
        "baseline_value": med["model_alone_tps"],
        "ratio": med["pipeline_tps"] / med["model_alone_tps"],
        "target_ratio": 0.85,
        "vs_naive_loop": {"naive_tiles_per_s": med["naive_tps"],
                          "ratio": med["pipeline_tps"] / med["naive_tps"],
                          "target_ratio": 1.0,
                          "naive": "one process: OpenSlide read_region + RGB + resize, then the same model"},
        "seconds": {"tile_coordinates": med["tile_s"], "embed_from_slides": med["embed_s"]},
        "tiles": int(med["tiles"]),
        "repeats": runs,
        "hardware": hardware_info(),
        "params": {"tile_px": tile, "batch_size": batch, "arch": "resnet18", "model": "random", "actors": 1,
                   "torch_threads": cpus, "slide_px": side, "n_slides": n_cases, "quick": args.quick,
                   "repeats": repeats},
    }
    save_record(args.out, result)


if __name__ == "__main__":
    main()
