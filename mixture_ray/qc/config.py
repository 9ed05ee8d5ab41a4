"""`mixture-ray qc` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import GpuRequest, check_gpus, option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.slides.factory import Backend


@dataclasses.dataclass(frozen=True)
class QcConfig:
    """`mixture-ray qc`: per-slide quality control (Ray task per slide): pass, flag or fail."""

    manifest: Path = option("the slides' manifest (CSV/Parquet: slide_id, case_id, path[, mpp]) or folder")
    out_dir: Path = option("folder for qc.parquet, qc.csv, index.html, thumbnails/, masks/ and failures")
    backend: Backend = option("slide reader: auto, openslide, tiffslide, cucim", "auto")
    gpus: GpuRequest = option(
        "GPUs each per-slide task requests: a number (requested even when no GPU node is up yet), or "
        "auto = 1 with backend=cucim on a cluster that has a GPU, else 0", "auto")
    to_srgb: bool = option("convert pixels from the slide's ICC profile to sRGB before measuring", False)
    thumbnail_px: int = option("longest edge of the low-resolution image the masks are made on", 1024)
    tile_px: int = option("edge of each sampled tissue tile (blur, stain) in pixels", 256)
    sample_mpp: float = option("resolution of sampled tiles in um/px (0.5 = 20x; level 0 if unknown)", 0.5)
    tiles_per_slide: int = option("seeded tissue tiles sampled per slide", 16)
    seed: int = option("random seed of the tile sample", 0)
    background: int = option("background pixel: every channel above this (0-255)", 220)
    min_tissue_fraction: float = option("fail a slide whose tissue covers less of it than this", 0.005)
    faded_intensity: float = option(
        "flag faded stain: Macenko stain strength (1 = the reference's) below this", 0.6)
    blur_variance: float = option(
        "a tile is blurry when its variance of the Laplacian (grey levels squared; of paler tiles "
        "normalised to blur_contrast) is below this", 40.0)
    blur_contrast: float = option(
        "mean darkness (255 - grey level) of a normally stained tile: a paler tile's Laplacian "
        "variance is scaled by (blur_contrast / its darkness)^2, as if normally stained, so faded "
        "stain does not read as blur (synthetic H&E tiles: 40-110, real: ~110; faded: 25-50); "
        "0 = off", 60.0)
    blur_fraction: float = option("flag blur when more than this share of sampled tiles is blurry", 0.25)
    pen_fraction: float = option("flag pen marks covering more than this share of the slide's tissue", 0.01)
    fold_fraction: float = option("flag folds covering more than this share of the tissue", 0.05)
    dark_background: float = option("fail as not bright-field below this background brightness (0-255)", 80.0)
    dab_share: float = option("fail as IHC when this share of tissue is DAB-brown (and more than pink)", 0.3)
    mpp_range: tuple[float, ...] = option("plausible level-0 mpp (low, high) in um/px", [0.1, 4.0])
    power_tolerance: float = option(
        "flag when mpp and 10/objective power differ by more than this ratio", 1.5)
    magnifications: tuple[float, ...] = option(
        "magnifications later stages request: flagged when a slide would need upsampling", [2.5, 5.0, 20.0])
    mask_margin_px: int = option("flagged regions are grown by this many mask pixels", 2)
    page_thumbnail_px: int = option("longest edge of the thumbnails embedded in index.html", 256)

    def validate(self) -> None:
        """Positive sizes and thresholds, fractions in [0, 1], a (low, high) mpp range."""
        check_gpus("gpus", self.gpus)
        if self.blur_contrast < 0:
            raise ConfigError(f"blur_contrast: must be >= 0 (got {self.blur_contrast})")
        require_positive(self, "thumbnail_px", "tile_px", "sample_mpp", "tiles_per_slide",
                         "page_thumbnail_px", "power_tolerance")
        for name in ("min_tissue_fraction", "blur_fraction", "pen_fraction", "fold_fraction", "dab_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}: must be in [0, 1] (got {getattr(self, name)})")
        if len(self.mpp_range) != 2 or not 0 < self.mpp_range[0] < self.mpp_range[1]:
            raise ConfigError(
                f"mpp_range: must be [low, high] with 0 < low < high (got {list(self.mpp_range)})")
        if any(m <= 0 for m in self.magnifications):
            raise ConfigError(f"magnifications: must be > 0 (got {list(self.magnifications)})")
        if not 0 <= self.background <= 255:
            raise ConfigError(f"background: must be in 0..255 (got {self.background})")
