"""DeLong's AUC variance and paired test, by the fast midrank algorithm of Sun & Xu (2014).

For ``m`` positives and ``n`` negatives the AUC is the Mann-Whitney statistic (a tie counts 1/2).
DeLong et al. (1988) write it as the mean of *placement values* (structural components): for a
positive ``i``, ``V10_i`` = share of negatives scored below it; for a negative ``j``, ``V01_j`` =
share of positives scored above it. The covariance of the AUCs of models scored on the same cases is
``S10 / m + S01 / n`` with ``S10``, ``S01`` the sample covariance matrices of the placement values.
Sun & Xu compute the placements from midranks in ``O((m + n) log(m + n))``:
``V10_i = (rank of i among all - rank of i among positives) / n``.

The confidence interval is the plain normal one on the AUC scale, ``AUC ± z * SE``, clipped to
[0, 1] (as pROC's ``ci.auc(method = "delong")``); the paired test is two-sided,
``z = (AUC_a - AUC_b) / sqrt(var_a + var_b - 2 cov_ab)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class DeLongAUC:
    """AUCs of one or more models scored on the same cases, with their DeLong covariance."""

    aucs: np.ndarray
    covariance: np.ndarray
    n_positive: int
    n_negative: int

    def se(self, index: int = 0) -> float:
        """Standard error of model ``index``'s AUC."""
        return math.sqrt(max(float(self.covariance[index, index]), 0.0))

    def ci(self, index: int = 0, level: float = 0.95) -> tuple[float, float]:
        """Normal confidence interval on the AUC scale, clipped to [0, 1]."""
        z = stats.norm.ppf(0.5 + level / 2.0)
        auc, half = float(self.aucs[index]), z * self.se(index)
        return max(auc - half, 0.0), min(auc + half, 1.0)

    def compare(self, a: int = 0, b: int = 1) -> tuple[float, float]:
        """Paired DeLong test of model ``a`` vs ``b``: (z, two-sided p).

        Equal AUCs with no variance of the difference give z = 0, p = 1.
        """
        diff = float(self.aucs[a] - self.aucs[b])
        var = float(self.covariance[a, a] + self.covariance[b, b] - 2.0 * self.covariance[a, b])
        if var <= 1e-15:
            return (0.0, 1.0) if abs(diff) < 1e-12 else (math.copysign(math.inf, diff), 0.0)
        z = diff / math.sqrt(var)
        return z, float(2.0 * stats.norm.sf(abs(z)))


def placements(y_true: Sequence[int] | np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Placement values (V10 of the positives, V01 of the negatives) of each model (rows of ``scores``)."""
    y = np.asarray(y_true).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if s.shape[1] != y.size:
        raise ValueError(f"scores have {s.shape[1]} cases but y_true has {y.size}")
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError("AUC needs at least one positive and one negative case")
    pos, neg = s[:, y], s[:, ~y]
    rank_all = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # midranks
    rank_pos = stats.rankdata(pos, axis=1)
    rank_neg = stats.rankdata(neg, axis=1)
    v10 = (rank_all[:, :m] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m
    return v10, v01


def delong(y_true: Sequence[int] | np.ndarray, scores: np.ndarray | Sequence[np.ndarray]) -> DeLongAUC:
    """AUCs and DeLong covariance for one model (1-D scores) or several (one row per model)."""
    v10, v01 = placements(y_true, np.asarray(scores, dtype=float))
    m, n = v10.shape[1], v01.shape[1]
    aucs = v10.mean(axis=1)
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(aucs), len(aucs)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(aucs), len(aucs)))
    return DeLongAUC(aucs=aucs, covariance=s10 / m + s01 / n, n_positive=m, n_negative=n)


def delong_test(
    y_true: Sequence[int] | np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray
) -> tuple[float, float]:
    """Two-sided paired DeLong test of two models scored on the same cases: (z, p)."""
    return delong(y_true, np.vstack([scores_a, scores_b])).compare(0, 1)
