"""Score a stats run on a synthetic cohort against its planted truth (truth.json).

The multivariable Cox model leaves one finding per magnification out as the reference category, so
each kept coefficient estimates ``planted[f] - planted[reference]``. A finding is *recovered* when
that value lies inside its confidence interval; a *null* finding (planted 0 relative to a null
reference) is a false discovery when its p-value is below ``alpha``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Mapping


def planted_coefficients(truth: Mapping[str, Any]) -> dict[str, float]:
    """Planted log hazard ratio per unit tissue fraction, by finding name, from a truth.json record."""
    return {str(k): float(v) for k, v in truth["cox"]["coefficients"].items()}


def cox_recovery(multivariable: pd.DataFrame, selection: pd.DataFrame, planted: Mapping[str, float], *,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Each kept finding of the multivariable Cox model against the planted model.

    Args:
        multivariable: stats' ``cox_multivariable`` table (``feature`` = ``<mag>x/<finding>``, ``coef``,
            ``coef_low``, ``coef_high``, ``p``).
        selection: stats' ``collinearity`` table (``feature``, ``kept``, ``step``): the ``reference``
            rows name each magnification's reference finding.
        planted: planted coefficient by finding name (:func:`planted_coefficients`).
        alpha: significance level of a false discovery.

    Returns:
        One row per kept finding known to the truth: ``feature``, ``finding``, ``reference``,
        ``expected`` (planted minus the reference's planted value), ``coef``, ``coef_low``,
        ``coef_high``, ``inside`` (expected within the interval), ``null`` (expected 0) and
        ``false_discovery`` (a null finding with p < alpha).
    """
    references = {str(f).split("/", 1)[0]: str(f).split("/", 1)[1]
                  for f in selection.loc[selection["step"] == "reference", "feature"]}
    rows = []
    record: dict[Any, Any]
    for record in multivariable.to_dict("records"):
        mag, _, finding = str(record["feature"]).partition("/")
        reference = references.get(mag, "")
        if finding not in planted or reference not in planted:
            continue
        expected = planted[finding] - planted[reference]
        low, high, p = float(record["coef_low"]), float(record["coef_high"]), float(record["p"])
        null = expected == 0.0
        rows.append({"feature": record["feature"], "finding": finding, "reference": reference,
                     "expected": expected, "coef": float(record["coef"]), "coef_low": low, "coef_high": high,
                     "p": p, "inside": low <= expected <= high, "null": null,
                     "false_discovery": null and p < alpha})
    return pd.DataFrame(rows, columns=["feature", "finding", "reference", "expected", "coef", "coef_low",
                                       "coef_high", "p", "inside", "null", "false_discovery"])
