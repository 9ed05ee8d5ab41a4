"""Score QC decisions against planted defects: per-type precision and recall, a confusion table.

The QC's reasons are ``"; "``-joined sentences (``mixture_ray.qc.decide``); a reason part that
starts with one of :data:`REASON_PREFIXES` names the defect detected. A slide may carry several.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from mixture_ray.synth.defects import CLEAN, DEFECT_TYPES

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: Reason prefix -> defect type (the most specific prefix first).
REASON_PREFIXES = {
    "not H&E: fluorescence": "fluorescence",
    "not H&E: IHC": "ihc",
    "faded stain": "faded",
    "blur": "blurred",
    "pen marks": "pen",
    "tissue folds": "fold",
}
#: Confusion-table column of a slide flagged or failed for none of the defect types (mpp, no tissue...),
#: or missing from the QC table.
OTHER = "other"


def detected_defects(decision: str, reason: str) -> frozenset[str]:
    """The defect types a QC row reports.

    Args:
        decision: ``pass``, ``flag`` or ``fail``.
        reason: the row's ``"; "``-joined reasons.

    Returns:
        The defect types named by the reason's parts; empty for a pass.
    """
    if decision == "pass" or not reason:
        return frozenset()
    found = set()
    for part in reason.split("; "):
        for prefix, kind in REASON_PREFIXES.items():
            if part.startswith(prefix):
                found.add(kind)
                break
    return frozenset(found)


@dataclasses.dataclass(frozen=True)
class DefectScores:
    """Per-type counts and rates, and the confusion table, of one planted set.

    Attributes:
        per_type: one row per defect type: ``tp``, ``fp``, ``fn``, ``tn``, ``precision``, ``recall``
            (NaN where undefined: nothing detected, or no slide of that type).
        confusion: rows = true defect (``none`` first), columns = detected labels (each type,
            ``none`` for nothing found, ``other`` for a flag or fail with no defect reason); a slide
            with several labels counts once in each.
    """

    per_type: pd.DataFrame
    confusion: pd.DataFrame

    def worst(self) -> float:
        """The lowest precision or recall of any type (NaN counts as 0)."""
        values = self.per_type[["precision", "recall"]].to_numpy().ravel()
        return float(min(0.0 if math.isnan(v) else v for v in values))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per-type rows and the confusion table (NaN written as None)."""
        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and math.isnan(value) else value

        per_type = {str(kind): {k: clean(v) for k, v in row.items()}
                    for kind, row in self.per_type.to_dict(orient="index").items()}
        confusion = {str(kind): {str(k): int(v) for k, v in row.items()}
                     for kind, row in self.confusion.to_dict(orient="index").items()}
        return {"per_type": per_type, "confusion": confusion}


def _rate(hits: int, total: int) -> float:
    return hits / total if total else math.nan


def score_defects(truth: Sequence[str], detected: Sequence[Iterable[str]], *,
                  decisions: Sequence[str] | None = None,
                  types: Sequence[str] = DEFECT_TYPES) -> DefectScores:
    """Per-type detection counts and the confusion table.

    Args:
        truth: each slide's planted defect (:data:`~mixture_ray.synth.defects.CLEAN` for none).
        detected: each slide's detected defect types (:func:`detected_defects`).
        decisions: each slide's decision; a non-pass with nothing detected counts as ``other``
            in the confusion table (else as ``none``).
        types: the defect types scored.

    Returns:
        The scores.
    """
    if len(truth) != len(detected) or (decisions is not None and len(decisions) != len(truth)):
        raise ValueError("truth, detected and decisions must have one entry per slide")
    found = [frozenset(d) for d in detected]
    rows = {}
    for kind in types:
        tp = sum(t == kind and kind in d for t, d in zip(truth, found, strict=True))
        fp = sum(t != kind and kind in d for t, d in zip(truth, found, strict=True))
        fn = sum(t == kind and kind not in d for t, d in zip(truth, found, strict=True))
        tn = len(truth) - tp - fp - fn
        rows[kind] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                      "precision": _rate(tp, tp + fp), "recall": _rate(tp, tp + fn)}
    per_type = pd.DataFrame.from_dict(rows, orient="index")
    labels = [*types, CLEAN, OTHER]
    known = [CLEAN, *types]
    row_names = known + sorted(set(truth) - set(known))
    counts = {name: dict.fromkeys(["slides", *labels], 0) for name in row_names}
    for i, (t, d) in enumerate(zip(truth, found, strict=True)):
        flagged = decisions is not None and decisions[i] != "pass"
        counts[t]["slides"] += 1
        for label in d or {OTHER if flagged else CLEAN}:
            if label in counts[t]:
                counts[t][label] += 1
    confusion = pd.DataFrame.from_dict(counts, orient="index")
    confusion.index.name, confusion.columns.name = "true", "detected"
    return DefectScores(per_type, confusion)


def score_qc(manifest: pd.DataFrame, qc_table: pd.DataFrame) -> tuple[DefectScores, pd.DataFrame]:
    """Score a QC table against a planted set's manifest.

    Args:
        manifest: the planted set's manifest (``slide_id``, ``defect``; from
            :func:`~mixture_ray.synth.defects.write_defect_set`).
        qc_table: the QC table (``slide_id``, ``decision``, ``reason`` and the metrics).

    Returns:
        The scores, and the manifest joined to the QC rows with a ``detected`` column (the
        comma-joined defect types found; a slide missing from the QC table detects nothing and
        counts as ``other``).
    """
    table = manifest.drop(columns=[c for c in ("case_id", "path", "mpp") if c in manifest.columns])
    table = table.merge(qc_table, on="slide_id", how="left")
    table["decision"] = table["decision"].fillna("").astype(str)
    table["reason"] = table["reason"].fillna("").astype(str)
    found = [detected_defects(d, r) for d, r in zip(table.decision, table.reason, strict=True)]
    table["detected"] = [",".join(sorted(f)) for f in found]
    scores = score_defects(table["defect"].astype(str).tolist(), found, decisions=table.decision.tolist())
    return scores, table


def format_scores(scores: DefectScores) -> str:
    """The confusion table and the per-type table as fixed-width text."""
    per_type = scores.per_type.copy()
    for column in ("precision", "recall"):
        per_type[column] = per_type[column].map(lambda v: "n/a" if math.isnan(v) else f"{v:.3f}")
    return ("confusion (rows: planted defect; columns: detected label; a slide may count in several)\n"
            f"{scores.confusion.to_string()}\n\nper defect type\n{per_type.to_string()}")
