"""Scoring a stats run against the planted Cox model: coefficients relative to the reference finding."""

from __future__ import annotations

import pandas as pd
import pytest

from mixture_ray.synth.outcomes import OutcomeModel
from mixture_ray.synth.stats_truth import cox_recovery, planted_coefficients

pytestmark = pytest.mark.truth


def test_expected_values_are_relative_to_the_reference_and_nulls_are_flagged() -> None:
    planted = planted_coefficients(OutcomeModel().describe())
    assert planted["dense_fibrosis"] == 4.0 and planted["fibroblastic_foci"] == 6.0 and planted["fat"] == 0.0
    selection = pd.DataFrame({"feature": ["20x/dense_fibrosis", "20x/fat", "20x/lymphoid_aggregate",
                                          "20x/fibroblastic_foci", "20x/other"],
                              "kept": [False, True, True, True, True],
                              "step": ["reference", "", "", "", ""]})
    multivariable = pd.DataFrame({
        "feature": ["20x/fat", "20x/lymphoid_aggregate", "20x/fibroblastic_foci", "20x/other"],
        "coef": [-3.5, -4.2, 1.0, 0.0], "coef_low": [-5.0, -6.0, -1.0, -1.0],
        "coef_high": [-2.0, -4.1, 3.0, 1.0], "p": [0.001, 0.0001, 0.3, 0.9]})
    scored = cox_recovery(multivariable, selection, planted).set_index("finding")
    assert list(scored.index) == ["fat", "lymphoid_aggregate", "fibroblastic_foci"]  # 'other' is not planted
    assert scored.loc["fat", "expected"] == -4.0 and scored.loc["fat", "inside"]
    lymphoid = scored.loc["lymphoid_aggregate"]
    assert lymphoid["expected"] == -4.0 and not lymphoid["inside"]  # interval -6.0 .. -4.1
    assert scored.loc["fibroblastic_foci", "expected"] == 2.0 and scored.loc["fibroblastic_foci", "inside"]
    assert not scored["null"].any() and not scored["false_discovery"].any()  # relative to a risk reference

    selection["step"] = ["", "reference", "", "", ""]  # now a null reference
    multivariable = pd.DataFrame({"feature": ["20x/dense_fibrosis", "20x/lymphoid_aggregate"],
                                  "coef": [3.0, 1.5], "coef_low": [1.0, 0.2], "coef_high": [5.0, 2.8],
                                  "p": [0.002, 0.02]})
    scored = cox_recovery(multivariable, selection, planted).set_index("finding")
    assert scored.loc["dense_fibrosis", "expected"] == 4.0 and scored.loc["dense_fibrosis", "inside"]
    assert scored.loc["lymphoid_aggregate", "null"] and scored.loc["lymphoid_aggregate", "false_discovery"]
    assert not scored.loc["lymphoid_aggregate", "inside"]
