"""`mixture-ray tile` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

from mixture_ray.config import ActorPool, narrow, option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri
from mixture_ray.slides.factory import Backend

TileEncoding = Literal["jpeg", "png", "none"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredPixels:
    """How tile pixels are stored, and which pixels count as background."""

    background_threshold: int = option("a pixel is background when all of R, G, B exceed this", 220)
    encoding: TileEncoding = option("tile pixels stored as jpeg, png, or none (coordinates only)", "jpeg")
    jpeg_quality: int = option("JPEG quality when encoding=jpeg", 90)

    def pixels(self) -> StoredPixels:
        """Only these settings (what the per-batch functions take)."""
        return narrow(StoredPixels, self)

    def validate_pixels(self) -> None:
        """Check the threshold and the JPEG quality ranges."""
        if not 0 <= self.background_threshold <= 255:
            raise ConfigError(f"background_threshold: must be in 0..255 (got {self.background_threshold})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality: must be in 1..100 (got {self.jpeg_quality})")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImportImagesConfig(StoredPixels):
    """`mixture-ray import-images`: an ImageFolder tree (ROOT/[split/]<class>/<image>) as a tile store.

    Each image is one tile (square centre crop), labelled with its class folder; the store feeds
    ``finetune`` (labelled tiles) like an integrated tile set.
    """

    out_dir: Path = option("tile store folder (created; reruns skip images already committed)")
    images: Path = option("the ImageFolder tree: ROOT/<class>/<image> or ROOT/<split>/<class>/<image>")
    batch_size: int = option("images decoded per Ray Data batch", 32)
    images_per_commit: int = option("images written and committed together (resume granularity)", 4096)

    def validate(self) -> None:
        """Check the pixel settings and the positive sizes."""
        self.validate_pixels()
        require_positive(self, "batch_size", "images_per_commit")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TileConfig(StoredPixels):
    """`mixture-ray tile`: cut slides into a Parquet tile store."""

    #: Keys of earlier versions, and what replaces them.
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "from_images": "an image folder is imported by `mixture-ray import-images --images DIR`",
        "slides_per_commit": "each slide is now committed on its own once it is written; remove the key",
    }

    out_dir: Path | Uri = option(
        "tile store folder or object-store URI (created; reruns skip slides already committed)")
    manifest: Path = option("CSV/Parquet manifest (slide_id, case_id, path[, mpp]) or a folder of slides")
    magnifications: tuple[float, ...] = option(
        "objective magnifications to tile at; mpp = 10 / magnification", [2.5, 5.0, 20.0]
    )
    tile_size: int = option("tile edge in pixels at the target magnification", 280)
    stride: int = option("step between tiles in pixels at the target magnification; 0 = tile_size", 0)
    max_background: float = option("drop tiles whose background fraction exceeds this", 0.9)
    max_tiles_per_slide: int = option(
        "keep at most this many tiles per slide and magnification, drawn with the seed; 0 = all", 300
    )
    backend: Backend = option("slide reader: auto, openslide, tiffslide, cucim", "auto")
    pool: ActorPool = option("pixel-reading actors (each keeps its slides open): pool.workers, ...",
                             ActorPool(workers=2, batch_size=32))
    tile_cache_mb: int = option("decoded native-tile cache per open slide and level, in MiB", 64)
    seed: int = option("random seed for tile sampling", 0)
    qc: Path | None = option(
        "output folder of `mixture-ray qc`: slides that failed QC are skipped (listed in the report and "
        "_SUCCESS), and tiles more than half inside a flagged region (pen, fold, blur) are left out", None)

    def validate(self) -> None:
        """Check magnifications in (0, 100], positive sizes and in-range thresholds."""
        self.validate_pixels()
        if not self.magnifications:
            raise ConfigError("magnifications: give at least one magnification")
        if len(set(self.magnifications)) != len(self.magnifications):
            raise ConfigError(f"magnifications: each at most once (got {list(self.magnifications)})")
        for mag in self.magnifications:
            if not 0 < mag <= 100:
                raise ConfigError(f"magnifications: {mag} is not a magnification in (0, 100]")
        require_positive(self, "tile_size")
        require_positive(self, "tile_cache_mb")
        if self.stride < 0:
            raise ConfigError(f"stride: must be >= 0 (got {self.stride})")
        if not 0.0 <= self.max_background <= 1.0:
            raise ConfigError(f"max_background: must be in [0, 1] (got {self.max_background})")
        if self.max_tiles_per_slide < 0:
            raise ConfigError(f"max_tiles_per_slide: must be >= 0 (got {self.max_tiles_per_slide})")

    @property
    def step(self) -> int:
        """Stride in target pixels (tile_size when stride is 0)."""
        return self.stride or self.tile_size
