"""Paired stratified bootstrap AUC comparison, checked against DeLong and against its own definition."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mixture_ray.stats.bootstrap import paired_bootstrap
from mixture_ray.stats.delong import delong, delong_test


@pytest.fixture
def tied_scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two correlated markers with many ties (as in test_delong)."""
    rng = np.random.default_rng(3)
    y = (rng.random(70) < 0.4).astype(int)
    a = np.round(y * 1.2 + rng.normal(size=y.size))
    b = np.round(a + rng.normal(scale=1.5, size=y.size))
    return y, a, b


def test_agrees_with_delong_in_direction_spread_and_p(
    tied_scores: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    y, a, b = tied_scores
    result = paired_bootstrap(y, a, b, seed=1)
    assert result.difference == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    z, p = delong_test(y, a, b)
    assert np.sign(result.z) == np.sign(z) == np.sign(result.difference)
    assert result.p == pytest.approx(p, abs=0.03)
    d = delong(y, np.vstack([a, b]))
    se_delong = math.sqrt(d.covariance[0, 0] + d.covariance[1, 1] - 2 * d.covariance[0, 1])
    se_boot = result.difference / result.z
    assert se_boot == pytest.approx(se_delong, rel=0.1)  # bootstrap SE of the difference ~ DeLong's
    assert result.ci_low < result.difference < result.ci_high
    assert result.ci_high - result.ci_low == pytest.approx(2 * 1.96 * se_delong, rel=0.15)


def test_equal_aucs_give_p_one() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    a = np.array([0.1, 0.5, 0.3, 0.7, 0.4, 0.8, 0.6, 0.9])
    same = paired_bootstrap(y, a, a, iterations=500)
    assert (same.difference, same.z, same.p, same.ci_low, same.ci_high) == (0.0, 0.0, 1.0, 0.0, 0.0)
    swapped = a.copy()
    swapped[[4, 5]] = swapped[[5, 4]]  # two positives trade scores: a different model, the same AUC
    other = paired_bootstrap(y, a, swapped, iterations=500)
    assert other.difference == 0.0 and other.p == pytest.approx(1.0)


def test_clearly_better_model_is_significant() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(100), np.ones(100)].astype(int)
    strong, weak = y * 2.0 + rng.normal(size=200), y * 0.5 + rng.normal(size=200)
    result = paired_bootstrap(y, strong, weak, seed=4)
    assert result.p < 0.05 and result.ci_low > 0 and result.z > 0
    reverse = paired_bootstrap(y, weak, strong, seed=4)
    assert reverse.p == pytest.approx(result.p) and reverse.difference == pytest.approx(-result.difference)


def test_deterministic_by_seed(tied_scores: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, a, b = tied_scores
    first, again = paired_bootstrap(y, a, b, seed=7), paired_bootstrap(y, a, b, seed=7)
    assert first == again
    assert paired_bootstrap(y, a, b, seed=8).ci_low != first.ci_low or \
        paired_bootstrap(y, a, b, seed=8).p != first.p


def test_5000_iterations_of_300_cases_take_well_under_a_second() -> None:
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(150), np.ones(150)].astype(int)
    a, b = y + rng.normal(size=300), y * 0.8 + rng.normal(size=300)
    paired_bootstrap(y, a, b, iterations=100)  # warm-up
    start = time.perf_counter()
    result = paired_bootstrap(y, a, b)
    assert time.perf_counter() - start < 1.0 and result.iterations == 5000


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="positive and one negative"):
        paired_bootstrap(np.zeros(4), np.arange(4.0), np.arange(4.0))
    with pytest.raises(ValueError, match="shapes"):
        paired_bootstrap(np.array([0, 1]), np.arange(3.0), np.arange(2.0))
    with pytest.raises(ValueError, match="iterations"):
        paired_bootstrap(np.array([0, 1]), np.arange(2.0), np.arange(2.0), iterations=1)
