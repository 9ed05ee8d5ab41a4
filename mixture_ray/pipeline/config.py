"""`mixture-ray demo` and `mixture-ray pipeline` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import option, require_positive
from mixture_ray.errors import ConfigError


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
    cohort_version: int = option(
        "synthetic cohort design of both cohorts (synth.version): 1 = fast, colour separates the findings; "
        "2 = sub-types, look-alikes and site batch effects", 1
    )
    ks: tuple[int, ...] = option(
        "k of the demo's clusterings: the largest is reviewed (oracle mapping); all are the baseline", [8, 12]
    )
    pretrain_steps: int = option("MoCo optimiser steps", 120)
    color_jitter: float = option("MoCo colour jitter strength (0 = off; the cohort v2 needs it)", 0.0)
    explain: bool = option("run the activation-clustering known-truth check (3 seeds)", True)
    seed: int = option("random seed of the cohort and the sampling", 0)

    def validate(self) -> None:
        """Check the cohort, slide, tile, worker and step counts are positive and the jitter is >= 0."""
        require_positive(self, "n_cases", "slide_px", "tile_size", "max_tiles_per_slide", "workers")
        require_positive(self, "analysis_cases", "analysis_slide_px", "pretrain_steps")
        if not self.ks or min(self.ks) < 2:
            raise ConfigError(f"ks: give numbers of clusters >= 2 (got {list(self.ks)})")
        if self.color_jitter < 0:
            raise ConfigError(f"color_jitter: must be >= 0 (got {self.color_jitter})")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """`mixture-ray pipeline`: run several stages in order from one YAML file (a cluster job).

    The file holds ``stages:``, a list of ``{stage: <verb>, config: {key: value, ...},
    config_file: <file.yaml>}`` entries (``config`` and ``config_file`` are both optional; inline keys
    win). Every stage's config is checked before the first stage runs.
    """

    file: Path = option("pipeline YAML file: `stages:` list of {stage, config, config_file}")
    from_stage: int = option("start at this stage number (1 = the first); earlier stages are only checked", 1)

    def validate(self) -> None:
        """Check from_stage names a stage of the pipeline file (reads the file)."""
        from mixture_ray.pipeline.job import load_pipeline

        if self.from_stage < 1:
            raise ConfigError(f"from_stage: must be >= 1 (got {self.from_stage})")
        steps = load_pipeline(self.file)
        if self.from_stage > len(steps):
            raise ConfigError(f"from_stage: {self.from_stage} is past the last stage of {self.file} "
                              f"({len(steps)} stages)")
