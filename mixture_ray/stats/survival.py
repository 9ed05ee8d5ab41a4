"""Kaplan-Meier curves by group, survival at a horizon with its CI, and the log-rank test (lifelines).

Survival intervals are lifelines' defaults (Greenwood variance on the log(-log) scale); survival
at the horizon is the KM step value at the last time <= horizon, NaN when the horizon lies beyond
the group's longest follow-up (unless the curve already reached 0 there).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test


class SurvivalByGroup:
    """``fit`` returns self; ``km_table`` (per group) and ``logrank`` (one row) afterwards."""

    def __init__(self, horizon: float, ci_level: float = 0.95) -> None:
        self.horizon, self.ci_level = horizon, ci_level
        self.fitters: dict[str, KaplanMeierFitter] = {}

    def fit(self, time: pd.Series, event: pd.Series, group: pd.Series) -> SurvivalByGroup:
        """Fit a Kaplan-Meier curve per group and the log-rank test across groups."""
        rows = []
        for name in sorted(set(group)):
            mask = (group == name).to_numpy()
            kmf = KaplanMeierFitter(alpha=1 - self.ci_level, label=str(name))
            kmf.fit(time[mask], event[mask])
            self.fitters[str(name)] = kmf
            rows.append(self._at_horizon(kmf, str(name), time[mask], event[mask]))
        self.km_table = pd.DataFrame(rows)
        self.logrank = pd.DataFrame([self._logrank(time, event, group)])
        return self

    def _at_horizon(
        self, kmf: KaplanMeierFitter, name: str, time: pd.Series, event: pd.Series
    ) -> dict[str, Any]:
        nan = float("nan")
        survival, low, high = nan, nan, nan
        last = float(kmf.survival_function_.iloc[-1, 0])
        if self.horizon <= float(time.max()) or last == 0.0:  # beyond the last time only when S hit 0
            survival = float(kmf.survival_function_.loc[: self.horizon].iloc[-1, 0])
            ci = kmf.confidence_interval_survival_function_.loc[: self.horizon].iloc[-1]
            low, high = float(ci.iloc[0]), float(ci.iloc[1])
        median = float(kmf.median_survival_time_)
        return {
            "group": name,
            "n": len(time),
            "events": int(event.sum()),
            "horizon": self.horizon,
            "at_risk_at_horizon": int((time >= self.horizon).sum()),
            "survival": survival,
            "ci_low": low,
            "ci_high": high,
            "median_survival": median if math.isfinite(median) else nan,
        }

    @staticmethod
    def _logrank(time: pd.Series, event: pd.Series, group: pd.Series) -> dict[str, Any]:
        names = sorted(set(group))
        row: dict[str, Any] = {"test": "log-rank", "groups": " vs ".join(map(str, names))}
        if len(names) < 2:
            return row | {
                "statistic": float("nan"),
                "df": 0,
                "p": float("nan"),
                "note": "one group only: every case got the same predicted class",
            }
        if len(names) == 2:
            a, b = (group == names[0]).to_numpy(), (group == names[1]).to_numpy()
            result = logrank_test(time[a], time[b], event[a], event[b])
        else:
            result = multivariate_logrank_test(time, group, event)
        return row | {
            "statistic": float(result.test_statistic),
            "df": len(names) - 1,
            "p": float(result.p_value),
            "note": "",
        }
