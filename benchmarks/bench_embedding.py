"""Embedding throughput: the Ray Data actor pipeline vs a bare loop on in-memory tensors.

Writes a synthetic cohort, tiles it at 20x, then times (a) ``run_embedding`` end to end (read
Parquet, decode, ResNet18 on one actor, write, commit) and (b) a bare loop calling the same
model with the same preprocessing on tiles already decoded into memory, in the same process
and run. Also times a short MoCo pretraining run (samples/s per worker), on GPU if present.

    python benchmarks/bench_embedding.py --out bench_out/embedding.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
from mixture_ray.embed.config import EmbedConfig  # noqa: E402
from mixture_ray.pretrain.config import PretrainConfig  # noqa: E402
from mixture_ray.store.folder import committed_files  # noqa: E402
from mixture_ray.synth.config import SynthConfig  # noqa: E402
from mixture_ray.tile.config import TileConfig  # noqa: E402


def make_tiles(work: Path, side: int, tile: int, max_tiles: int, n_cases: int) -> Path:
    """A synthetic cohort tiled at 20x; returns the tile store."""
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.tile.stage import run as run_tiling

    cohort = write_cohort(build_config(
        SynthConfig, {"out_dir": str(work / "cohort"), "n_cases": n_cases, "min_slides_per_case": 1,
                      "max_slides_per_case": 1, "width": side, "height": side, "seed": 0}))
    out = work / "tiles"
    report = run_tiling(build_config(
        TileConfig, {"manifest": str(cohort.manifest), "out_dir": str(out), "tile_size": tile,
                     "magnifications": [20.0], "max_tiles_per_slide": max_tiles, "pool.workers": 2}))
    assert report.complete, report.failures
    return out


def time_pipeline(tiles: Path, out: Path, batch: int, threads: int) -> tuple[float, int]:
    from mixture_ray.embed.stage import run as run_embedding

    cfg = build_config(EmbedConfig, {"tiles": str(tiles), "out_dir": str(out), "model": "random",
                                     "pool.batch_size": batch, "pool.workers": 1, "torch_threads": threads})
    start = time.perf_counter()
    report = run_embedding(cfg)
    elapsed = time.perf_counter() - start
    assert report.complete, report.failures
    return elapsed, report.tiles_embedded


def time_bare(tiles: Path, batch: int, threads: int) -> tuple[float, int]:
    """Same model and preprocessing on uint8 tensors already decoded in memory."""
    import torch

    from mixture_ray.embed.embedder import embed_tensor, preprocess
    from mixture_ray.models.encoder import load_encoder
    from mixture_ray.store.codec import decode_tile

    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images = pq.read_table(committed_files(tiles), columns=["image"])["image"].to_pylist()
    data = torch.from_numpy(np.stack([decode_tile(b) for b in images]))
    encoder = load_encoder("random").to(device)
    if device.type == "cuda":
        data = data.pin_memory()
    embed_tensor(encoder, preprocess(data[:batch].to(device), 1.0))  # warm-up
    start = time.perf_counter()
    for i in range(0, len(data), batch):
        embed_tensor(encoder, preprocess(data[i : i + batch].to(device, non_blocking=True), 1.0))
    return time.perf_counter() - start, len(data)


def time_pretrain(tiles: Path, out: Path, steps: int, batch: int, threads: int) -> dict[str, Any]:
    from mixture_ray.pretrain.stage import run as run_pretrain

    cfg = build_config(PretrainConfig, {
        "tiles": str(tiles), "out_dir": str(out), "name": "bench", "batch_size": batch,
        "max_steps": steps, "train.checkpoint_every": steps, "train.log_every": max(1, steps // 2),
        "queue_size": 4096, "train.cpus_per_worker": float(threads)})
    report = run_pretrain(cfg)
    return {"samples_per_s_per_worker": report.samples_per_s_per_worker, "steps": steps,
            "batch_size": batch, "workers": 1, "loss": report.loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="smaller tiles and cohort, ~1 minute")
    args = parser.parse_args()
    # The full run embeds ~2000 tiles so the pipeline's fixed start-up (actor start, model load,
    # Ray Data planning: a few seconds) is amortised as it is on a real cohort.
    tile, side, max_tiles, n_cases = (112, 2048, 150, 2) if args.quick else (224, 4096, 500, 4)
    batch, steps = 64, (6 if args.quick else 10)
    cpus = len(os.sched_getaffinity(0))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="bench_embedding_") as tmp:
        work = Path(tmp)
        tiles = make_tiles(work, side, tile, max_tiles, n_cases)
        bare_s, n_bare = time_bare(tiles, batch, cpus)
        pipe_s, n_pipe = time_pipeline(tiles, work / "emb", batch, cpus)
        pretrain = time_pretrain(tiles, work / "runs", steps, 32, cpus)
    ray.shutdown()
    value, baseline = n_pipe / pipe_s, n_bare / bare_s
    result: dict[str, Any] = {
        "name": "embedding_pipeline_vs_bare_loop",
        "unit": "tiles/s",
        "value": value,
        "baseline_name": "bare loop: same ResNet18 and preprocessing on decoded in-memory tensors",
        "baseline_value": baseline,
        "ratio": value / baseline,
        "target_ratio": 0.9,
        "seconds": {"pipeline": pipe_s, "bare": bare_s},
        "tiles": n_pipe,
        "pretrain": pretrain,
        "pretrain_samples_per_s_per_worker": pretrain["samples_per_s_per_worker"],
        "hardware": hardware_info(),
        "params": {"tile_px": tile, "batch_size": batch, "arch": "resnet18", "model": "random",
                   "actors": 1, "torch_threads": cpus, "slide_px": side, "n_slides": n_cases,
                   "quick": args.quick,
                   "pretrain_tile_px": tile, "pretrain_crop_fraction": 0.8},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("name", "value", "baseline_value", "ratio")}, indent=2))


if __name__ == "__main__":
    main()
