"""The plain sentences reading each headline result: significance only when p < alpha, exactly at the
boundary too, no direction claimed from a non-significant test, and HTML-escaped in the report."""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd
import pytest

from mixture_ray.stats.report import Section, write_report
from mixture_ray.stats.sentences import (
    alpha_for,
    auc_sentence,
    comparison_sentence,
    cox_sentence,
    logrank_sentence,
    p_text,
    significant,
)

EVIL = "20x/<script>alert(1)</script>"


def versus(delong: float | None, boot: float | None, auc_a: float = 0.90, auc_b: float = 0.80) -> str:
    return comparison_sentence("integrated", "baseline", auc_a, auc_b, delong, boot, 12,
                               alpha_for(0.95), ("20x random forest", "k=8 SVM"))


def test_alpha_and_p_text_respect_the_boundary() -> None:
    assert alpha_for(0.95) == 0.05 and alpha_for(0.99) == 0.01
    assert not significant(0.05) and significant(0.0499999) and not significant(math.nan)
    assert not significant(None)
    assert p_text(0.48) == "0.48" and p_text(0.05) == "0.05" and p_text(0.0004) == "< 0.001"
    assert float(p_text(0.049999)) < 0.05  # never rounded up to read as 0.05
    assert float(p_text(0.0500001)) >= 0.05 and p_text(math.nan) == "n/a" and p_text(None) == "n/a"


def test_comparison_sentence() -> None:
    text = versus(0.48, 0.51)
    assert text.startswith("integrated vs baseline: no significant difference on this cohort (")
    assert "DeLong p 0.48, bootstrap p 0.51; 12 test cases" in text and "higher" not in text
    assert "20x random forest AUC 0.900 vs k=8 SVM AUC 0.800" in text
    assert "no significant difference" in versus(0.05, 0.05)  # p exactly at 0.05: not significant
    assert "no significant difference" in versus(0.05, None)
    assert "AUC significantly higher for integrated on this cohort" in versus(0.0499, 0.01)
    assert "significantly higher for integrated" in versus(0.01, None)  # no bootstrap run
    assert "significantly higher for baseline" in versus(0.01, 0.02, auc_a=0.7, auc_b=0.9)
    split = versus(0.03, 0.07)
    assert "disagree" in split and "no significant difference is established" in split
    assert "higher" not in split
    assert "not tested" in versus(math.nan, None)


def test_auc_sentence_places_the_interval_against_chance() -> None:
    text = auc_sentence("integrated 20x random forest", 0.91, (0.82, 0.99), 0.95, 36, 18, ("UIP", "non-UIP"))
    assert text == ("Best model, integrated 20x random forest (highest test AUC, so optimistic): AUC 0.910 "
                    "(95% CI 0.820-0.990) for UIP vs non-UIP on 36 test cases (18 UIP); the interval lies "
                    "above 0.5 (better than chance).")
    assert "includes 0.5" in auc_sentence("m", 0.6, (0.45, 0.75), 0.95, 20, 10, ("UIP", "non-UIP"))
    assert "includes 0.5" in auc_sentence("m", 0.6, (0.5, 0.75), 0.95, 20, 10, ("UIP", "non-UIP"))


def test_logrank_sentence() -> None:
    groups = [("predicted UIP", 40, 25), ("predicted non-UIP", 60, 10)]
    sizes = "predicted UIP (40 cases, 25 events) and predicted non-UIP (60 cases, 10 events)"
    assert logrank_sentence(0.003, groups) == (
        f"Survival by predicted class: differs significantly between {sizes} (log-rank p 0.003).")
    assert logrank_sentence(0.05, groups) == (
        f"Survival by predicted class: no significant difference between {sizes} (log-rank p 0.05).")
    assert "not tested" in logrank_sentence(math.nan, groups[:1])


def cox_table(ps: list[float]) -> pd.DataFrame:
    rows = [{"feature": f"20x/f{i}", "kind": "finding", "hr": 1.5 + i, "hr_low": 1.1, "hr_high": 2.0 + i,
             "p": p} for i, p in enumerate(ps)]
    rows.append({"feature": "age", "kind": "covariate", "hr": 1.01, "hr_low": 1.0, "hr_high": 1.02,
                 "p": 1e-6})
    return pd.DataFrame(rows)


def test_cox_sentence() -> None:
    text = cox_sentence(cox_table([0.01, 0.05, 0.2]), 0.1, 0.95)
    assert text == ("Multivariable Cox (HR per 0.1 frequency): significant at 0.05: 20x/f0 HR 1.50 "
                    "(95% CI 1.10-2.00, p 0.01); the other 2 findings are not.")
    none = cox_sentence(cox_table([0.05, 0.3]), 0.1, 0.95)
    assert none == "Multivariable Cox: no finding is significant at 0.05 (2 findings in the model)."
    assert "age" not in text + none  # a covariate is not a finding
    assert "not fitted" in cox_sentence(pd.DataFrame(), 0.1, 0.95)
    assert "significant at 0.01" in cox_sentence(cox_table([0.001]), 0.1, 0.99, alpha_for(0.99))


def test_sentences_are_escaped_in_the_report(tmp_path: Path) -> None:
    table = cox_table([0.01]).assign(feature=[EVIL, "age"])
    sentence = cox_sentence(table, 0.1, 0.95)
    assert EVIL in sentence
    page = write_report(tmp_path / "report.html", title="t", inputs={}, notes=[],
                        sections=[Section("Headline results", lead=[sentence])]).read_text()
    assert EVIL not in page and "<script" not in page and html.escape(sentence) in page


@pytest.mark.parametrize("p", [0.05, 0.0500000001])
def test_boundary_p_never_reads_significant(p: float) -> None:
    assert "significantly" not in versus(p, p) + logrank_sentence(p, [("a", 1, 1), ("b", 1, 1)])
    assert "no finding is significant" in cox_sentence(cox_table([p]), 0.1, 0.95)
