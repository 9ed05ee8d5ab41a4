"""Cox proportional hazards per finding (lifelines): univariable, multivariable, PH check, subgroups.

Coefficients are per unit frequency (1.0 = every tile of the case), comparable with the synthetic
cohort's planted log hazard ratios; hazard ratios are reported per ``hr_per`` (0.1 = 10 percentage
points): ``HR = exp(coef * hr_per)``. Intervals are Wald intervals ``coef ± z * se``.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError
from lifelines.statistics import proportional_hazard_test
from scipy import stats

from mixture_ray.stats.collinearity import Selection, select_findings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mixture_ray.stats.config import StatsConfig

_FAIL = (ConvergenceError, ValueError, ZeroDivisionError, np.linalg.LinAlgError)


def fit_cox(frame: pd.DataFrame, penalizer: float) -> tuple[CoxPHFitter, str]:
    """Fit ``time``/``event`` on the other columns; returns the fitter and any warning text."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cph = CoxPHFitter(penalizer=penalizer).fit(frame, duration_col="time", event_col="event")
    text = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught if "onverg" in str(w.message)}))
    return cph, text


class CoxAnalysis:
    """Cox proportional-hazards analyses of the finding frequencies.

    ``fit`` returns self; ``univariable``, ``multivariable``, ``selection``, ``ph_check`` and
    ``subgroups`` are tidy tables afterwards (one row per finding, or per level and finding).
    """

    def __init__(self, cfg: StatsConfig, findings: pd.DataFrame, magnification: Mapping[str, float],
                 clinical: pd.DataFrame) -> None:
        self.cfg, self.findings, self.magnification = cfg, findings, magnification
        self.clinical = clinical.loc[findings.index]
        self.notes: list[str] = []
        self.z = float(stats.norm.ppf(0.5 + cfg.ci_level / 2.0))

    def fit(self) -> CoxAnalysis:
        """Fit univariable, multivariable (after selection, with the PH check) and subgroup models."""
        cfg, base = self.cfg, self.clinical[["time", "event"]]
        self.univariable = pd.DataFrame(self._univariable(base, self.findings))
        self.selection: Selection = select_findings(
            self.findings, self.magnification, references=cfg.reference_findings,
            max_correlation=cfg.max_correlation, max_vif=cfg.max_vif)
        covariates = self.clinical[list(cfg.covariates)]
        frame = pd.concat([base, self.findings[self.selection.kept], covariates], axis=1)
        self.multivariable, self.ph_check = pd.DataFrame(), pd.DataFrame()
        events = int(base["event"].sum())
        if events < cfg.min_events:
            self.notes.append(f"multivariable Cox skipped: {events} events (< min_events {cfg.min_events})")
        elif frame.shape[1] > 2:
            try:
                cph, warn = fit_cox(frame, cfg.cox_penalizer)
            except _FAIL as exc:
                self.notes.append(f"multivariable Cox failed: {exc}")
            else:
                kind = {c: "covariate" if c in cfg.covariates else "finding" for c in frame.columns}
                self.multivariable = pd.DataFrame([self._row(cph, c, len(frame), events, warn)
                                                   | {"kind": kind[c]} for c in cph.params_.index])
                self.ph_check = self._ph(cph, frame)
        self.subgroups = pd.DataFrame(self._subgroups())
        return self

    def _row(self, cph: CoxPHFitter, column: str, n: int, events: int, note: str) -> dict[str, Any]:
        coef, se, per = float(cph.params_[column]), float(cph.standard_errors_[column]), self.cfg.hr_per
        low, high = coef - self.z * se, coef + self.z * se
        return {"feature": column, "n": n, "events": events, "coef": coef, "se": se, "coef_low": low,
                "coef_high": high, "hr_per": per, "hr": math.exp(coef * per), "hr_low": math.exp(low * per),
                "hr_high": math.exp(high * per), "p": float(cph.summary.loc[column, "p"]), "note": note}

    def _empty(self, column: str, n: int, events: int, note: str) -> dict[str, Any]:
        keys = ("coef", "se", "coef_low", "coef_high", "hr", "hr_low", "hr_high", "p")
        return {"feature": column, "n": n, "events": events, **dict.fromkeys(keys, math.nan),
                "hr_per": self.cfg.hr_per, "note": note}

    def _univariable(self, base: pd.DataFrame, findings: pd.DataFrame) -> list[dict[str, Any]]:
        rows = []
        n, events = len(base), int(base["event"].sum())
        for column in findings.columns:
            if events < self.cfg.min_events:
                rows.append(self._empty(column, n, events, f"skipped: < {self.cfg.min_events} events"))
            elif findings[column].std() == 0:
                rows.append(self._empty(column, n, events, "skipped: the same value for every case"))
            else:
                try:
                    cph, warn = fit_cox(pd.concat([base, findings[[column]]], axis=1), self.cfg.cox_penalizer)
                    rows.append(self._row(cph, column, n, events, warn))
                except _FAIL as exc:
                    rows.append(self._empty(column, n, events, f"failed: {exc}"))
        return rows

    def _ph(self, cph: CoxPHFitter, frame: pd.DataFrame) -> pd.DataFrame:
        """Schoenfeld-residual test per covariate (lifelines, rank time transform)."""
        try:
            result = proportional_hazard_test(cph, frame, time_transform="rank")
        except _FAIL as exc:
            self.notes.append(f"proportional-hazards test failed: {exc}")
            return pd.DataFrame()
        table: pd.DataFrame = result.summary.reset_index()
        table = table.rename(columns={table.columns[0]: "feature", "test_statistic": "statistic"})
        table = table[["feature", "statistic", "p"]].assign(model="multivariable", time_transform="rank")
        return table.assign(violated=table["p"] < 1 - self.cfg.ci_level)

    def _subgroups(self) -> list[dict[str, Any]]:
        column = self.cfg.subgroup_column
        if not column or "subgroup" not in self.clinical:
            return []
        rows: list[dict[str, Any]] = []
        for level in sorted(set(self.clinical["subgroup"]) - {""}):
            members = self.clinical.index[self.clinical["subgroup"] == level]
            base = self.clinical.loc[members, ["time", "event"]]
            events = int(base["event"].sum())
            if events < self.cfg.min_events:
                self.notes.append(f"subgroup {column}={level!r}: {events} events "
                                  f"(< min_events {self.cfg.min_events}); skipped")
                rows.append({"subgroup": column, "level": level,
                             **self._empty("", len(base), events, "skipped: too few events")})
                continue
            rows.extend({"subgroup": column, "level": level, **row}
                        for row in self._univariable(base, self.findings.loc[members]))
        return rows
