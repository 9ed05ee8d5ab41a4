"""`mixture-ray demo`: run the pipeline end to end on a small synthetic cohort."""

from __future__ import annotations

import time

from mixture_ray.config import DemoConfig, SynthConfig, TileConfig, build_config
from mixture_ray.errors import StageIncompleteError


def run_demo(cfg: DemoConfig) -> int:
    """synth -> tile (later stages join as they land); returns 0 when every stage completed."""
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.tiling.pipeline import run_tiling

    cohort_dir, tiles_dir = cfg.out_dir / "cohort", cfg.out_dir / "tiles"
    start = time.perf_counter()
    synth = build_config(
        SynthConfig,
        {
            "out_dir": cohort_dir,
            "n_cases": cfg.n_cases,
            "width": cfg.slide_px,
            "height": cfg.slide_px,
            "seed": cfg.seed,
        },
    )
    if not (cohort_dir / "manifest.csv").exists():
        write_cohort(synth)
    print(f"[demo] synth: {cohort_dir} ({time.perf_counter() - start:.1f}s)")
    tile = build_config(
        TileConfig,
        {
            "manifest": cohort_dir / "manifest.csv",
            "out_dir": tiles_dir,
            "tile_size": cfg.tile_size,
            "magnifications": list(cfg.magnifications),
            "max_tiles_per_slide": cfg.max_tiles_per_slide,
            "workers": cfg.workers,
            "seed": cfg.seed,
        },
    )
    report = run_tiling(tile)
    print(
        f"[demo] tile: {report.tiles_written} tiles from {report.slides_committed} slides -> {tiles_dir} "
        f"({time.perf_counter() - start:.1f}s)"
    )
    if not report.complete:
        raise StageIncompleteError(f"tiling left {len(report.failures)} slides failed; see {tiles_dir}")
    print(f"[demo] done in {time.perf_counter() - start:.1f}s; outputs under {cfg.out_dir}")
    return 0
