"""DeLong AUC variance and paired test, checked against independent computations.

- a straightforward O(m * n) implementation of DeLong's structural components (placement values)
  written here from the definition in DeLong, DeLong & Clarke-Pearson (1988);
- the two-sample jackknife of the AUC (Arvesen 1969), recomputed with scikit-learn's
  ``roc_auc_score`` leaving out one case at a time. For the Mann-Whitney AUC the jackknife variance
  equals DeLong's exactly: leaving out positive i moves the AUC by (AUC - V10_i) / (m - 1), so
  (m - 1) / m * sum of squared moves = sum (V10_i - AUC)^2 / (m (m - 1)) = S10 / m (same for the
  negatives), and the same holds for the covariance of two models;
- the published worked example of Hanley & McNeil (1982, Radiology 143:29, Table I): 109 CT
  images rated on a 5-point scale (58 normal, 51 abnormal), AUC 0.893 (ties count 1/2) and, with
  their approximate variance formula, SE 0.032.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from mixture_ray.stats.delong import delong, delong_test, placements


def placement_values(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """V10 (positives) and V01 (negatives) by comparing every positive with every negative."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def slow_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and DeLong covariance matrix from the O(m n) placement values."""
    v = [placement_values(y, s) for s in scores]
    v10, v01 = np.array([a for a, _ in v]), np.array([b for _, b in v])
    m, n = v10.shape[1], v01.shape[1]
    return v10.mean(axis=1), np.cov(v10) / m + np.cov(v01) / n


def jackknife_cov(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample jackknife covariance of the AUCs of scores a and b (leave one case out)."""
    total = 0.0
    for label in (1, 0):
        idx = np.flatnonzero(y == label)
        keep = [np.setdiff1d(np.arange(y.size), [i]) for i in idx]
        ta = np.array([roc_auc_score(y[k], a[k]) for k in keep])
        tb = np.array([roc_auc_score(y[k], b[k]) for k in keep])
        total += (len(idx) - 1) / len(idx) * np.sum((ta - ta.mean()) * (tb - tb.mean()))
    return total


@pytest.fixture
def tied_scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two correlated markers with many ties (integer-valued scores)."""
    rng = np.random.default_rng(3)
    y = (rng.random(70) < 0.4).astype(int)
    a = np.round(y * 1.2 + rng.normal(size=y.size))
    b = np.round(a + rng.normal(scale=1.5, size=y.size))
    return y, a, b


def test_auc_counts_ties_as_half(tied_scores: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, a, _ = tied_scores
    result = delong(y, a)
    u = stats.mannwhitneyu(a[y == 1], a[y == 0]).statistic
    assert result.aucs[0] == pytest.approx(u / (y.sum() * (y.size - y.sum())), abs=1e-12)
    assert result.aucs[0] == pytest.approx(roc_auc_score(y, a), abs=1e-12)


def test_placements_and_covariance_match_the_definition(
    tied_scores: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    y, a, b = tied_scores
    v10, v01 = placements(y, np.vstack([a, b]))
    for row, s in enumerate((a, b)):
        slow10, slow01 = placement_values(y, s)
        np.testing.assert_allclose(v10[row], slow10, atol=1e-12)
        np.testing.assert_allclose(v01[row], slow01, atol=1e-12)
    aucs, cov = slow_delong(y, [a, b])
    fast = delong(y, np.vstack([a, b]))
    np.testing.assert_allclose(fast.aucs, aucs, atol=1e-12)
    np.testing.assert_allclose(fast.covariance, cov, atol=1e-14)


def test_variance_and_paired_test_equal_the_jackknife(
    tied_scores: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    y, a, b = tied_scores
    fast = delong(y, np.vstack([a, b]))
    var_a, var_b, cov_ab = jackknife_cov(y, a, a), jackknife_cov(y, b, b), jackknife_cov(y, a, b)
    assert fast.se(0) ** 2 == pytest.approx(var_a, rel=1e-9)
    assert fast.covariance[0, 1] == pytest.approx(cov_ab, rel=1e-9)
    z_jack = (roc_auc_score(y, a) - roc_auc_score(y, b)) / math.sqrt(var_a + var_b - 2 * cov_ab)
    z, p = delong_test(y, a, b)
    assert z == pytest.approx(z_jack, rel=1e-9)
    assert p == pytest.approx(2 * stats.norm.sf(abs(z_jack)), rel=1e-9)


def test_hanley_mcneil_worked_example() -> None:
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]  # ratings 1 (definitely normal) .. 5
    y = np.r_[np.zeros(sum(normal)), np.ones(sum(abnormal))]
    s = np.r_[np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)]
    result = delong(y, s)
    auc = result.aucs[0]
    assert round(auc, 3) == 0.893
    q1, q2, na, nn = auc / (2 - auc), 2 * auc**2 / (1 + auc), 51, 58  # their exponential approximation
    se_hm = math.sqrt((auc * (1 - auc) + (na - 1) * (q1 - auc**2) + (nn - 1) * (q2 - auc**2)) / (na * nn))
    assert round(se_hm, 3) == 0.032
    _, slow_cov = slow_delong(y, [s])
    assert result.se() == pytest.approx(math.sqrt(float(slow_cov)), rel=1e-12)
    low, high = result.ci()
    assert low == pytest.approx(auc - 1.959963984540054 * result.se()) and high < 1.0


def test_ci_is_clipped_and_identical_models_do_not_differ() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = delong(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert perfect.aucs[0] == 1.0 and perfect.ci() == (1.0, 1.0)
    s = np.array([0.1, 0.6, 0.3, 0.4, 0.8, 0.9])
    assert delong_test(y, s, s) == (0.0, 1.0)
    near = delong(y, np.array([0.1, 0.2, 0.75, 0.7, 0.8, 0.9]))
    assert near.ci()[1] == 1.0 and near.ci()[0] < near.aucs[0] < 1.0
    with pytest.raises(ValueError, match="positive and one negative"):
        delong(np.zeros(4), np.arange(4.0))


def test_paired_test_detects_a_better_marker_and_holds_its_level() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(150), np.ones(150)].astype(int)
    strong, weak = y * 2.0 + rng.normal(size=300), y * 0.5 + rng.normal(size=300)
    assert delong_test(y, strong, weak)[1] < 1e-6
    # Under the null (two independent markers of equal strength) about 5 % of tests reject at 0.05.
    rejections = [
        delong_test(y, y + rng.normal(size=300), y + rng.normal(size=300))[1] < 0.05 for _ in range(400)
    ]
    assert 0.025 < np.mean(rejections) < 0.08
