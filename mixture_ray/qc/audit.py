"""Resolution audit: is the slide's mpp there, plausible, square, consistent with its objective?"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mixture_ray.slides.magnification import mpp_for_magnification

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

FIX = "give the manifest's mpp column (microns per pixel at level 0) for this slide"


def audit_resolution(*, slide_mpp: float | None, slide_mpp_y: float | None, manifest_mpp: float | None,
                     objective_power: float | None, magnifications: Sequence[float],
                     mpp_range: tuple[float, float], power_tolerance: float,
                     max_upsample: float = 1.05) -> tuple[float | None, list[str]]:
    """The mpp QC will use and every problem with the slide's resolution, each with its fix.

    Args:
        slide_mpp: level-0 mpp (x) the file records, if any.
        slide_mpp_y: level-0 mpp along y, if the file records it.
        manifest_mpp: the manifest's mpp, if any (it wins over the file).
        objective_power: the objective power the file records, if any.
        magnifications: the magnifications later stages will request.
        mpp_range: plausible level-0 mpp (low, high).
        power_tolerance: largest accepted ratio between the mpp and ``10 / objective_power``.
        max_upsample: a request finer than level 0 by more than this factor needs upsampling.

    Returns:
        The effective mpp (manifest, else file, else from objective power; None when none) and
        the problems found.
    """
    problems: list[str] = []
    given = manifest_mpp if manifest_mpp is not None and not math.isnan(manifest_mpp) else None
    mpp = given if given is not None else slide_mpp
    if mpp is None and objective_power:
        mpp = mpp_for_magnification(objective_power)
        problems.append(
            f"mpp missing: guessed {mpp:.3f} um/px from objective power {objective_power:g}x; {FIX}")
    elif mpp is None:
        problems.append(f"mpp missing: the slide records neither mpp nor objective power; {FIX}")
        return None, problems
    low, high = mpp_range
    if not low <= mpp <= high:
        problems.append(f"mpp implausible: {mpp:g} um/px is outside [{low:g}, {high:g}]; {FIX}")
    if given is None and slide_mpp and slide_mpp_y and abs(slide_mpp_y / slide_mpp - 1) > 0.01:
        problems.append(f"non-square pixels: mpp x {slide_mpp:g} vs y {slide_mpp_y:g} um/px; {FIX}")
    if objective_power and (given is not None or slide_mpp is not None):
        expected = mpp_for_magnification(objective_power)
        if max(mpp / expected, expected / mpp) > power_tolerance:
            problems.append(f"mpp {mpp:g} um/px is inconsistent with objective power {objective_power:g}x "
                            f"(expected about {expected:g}); {FIX}")
    too_fine = [m for m in magnifications if mpp_for_magnification(m) * max_upsample < mpp]
    if too_fine:
        listed = ", ".join(f"{m:g}x" for m in sorted(too_fine))
        problems.append(f"magnification {listed} would need upsampling (slide scanned at {mpp:g} um/px); "
                        f"drop it from magnifications or, if the mpp is wrong, {FIX}")
    return mpp, problems


def tiff_pixel_size(path: Path) -> tuple[float, float] | None:
    """Level-0 (x, y) microns per pixel from a TIFF's resolution tags; None when not recorded."""
    import tifffile

    per_unit = {2: 25400.0, 3: 10000.0}  # inch, centimetre
    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags  # type: ignore[union-attr]
            unit, x, y = (tags.get(n) for n in ("ResolutionUnit", "XResolution", "YResolution"))
            if unit is None or x is None or y is None or int(unit.value) not in per_unit:
                return None
            scale = per_unit[int(unit.value)]
            (xn, xd), (yn, yd) = x.value, y.value
            if not (xn and yn and xd and yd):
                return None
            return scale * xd / xn, scale * yd / yn
    except (OSError, tifffile.TiffFileError, IndexError, TypeError, ValueError):
        return None
