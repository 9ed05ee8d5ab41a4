"""From measurements to a decision: ``fail`` (not usable), ``flag`` (usable with care) or ``pass``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mixture_ray.qc.config import QcConfig

PASS, FLAG, FAIL = "pass", "flag", "fail"
DECISIONS = (PASS, FLAG, FAIL)

NOT_HE = {
    "fluorescence": "not H&E: fluorescence-like (dark background with bright signal)",
    "dark background": "not H&E: dark background (not a bright-field slide)",
    "ihc": "not H&E: IHC-like (brown DAB dominates the tissue)",
}


def decide(m: dict[str, Any], cfg: QcConfig, resolution_problems: list[str]) -> tuple[str, list[str]]:
    """The decision and its reasons (fail reasons first), from one slide's measurements.

    Args:
        m: the slide's metrics (keys of :data:`mixture_ray.store.qc_table.QC_SCHEMA`).
        cfg: the thresholds.
        resolution_problems: the mpp / magnification audit's findings.

    Returns:
        (decision, reasons); reasons is empty for a pass.
    """
    fails, flags = [], []
    if m["modality"] != "he":
        fails.append(NOT_HE[m["modality"]])
    if m["tissue_fraction"] < cfg.min_tissue_fraction:
        fails.append(f"no tissue: {m['tissue_fraction']:.2%} of the slide (< {cfg.min_tissue_fraction:.2%})")
    if not fails:
        if m["stain_intensity"] < cfg.faded_intensity:
            flags.append(f"faded stain: strength {m['stain_intensity']:.2f} of the reference "
                         f"(< {cfg.faded_intensity:g}); re-stain or re-scan, or normalise the stain")
        if m["tiles_sampled"] and m["blurry_fraction"] > cfg.blur_fraction:
            flags.append(f"blur: {m['blurry_fraction']:.0%} of {m['tiles_sampled']} sampled tiles have a "
                         f"(contrast-normalised) Laplacian variance < {cfg.blur_variance:g}; re-scan "
                         "out-of-focus areas (blurry tiles are in the exclusion mask)")
        if m["pen_fraction"] > cfg.pen_fraction:
            flags.append(f"pen marks on {m['pen_fraction']:.1%} of the tissue (in the exclusion mask)")
        if m["fold_fraction"] > cfg.fold_fraction:
            flags.append(f"tissue folds on {m['fold_fraction']:.1%} of the tissue (in the exclusion mask)")
    flags += resolution_problems
    if fails:
        return FAIL, fails + flags
    return (FLAG, flags) if flags else (PASS, [])


def finite(value: float | None) -> float:
    """``value`` as a float, NaN for None."""
    return math.nan if value is None else float(value)
