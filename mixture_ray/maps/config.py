"""`mixture-ray maps` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.slides.factory import Backend


@dataclasses.dataclass(frozen=True)
class MapsConfig:
    """`mixture-ray maps`: one finding map per slide (Ray task per slide), PNG with a legend."""

    predictions: Path = option("prediction store written by `mixture-ray classify`")
    manifest: Path = option("the slides' manifest (CSV/Parquet: slide_id, case_id, path[, mpp]) or folder")
    out_dir: Path = option("folder for <slide_id>.png maps, agreement.csv and failures")
    thumbnail_px: int = option("longest edge of the map in pixels", 1024)
    alpha: float = option("opacity of the finding colours over the thumbnail", 0.45)
    truth_cohort: Path | None = option(
        "synthetic cohort folder (masks/, findings.json, truth.json): adds per-slide agreement "
        "of the predictions with the planted ground truth", None
    )
    backend: Backend = option("slide reader: auto, openslide, tiffslide, cucim", "auto")

    def validate(self) -> None:
        """Check thumbnail_px > 0 and alpha in [0, 1]."""
        require_positive(self, "thumbnail_px")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha: must be in [0, 1] (got {self.alpha})")
