"""`mixture-ray demo` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import option, require_positive


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """`mixture-ray demo`: the whole pipeline on a small synthetic cohort on the local machine."""

    out_dir: Path = option("folder for every stage's output (cohort/, tiles/, ...)", Path("demo_out"))
    n_cases: int = option("synthetic cases", 6)
    slide_px: int = option("synthetic slide edge in pixels at level 0 (20x, 0.5 um/px)", 3072)
    tile_size: int = option("tile edge in pixels", 128)
    magnifications: tuple[float, ...] = option("magnifications to tile at", [5.0, 20.0])
    max_tiles_per_slide: int = option("tiles kept per slide and magnification", 200)
    workers: int = option("pixel-reading actors", 2)
    analysis_cases: int = option(
        "cases of the second synthetic cohort that classify -> maps -> cases -> stats analyse", 40
    )
    analysis_slide_px: int = option("slide edge in pixels of the analysis cohort", 1024)
    seed: int = option("random seed of the cohort and the sampling", 0)

    def validate(self) -> None:
        require_positive(self, "n_cases", "slide_px", "tile_size", "max_tiles_per_slide", "workers")
        require_positive(self, "analysis_cases", "analysis_slide_px")
