"""Findings for the multivariable Cox model.

Drop constants, one reference per magnification, then collinear findings (pairwise |r| above a
threshold, then the highest VIF above a threshold).

Frequencies of one magnification sum to 1, so with all of them a Cox model is not identifiable:
one finding per magnification is left out as the reference category (the configured one, else the
most common) and the other coefficients are log hazard ratios *relative to the reference*.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixture_ray.store.schemas import magnification_label

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Selection:
    """Kept findings and one row per finding: kept, step and reason it was dropped, mean, final VIF."""

    kept: list[str]
    table: pd.DataFrame

    @property
    def summary(self) -> pd.DataFrame:
        """The per-finding selection table."""
        return self.table


def vif(frame: pd.DataFrame) -> pd.Series:
    """Variance inflation factors: the diagonal of the inverse correlation matrix."""
    if frame.shape[1] < 2:
        return pd.Series(1.0, index=frame.columns)
    corr = np.corrcoef(frame.to_numpy(dtype=float), rowvar=False)
    return pd.Series(np.diag(np.linalg.pinv(corr)), index=frame.columns)


def select_findings(
    frame: pd.DataFrame,
    magnification: Mapping[str, float],
    *,
    references: Sequence[str],
    max_correlation: float,
    max_vif: float,
) -> Selection:
    """The multivariable selection; ``references`` are columns to use as reference categories."""
    reasons: dict[str, tuple[str, str]] = {}
    kept = list(frame.columns)

    def drop(column: str, step: str, reason: str) -> None:
        kept.remove(column)
        reasons[column] = (step, reason)

    for column in [c for c in kept if frame[c].std() == 0]:
        drop(column, "constant", "the same value for every case")
    for mag in sorted({magnification[c] for c in frame.columns}):
        members = [c for c in kept if magnification[c] == mag]
        if len(members) < 2:
            continue
        chosen = [c for c in members if c in references]
        if chosen:
            drop(
                chosen[0],
                "reference",
                f"reference category of {magnification_label(mag)} (reference_findings); "
                f"frequencies of {magnification_label(mag)} sum to 1",
            )
        else:
            top = max(members, key=lambda c: frame[c].mean())
            drop(
                top,
                "reference",
                f"reference category of {magnification_label(mag)}: its most common finding "
                f"(mean {frame[top].mean():.3f}); frequencies of {magnification_label(mag)} sum to 1",
            )
    while len(kept) > 1:
        corr = frame[kept].corr().abs().to_numpy()
        np.fill_diagonal(corr, 0.0)
        i, j = np.unravel_index(int(np.argmax(corr)), corr.shape)
        if corr[i, j] <= max_correlation:
            break
        worse = i if corr[i].mean() > corr[j].mean() else j
        other = kept[j if worse == i else i]
        drop(kept[worse], "correlation", f"|r| = {corr[i, j]:.2f} with {other} (> {max_correlation})")
    while len(kept) > 1:
        factors = vif(frame[kept])
        worst = str(factors.idxmax())
        if factors[worst] <= max_vif:
            break
        drop(worst, "vif", f"VIF = {factors[worst]:.1f} (> {max_vif})")
    final = vif(frame[kept]) if kept else pd.Series(dtype=float)
    rows = [
        {
            "feature": c,
            "kept": c in kept,
            "step": reasons.get(c, ("", ""))[0],
            "reason": reasons.get(c, ("", ""))[1],
            "mean": float(frame[c].mean()),
            "vif": float(final[c]) if c in final.index else float("nan"),
        }
        for c in frame.columns
    ]
    return Selection(kept, pd.DataFrame(rows))
