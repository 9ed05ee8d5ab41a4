"""`mixture-ray synth` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import option, require_positive
from mixture_ray.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """`mixture-ray synth`: write a synthetic cohort with planted findings, diagnosis and survival."""

    out_dir: Path = option("folder that receives slides/, masks/, manifest.csv, clinical.csv")
    n_cases: int = option("number of cases", 8)
    min_slides_per_case: int = option("fewest slides per case", 1)
    max_slides_per_case: int = option("most slides per case", 3)
    width: int = option("slide width at level 0 in pixels", 4096)
    height: int = option("slide height at level 0 in pixels", 4096)
    mpp: float = option("microns per pixel at level 0 (written as MPP in the description)", 0.5)
    app_mag: float = option("objective power written as AppMag", 20.0)
    levels: int = option("pyramid levels (each 4x smaller than the one above)", 3)
    tile_px: int = option("TIFF tile edge in pixels", 256)
    jpeg_quality: int = option("JPEG quality of the TIFF tiles", 85)
    mask_downsample: int = option("ground-truth mask pixel = this many level-0 pixels", 16)
    seed: int = option("random seed; the same seed gives the same cohort", 0)
    version: int = option("cohort design: 1 = one texture per finding (fast tests); 2 = sub-types, "
                          "look-alike sub-types across findings, site stain/scanner batch effects", 1)
    sites: int = option("sites (v2: each with its own stain and scanner); cases are dealt to sites "
                        "at random, balanced", 3)

    def validate(self) -> None:
        """Check version, positive sizes, slides per case, TIFF tile, JPEG quality, smallest level."""
        if self.version not in (1, 2):
            raise ConfigError(f"version: must be 1 or 2 (got {self.version})")
        require_positive(self, "n_cases", "width", "height", "levels", "tile_px", "mask_downsample")
        require_positive(self, "sites")
        require_positive(self, "mpp", "app_mag", "min_slides_per_case", "max_slides_per_case")
        if self.min_slides_per_case > self.max_slides_per_case:
            raise ConfigError(
                "min_slides_per_case: must be <= max_slides_per_case "
                f"(got {self.min_slides_per_case} > {self.max_slides_per_case})"
            )
        if self.tile_px % 16:
            raise ConfigError(f"tile_px: must be a multiple of 16 for TIFF tiles (got {self.tile_px})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality: must be in 1..100 (got {self.jpeg_quality})")
        smallest = min(self.width, self.height) // 4 ** (self.levels - 1)
        if smallest < 16:
            raise ConfigError(
                f"levels: {self.levels} levels of a {self.width}x{self.height} slide leave a "
                f"level under 16 px; use fewer levels or a larger slide"
            )
