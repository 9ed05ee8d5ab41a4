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


class _Pruning:
    """The columns still kept, and why each dropped one went."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.kept = list(frame.columns)
        self.reasons: dict[str, tuple[str, str]] = {}

    def drop(self, column: str, step: str, reason: str) -> None:
        self.kept.remove(column)
        self.reasons[column] = (step, reason)

    def drop_constant(self) -> None:
        for column in [c for c in self.kept if self.frame[c].std() == 0]:
            self.drop(column, "constant", "the same value for every case")

    def drop_references(self, magnification: Mapping[str, float], references: Sequence[str]) -> None:
        """One reference category per magnification: its frequencies sum to 1."""
        for mag in sorted({magnification[c] for c in self.frame.columns}):
            members = [c for c in self.kept if magnification[c] == mag]
            if len(members) < 2:
                continue
            label = magnification_label(mag)
            chosen = [c for c in members if c in references]
            if chosen:
                self.drop(chosen[0], "reference", f"reference category of {label} (reference_findings); "
                          f"frequencies of {label} sum to 1")
                continue
            top = max(members, key=lambda c: self.frame[c].mean())
            self.drop(top, "reference", f"reference category of {label}: its most common finding "
                      f"(mean {self.frame[top].mean():.3f}); frequencies of {label} sum to 1")

    def drop_correlated(self, max_correlation: float) -> None:
        """Of the most correlated pair above the limit, the one more correlated with the rest; repeat."""
        while len(self.kept) > 1:
            corr = self.frame[self.kept].corr().abs().to_numpy()
            np.fill_diagonal(corr, 0.0)
            i, j = np.unravel_index(int(np.argmax(corr)), corr.shape)
            if corr[i, j] <= max_correlation:
                return
            worse = i if corr[i].mean() > corr[j].mean() else j
            other = self.kept[j if worse == i else i]
            self.drop(self.kept[worse], "correlation",
                      f"|r| = {corr[i, j]:.2f} with {other} (> {max_correlation})")

    def drop_high_vif(self, max_vif: float) -> None:
        """The column of the largest variance inflation factor above the limit; repeat."""
        while len(self.kept) > 1:
            factors = vif(self.frame[self.kept])
            worst = str(factors.idxmax())
            if factors[worst] <= max_vif:
                return
            self.drop(worst, "vif", f"VIF = {factors[worst]:.1f} (> {max_vif})")

    def table(self) -> pd.DataFrame:
        """One row per column: kept, the step and reason that dropped it, mean, final VIF."""
        final = vif(self.frame[self.kept]) if self.kept else pd.Series(dtype=float)
        return pd.DataFrame([
            {"feature": c, "kept": c in self.kept, "step": self.reasons.get(c, ("", ""))[0],
             "reason": self.reasons.get(c, ("", ""))[1], "mean": float(self.frame[c].mean()),
             "vif": float(final[c]) if c in final.index else float("nan")}
            for c in self.frame.columns
        ])


def select_findings(
    frame: pd.DataFrame,
    magnification: Mapping[str, float],
    *,
    references: Sequence[str],
    max_correlation: float,
    max_vif: float,
) -> Selection:
    """The multivariable selection of findings, each dropped column with its reason.

    Drops constant columns, one reference category per magnification, then correlated columns,
    then high-VIF columns.

    Args:
        frame: case x finding frequencies.
        magnification: the magnification of each column.
        references: columns to use as reference categories (else the most common finding).
        max_correlation: largest |r| kept between two columns.
        max_vif: largest variance inflation factor kept.

    Returns:
        The kept columns and a table of every column with the reason it was dropped.
    """
    pruning = _Pruning(frame)
    pruning.drop_constant()
    pruning.drop_references(magnification, references)
    pruning.drop_correlated(max_correlation)
    pruning.drop_high_vif(max_vif)
    return Selection(pruning.kept, pruning.table())
