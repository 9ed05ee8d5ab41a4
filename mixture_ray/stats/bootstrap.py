"""Paired, stratified bootstrap comparison of two AUCs on the same cases (as pROC's ``roc.test``).

Each iteration resamples the positives and the negatives separately, with replacement and in their
own numbers (stratified), and takes both models' AUCs on the same resample (paired). The AUC of a
resample is a weighted mean of the pairwise comparison matrix ``psi[i, j]`` (1 when positive ``i``
is scored above negative ``j``, 1/2 on a tie): with ``c`` and ``d`` the times each positive and
negative was drawn, ``AUC = c @ psi @ d / (m n)``. The difference of two AUCs is the same form with
``psi_a - psi_b``, so every iteration is two matrix products (numpy, in chunks of iterations).

The interval is the percentile interval of the resampled differences; the two-sided p-value is
pROC's: ``z = observed difference / SD of the resampled differences``, ``p = 2 * (1 - Phi(|z|))``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from collections.abc import Sequence

_CHUNK = 512


@dataclasses.dataclass(frozen=True)
class BootstrapComparison:
    """Observed AUC difference (a - b), its percentile interval, z and two-sided p."""

    difference: float
    ci_low: float
    ci_high: float
    z: float
    p: float
    iterations: int
    seed: int


def _psi(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    above = np.greater.outer(pos, neg).astype(float)
    tied = np.equal.outer(pos, neg).astype(float)
    return np.asarray(above + 0.5 * tied, dtype=float)


def paired_bootstrap(
    y_true: Sequence[int] | np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    iterations: int = 5000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> BootstrapComparison:
    """Paired stratified bootstrap test of AUC(a) - AUC(b) for two models scored on the same cases.

    Args:
        y_true: 0/1 labels of the cases.
        scores_a: model a's scores of the cases (higher = more likely positive).
        scores_b: model b's scores of the same cases.
        iterations: bootstrap resamples.
        ci_level: level of the percentile interval of the difference.
        seed: seed of the resampling (the same seed gives the same result).

    Returns:
        The observed difference, its interval, z and the two-sided p (1.0 when no resample moves
        the difference and it is 0; 0.0 when none moves it and it is not 0).
    """
    y = np.asarray(y_true).astype(bool)
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != y.shape or b.shape != y.shape:
        raise ValueError(f"scores have shapes {a.shape} and {b.shape} but y_true has {y.shape}")
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError("AUC needs at least one positive and one negative case")
    if iterations < 2:
        raise ValueError(f"iterations: need at least 2 (got {iterations})")
    psi = _psi(a[y], a[~y]) - _psi(b[y], b[~y])
    observed = float(psi.mean())
    rng = np.random.default_rng(seed)
    diffs = np.empty(iterations)
    for start in range(0, iterations, _CHUNK):
        size = min(_CHUNK, iterations - start)
        c = rng.multinomial(m, np.full(m, 1.0 / m), size=size).astype(float)
        d = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)
        diffs[start:start + size] = np.einsum("ij,ij->i", c @ psi, d) / (m * n)
    tail = (1.0 - ci_level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    sd = float(diffs.std(ddof=1))
    if sd <= 1e-12:
        z, p = (0.0, 1.0) if abs(observed) < 1e-12 else (math.copysign(math.inf, observed), 0.0)
    else:
        z = observed / sd
        p = float(2.0 * stats.norm.sf(abs(z)))
    return BootstrapComparison(observed, float(low), float(high), z, p, iterations, seed)
