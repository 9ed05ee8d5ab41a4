"""Agreement of one slide's predicted findings with the planted ground truth (synthetic cohorts)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mixture_ray.synth.oracle import tile_truth

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import pandas as pd


def mask_downsample(cohort: Path) -> int:
    """Level-0 pixels per mask pixel, as the cohort was written (truth.json)."""
    return int(json.loads((cohort / "truth.json").read_text())["config"]["mask_downsample"])


def slide_agreement(cohort: Path, tiles: pd.DataFrame, classes: Sequence[str]) -> dict[str, Any]:
    """Tile-level agreement of ``tiles`` (slide_id, x, y, size_level0, finding) with the masks.

    ``accuracy`` is over tiles whose true finding is one of ``classes``; tiles whose truth the
    classifier cannot name (e.g. background) are counted in ``tiles_unknown_truth``.
    """
    truth = tile_truth(cohort, tiles, mask_downsample(cohort))
    known = truth.isin(set(classes))
    correct = (truth[known] == tiles.loc[known, "finding"]).sum()
    n_known = int(known.sum())
    return {
        "tiles": len(tiles),
        "tiles_known_truth": n_known,
        "tiles_unknown_truth": len(tiles) - n_known,
        "accuracy": float(correct / n_known) if n_known else None,
    }
