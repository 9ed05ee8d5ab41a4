"""The QC table (one row per slide) and its public reader for the stages that use QC.

``read_qc(qc_dir)`` gives a :class:`QcTable`: which slides failed (tile skips them) and, for a
slide, the flagged-region mask in level-0 geometry (tile drops tiles that fall in it).
"""

from __future__ import annotations

import dataclasses
import math
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from mixture_ray.errors import StageIncompleteError

TABLE, CSV = "qc.parquet", "qc.csv"

QC_SCHEMA = pa.schema([
    ("slide_id", pa.string()), ("case_id", pa.string()), ("path", pa.string()),
    ("decision", pa.string()), ("reason", pa.string()),
    ("backend", pa.string()), ("width", pa.int64()), ("height", pa.int64()), ("levels", pa.int64()),
    ("mpp", pa.float64()), ("slide_mpp", pa.float64()), ("manifest_mpp", pa.float64()),
    ("objective_power", pa.float64()), ("has_icc_profile", pa.bool_()), ("icc_description", pa.string()),
    ("tissue_fraction", pa.float64()), ("tissue_area_mm2", pa.float64()),
    ("modality", pa.string()), ("background_value", pa.float64()),
    ("bright_signal_fraction", pa.float64()), ("dab_fraction", pa.float64()),
    ("eosin_fraction", pa.float64()),
    ("stain_h_max", pa.float64()), ("stain_e_max", pa.float64()), ("stain_intensity", pa.float64()),
    ("faded_score", pa.float64()),
    ("tiles_sampled", pa.int64()), ("laplacian_var_median", pa.float64()), ("blurry_fraction", pa.float64()),
    ("pen_fraction", pa.float64()), ("fold_fraction", pa.float64()), ("flagged_fraction", pa.float64()),
    ("thumbnail", pa.string()), ("mask", pa.string()), ("mask_downsample", pa.float64()),
])
"""Every column of ``qc.parquet`` / ``qc.csv``; fractions are of the tissue unless named otherwise."""


def slide_file(folder: Path, slide_id: str, suffix: str) -> Path:
    """A per-slide file; the id is percent-encoded so any id is one safe file name."""
    return folder / f"{urllib.parse.quote(slide_id, safe='')}{suffix}"


def to_table(rows: list[dict[str, object]]) -> pa.Table:
    """Rows (dicts with the schema's keys; missing ones null) as a table of :data:`QC_SCHEMA`."""
    columns = {f.name: [r.get(f.name) for r in rows] for f in QC_SCHEMA}
    return pa.Table.from_pydict(columns, schema=QC_SCHEMA)


@dataclasses.dataclass(frozen=True)
class QcTable:
    """The QC decisions of a cohort and the way to its flagged-region masks.

    Attributes:
        root: the QC output folder.
        rows: one row per slide, the columns of :data:`QC_SCHEMA`.
    """

    root: Path
    rows: pd.DataFrame

    def decision(self, slide_id: str) -> str | None:
        """``pass``, ``flag`` or ``fail`` for a slide; None when QC did not see it."""
        match = self.rows.loc[self.rows.slide_id == slide_id, "decision"]
        return None if match.empty else str(match.iloc[0])

    def failed_slides(self) -> set[str]:
        """Slides to skip: failed QC (not H&E, no tissue) or could not be read."""
        return set(self.rows.loc[self.rows.decision == "fail", "slide_id"].astype(str))

    def flagged_slides(self) -> set[str]:
        """Slides usable with care (faded, blurry, pen, folds, resolution problems)."""
        return set(self.rows.loc[self.rows.decision == "flag", "slide_id"].astype(str))

    def exclusion_mask(self, slide_id: str) -> tuple[np.ndarray, float] | None:
        """The flagged regions of a slide (pen, folds, blurry tiles) to leave out of tiling.

        Args:
            slide_id: the slide.

        Returns:
            ``(mask, downsample)``: a boolean (h, w) mask where mask[r, c] covers level-0 pixels
            ``[c * downsample, (c + 1) * downsample)`` x ``[r * downsample, ...)``; None when the
            slide has no flagged region (or QC did not see it).
        """
        match = self.rows.loc[self.rows.slide_id == slide_id]
        if match.empty:
            return None
        row = match.iloc[0]
        name, downsample = row["mask"], row["mask_downsample"]
        if not isinstance(name, str) or not name or downsample is None or math.isnan(float(downsample)):
            return None
        mask = np.asarray(Image.open(self.root / name).convert("L")) > 127
        return (mask, float(downsample)) if mask.any() else None


def read_qc(qc_dir: Path | str) -> QcTable:
    """The QC table written by `mixture-ray qc` (complete or not: unreadable slides are rows too).

    Args:
        qc_dir: the QC stage's ``out_dir``.

    Returns:
        The table, with its folder for the masks.

    Raises:
        StageIncompleteError: the folder holds no QC table (QC not run, or still running).
    """
    root = Path(qc_dir)
    if not (root / TABLE).exists():
        raise StageIncompleteError(f"{root}: no {TABLE}; run `mixture-ray qc` first")
    return QcTable(root, pd.read_parquet(root / TABLE))
