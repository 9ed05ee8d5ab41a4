"""Planted clinical outcomes: diagnosis from a noisy logistic score, survival from a Cox model.

Both use the *realised* tissue fractions of each case (read from the masks), so a perfect
finding classifier recovers exactly the planted relations.

- Diagnosis: ``score = intercept + sum_f w_f * frac_f``; ``noise ~ Logistic(0, 1)``; the case is
  UIP iff ``score + noise > 0`` (so ``P(UIP) = sigmoid(score)``).
- Survival: hazard ``h(t | x) = h0(t) * exp(sum_f beta_f * frac_f)`` with a Weibull baseline
  ``h0(t) = (k / lam) * (t / lam) ** (k - 1)``; censoring at ``min(Uniform(c0, c1), admin)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mixture_ray.synth import findings


@dataclasses.dataclass(frozen=True)
class OutcomeModel:
    """Planted diagnosis rule and Cox/Weibull survival model (coefficients per unit fraction)."""

    diag_weights: tuple[tuple[int, float], ...] = ((findings.DENSE_FIBROSIS, 10.0),
                                                   (findings.FIBROBLASTIC_FOCI, 15.0))
    diag_intercept: float = -4.5
    weibull_scale: float = 8.0  # years
    weibull_shape: float = 1.5
    censor_uniform: tuple[float, float] = (1.0, 12.0)  # years
    admin_censor: float = 10.0  # years

    @property
    def cox(self) -> dict[int, float]:
        """Planted log hazard ratio per unit tissue fraction, by finding code."""
        return {f.code: f.log_hr for f in findings.FINDINGS if f.code in findings.TISSUE_CODES}

    def score(self, fractions: dict[int, float]) -> float:
        """Diagnosis logit before noise."""
        return self.diag_intercept + sum(w * fractions[c] for c, w in self.diag_weights)

    def linear_predictor(self, fractions: dict[int, float]) -> float:
        """Cox linear predictor ``sum beta_f * frac_f``."""
        return sum(beta * fractions[c] for c, beta in self.cox.items())

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for truth.json."""
        name = {f.code: f.name for f in findings.FINDINGS}
        return {
            "diagnosis_rule": {
                "score": "intercept + sum(weight[f] * frac_f)",
                "weights": {name[c]: w for c, w in self.diag_weights},
                "intercept": self.diag_intercept,
                "noise": "Logistic(0, 1), one draw per case (listed under cases)",
                "label": "UIP (1) iff score + noise > 0, else non-UIP (0)",
            },
            "cox": {
                "coefficients": {name[c]: b for c, b in self.cox.items()},
                "unit": "log hazard ratio per unit tissue fraction (1.0 = all tissue of the "
                        "case); divide by 10 for per 10 percentage points",
                "covariates": "frac_<finding> columns of clinical.csv (realised from the masks)",
            },
            "baseline_hazard": {
                "family": "weibull",
                "scale_years": self.weibull_scale,
                "shape": self.weibull_shape,
                "hazard": "h0(t) = (shape / scale) * (t / scale) ** (shape - 1)",
                "cumulative": "H0(t) = (t / scale) ** shape",
            },
            "censoring": {
                "random": f"Uniform({self.censor_uniform[0]}, {self.censor_uniform[1]}) years",
                "administrative_years": self.admin_censor,
                "observed": "time = min(event_time, censor_time); event = event_time <= censor",
            },
        }


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Simulated outcome of one case."""

    label: int
    score: float
    noise: float
    linear_predictor: float
    event_time: float
    censor_time: float

    @property
    def diagnosis(self) -> str:
        """"UIP" or "non-UIP"."""
        return "UIP" if self.label else "non-UIP"

    @property
    def time(self) -> float:
        """Observed follow-up time in years (> 0)."""
        return max(min(self.event_time, self.censor_time), 1e-3)

    @property
    def event(self) -> int:
        """1 if the event was observed, 0 if censored."""
        return int(self.event_time <= self.censor_time)


def simulate(rng: np.random.Generator, fractions: dict[int, float],
             model: OutcomeModel) -> Outcome:
    """Draw diagnosis noise, event time and censoring time for one case."""
    score = model.score(fractions)
    u = rng.uniform(1e-12, 1.0 - 1e-12)
    noise = float(np.log(u / (1.0 - u)))
    lp = model.linear_predictor(fractions)
    # Inverse transform: S(t) = exp(-H0(t) e^lp) = U  =>  t = scale * (-log U / e^lp)^(1/k)
    v = rng.uniform(1e-12, 1.0)
    event_time = model.weibull_scale * (-np.log(v) / np.exp(lp)) ** (1.0 / model.weibull_shape)
    censor = min(rng.uniform(*model.censor_uniform), model.admin_censor)
    return Outcome(int(score + noise > 0), float(score), noise, float(lp), float(event_time),
                   float(censor))
