"""Oracle mapping from synthetic ground truth: a SIMULATION of the pathologist.

Each tile gets its majority ground-truth finding; each cluster gets the majority finding of its
tiles, or ``exclude`` when that finding's share is below the purity threshold (a mixed cluster).
For tests and the demo on the synthetic cohort only; real use has a pathologist's mapping.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixture_ray.store.schemas import EXCLUDE
from mixture_ray.synth.truth import read_mask, tile_ground_truth

if TYPE_CHECKING:
    from pathlib import Path

ORACLE_SOURCE = "oracle (simulated pathologist from synthetic ground truth)"


def finding_names(cohort: Path) -> dict[int, str]:
    """Finding code -> name from a synthetic cohort's findings.json."""
    return {int(f["code"]): str(f["name"]) for f in json.loads((cohort / "findings.json").read_text())}


def tile_truth(cohort: Path, tiles: pd.DataFrame, mask_downsample: int = 16) -> pd.Series:
    """Ground-truth finding name of each tile row (slide_id, x, y, size_level0)."""
    names = finding_names(cohort)
    out = np.empty(len(tiles), dtype=object)
    for slide_id, index in tiles.groupby("slide_id").indices.items():
        mask = read_mask(cohort / "masks" / f"{slide_id}.png")
        rows = tiles.iloc[index]
        for i, x, y, size in zip(index, rows.x, rows.y, rows.size_level0, strict=True):
            code, _ = tile_ground_truth(mask, mask_downsample, int(x), int(y), int(size))
            out[i] = names[code]
    return pd.Series(out, index=tiles.index, name="truth")


def oracle_clusters(assignments: pd.DataFrame, truth: pd.Series, purity: float) -> dict[int, str]:
    """Cluster id -> majority finding, or ``exclude`` below ``purity``."""
    frame = pd.DataFrame({"cluster": assignments["cluster"].to_numpy(), "truth": truth.to_numpy()})
    mapping: dict[int, str] = {}
    for cluster, rows in frame.groupby("cluster"):
        shares = rows["truth"].value_counts(normalize=True)
        mapping[int(str(cluster))] = str(shares.index[0]) if shares.iloc[0] >= purity else EXCLUDE
    return mapping
