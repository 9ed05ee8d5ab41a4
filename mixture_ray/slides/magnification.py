"""Resolve a requested magnification or mpp to a pyramid level plus a resize factor."""

from __future__ import annotations

import dataclasses
import math

from mixture_ray.errors import SlideError
from mixture_ray.slides.reader import SlideReader, best_level

#: 20x is taken as 0.5 um/px, so mpp = 10 / magnification.
MPP_AT_1X = 10.0


def mpp_for_magnification(magnification: float) -> float:
    """Microns per pixel of an objective magnification (20x -> 0.5)."""
    return MPP_AT_1X / magnification


@dataclasses.dataclass(frozen=True)
class LevelPlan:
    """How to read pixels at a target resolution: which level and how much to resize."""

    level: int
    level_downsample: float
    target_downsample: float  # target pixel size / level-0 pixel size

    @property
    def scale(self) -> float:
        """Factor applied to level pixels to reach target pixels (<= 1 means shrink)."""
        return self.level_downsample / self.target_downsample

    def level_size(self, target_px: int) -> int:
        """Pixels to read at ``level`` for ``target_px`` target pixels."""
        return max(1, round(target_px / self.scale))

    def level0_size(self, target_px: int) -> int:
        """Level-0 pixels covered by ``target_px`` target pixels."""
        return max(1, round(target_px * self.target_downsample))


def base_mpp(reader: SlideReader, manifest_mpp: float | None = None) -> float:
    """Level-0 mpp: the manifest's value, else the slide's, else from objective power."""
    if manifest_mpp is not None and not math.isnan(manifest_mpp):
        if manifest_mpp <= 0:
            raise SlideError(str(reader.path), f"manifest mpp must be > 0 (got {manifest_mpp})")
        return float(manifest_mpp)
    if reader.mpp:
        return reader.mpp
    if reader.objective_power:
        return mpp_for_magnification(reader.objective_power)
    raise SlideError(
        str(reader.path),
        "the slide records neither mpp nor objective power; add an 'mpp' column "
        "(microns per pixel at level 0) for this slide to the manifest",
    )


def plan_level(
    reader: SlideReader,
    *,
    magnification: float | None = None,
    mpp: float | None = None,
    manifest_mpp: float | None = None,
    max_upsample: float = 1.05,
) -> LevelPlan:
    """Best level and resize factor to read at ``magnification`` (or ``mpp``).

    Reading coarser than needed is never chosen; a target finer than level 0 beyond
    ``max_upsample`` is refused because it would invent detail.
    """
    if (magnification is None) == (mpp is None):
        raise ValueError("give exactly one of magnification or mpp")
    target_mpp = mpp if mpp is not None else mpp_for_magnification(float(magnification))  # type: ignore[arg-type]
    slide_mpp = base_mpp(reader, manifest_mpp)
    target_downsample = target_mpp / slide_mpp
    if target_downsample < 1 / max_upsample:
        what = f"{magnification}x" if magnification is not None else f"{mpp} um/px"
        raise SlideError(
            str(reader.path),
            f"{what} needs {target_mpp:.3f} um/px but the slide was scanned at {slide_mpp:.3f} "
            "um/px; choose a lower magnification",
        )
    level = best_level(reader.level_downsamples, target_downsample)
    return LevelPlan(level, reader.level_downsamples[level], target_downsample)
