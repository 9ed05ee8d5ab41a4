"""Log-rank and Kaplan-Meier against textbook computations written here, and a published example.

Log-rank: at each distinct event time, observed minus expected events of group 1 and the
hypergeometric variance d (n1/n) (1 - n1/n) (n - d) / (n - 1); chi-square = (O - E)^2 / V.
Published example: Freireich et al. (1963) 6-MP vs placebo remission times (21 + 21 leukaemia
patients), log-rank chi-square 16.79 (Kleinbaum & Klein, Survival Analysis, ch. 2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixture_ray.stats.survival import SurvivalByGroup


def textbook_logrank(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> float:
    observed = expected = variance = 0.0
    for t in np.unique(time[event == 1]):
        at_risk = time >= t
        n, n1 = at_risk.sum(), (at_risk & (group == 1)).sum()
        d = ((time == t) & (event == 1)).sum()
        observed += ((time == t) & (event == 1) & (group == 1)).sum()
        expected += d * n1 / n
        if n > 1:
            variance += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    return (observed - expected) ** 2 / variance


def textbook_km(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    survival = 1.0
    for t in np.unique(time[(event == 1) & (time <= horizon)]):
        survival *= 1 - ((time == t) & (event == 1)).sum() / (time >= t).sum()
    return survival


def fit(time: np.ndarray, event: np.ndarray, group: np.ndarray, horizon: float) -> SurvivalByGroup:
    names = pd.Series(np.where(group == 1, "b", "a"))
    return SurvivalByGroup(horizon).fit(pd.Series(time), pd.Series(event), names)


def test_logrank_and_km_match_textbook_formulas() -> None:
    rng = np.random.default_rng(7)
    group = (rng.random(120) < 0.5).astype(int)
    time = np.round(rng.exponential(4.0 / np.exp(0.6 * group)), 1)  # rounding makes tied times
    event = (rng.random(120) < 0.75).astype(int)
    result = fit(time, event, group, horizon=3.0)
    assert result.logrank["statistic"].iloc[0] == pytest.approx(
        textbook_logrank(time, event, group), abs=1e-8
    )
    km = result.km_table.set_index("group")
    for name, label in (("a", 0), ("b", 1)):
        mask = group == label
        assert km.loc[name, "survival"] == pytest.approx(textbook_km(time[mask], event[mask], 3.0), abs=1e-12)
        assert km.loc[name, "ci_low"] < km.loc[name, "survival"] < km.loc[name, "ci_high"]
        assert km.loc[name, "n"] == mask.sum() and km.loc[name, "events"] == event[mask].sum()


def test_logrank_published_example_freireich() -> None:
    mp6 = [6, 6, 6, 7, 10, 13, 16, 22, 23, 6, 9, 10, 11, 17, 19, 20, 25, 32, 32, 34, 35]
    mp6_event = [1] * 9 + [0] * 12
    placebo = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
    time, event = np.array(mp6 + placebo, float), np.array(mp6_event + [1] * 21)
    group = np.r_[np.zeros(21), np.ones(21)].astype(int)
    statistic = fit(time, event, group, horizon=10.0).logrank["statistic"].iloc[0]
    assert round(textbook_logrank(time, event, group), 2) == 16.79
    assert round(statistic, 2) == 16.79


def test_horizon_beyond_follow_up_and_single_group() -> None:
    time, event = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 0, 1, 0])
    one = fit(time, event, np.zeros(4, int), horizon=10.0)
    assert np.isnan(one.km_table["survival"].iloc[0])  # censored at 4: S(10) unknown
    assert np.isnan(one.logrank["p"].iloc[0]) and "one group" in one.logrank["note"].iloc[0]
    ended = fit(time, np.array([1, 0, 1, 1]), np.zeros(4, int), horizon=10.0)
    assert ended.km_table["survival"].iloc[0] == 0.0  # the last case died: S stays 0
