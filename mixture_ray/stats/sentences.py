"""One plain sentence reading each headline result (report.html and summary.json).

A result is called significant only when its p is below ``alpha`` (1 - the confidence level, 0.05 by
default); otherwise the sentence says "no significant difference" and claims no direction. Every
sentence is plain text: the report escapes it like any other data string.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mixture_ray.stats.analyses import Analyses
    from mixture_ray.stats.diagnosis import ModelResult

MODEL_NAMES = {"random_forest": "random forest", "svm": "SVM"}


def alpha_for(ci_level: float) -> float:
    """The significance level matching a confidence level (0.95 -> 0.05 exactly, no float residue)."""
    return round(1.0 - ci_level, 10)


def significant(p: float | None, alpha: float = 0.05) -> bool:
    """True only for a finite ``p`` strictly below ``alpha``."""
    return p is not None and math.isfinite(p) and p < alpha


def p_text(p: float | None, alpha: float = 0.05) -> str:
    """``p`` in 2 significant digits (more when rounding would cross ``alpha``); "n/a" when missing."""
    if p is None or not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    for digits in range(2, 8):
        text = f"{p:.{digits}g}"
        if (float(text) < alpha) == (p < alpha):
            return text
    return repr(p)


def model_label(r: ModelResult) -> str:
    """``"5x+20x random forest"``: the feature set and the model's plain name."""
    return f"{r.feature_set} {MODEL_NAMES.get(r.model, r.model)}"


def comparison_sentence(a: str, b: str, auc_a: float, auc_b: float, delong_p: float | None,
                        bootstrap_p: float | None, n_test: int, alpha: float = 0.05,
                        models: tuple[str, str] = ("", "")) -> str:
    """The paired comparison of two models' test AUCs (DeLong, and the bootstrap when run).

    Args:
        a: what the first model stands for (e.g. "integrated").
        b: what the second stands for (e.g. "baseline").
        auc_a: the first model's test AUC.
        auc_b: the second model's test AUC.
        delong_p: the paired DeLong p (None or NaN = not tested).
        bootstrap_p: the paired bootstrap p; None = no bootstrap run.
        n_test: the test cases both models were scored on.
        alpha: the significance level.
        models: the two models' names (e.g. "20x random forest"), shown by their AUCs.

    Returns:
        One sentence; "significantly higher" only when every test run has p < alpha.
    """
    tests = f"DeLong p {p_text(delong_p, alpha)}"
    if bootstrap_p is not None:
        tests += f", bootstrap p {p_text(bootstrap_p, alpha)}"
    ma, mb = (f"{m} " if m else "" for m in models)
    numbers = f"{ma}AUC {auc_a:.3f} vs {mb}AUC {auc_b:.3f}; {tests}; {n_test} test cases"
    if delong_p is None or not math.isfinite(delong_p):
        return f"{a} vs {b}: not tested ({numbers})."
    run = [delong_p] if bootstrap_p is None else [delong_p, bootstrap_p]
    votes = [significant(p, alpha) for p in run]
    if all(votes) and auc_a != auc_b:
        higher = a if auc_a > auc_b else b
        return f"{a} vs {b}: AUC significantly higher for {higher} on this cohort ({numbers})."
    if any(votes) and not all(votes):
        return (f"{a} vs {b}: DeLong and bootstrap disagree at {alpha:g}, so no significant difference is "
                f"established on this cohort ({numbers}).")
    return f"{a} vs {b}: no significant difference on this cohort ({numbers})."


def auc_sentence(label: str, auc: float, ci: tuple[float, float], ci_level: float, n_test: int,
                 n_positive: int, classes: tuple[str, str]) -> str:
    """The best model's test AUC with its interval and where the interval lies relative to chance.

    Args:
        label: the model (e.g. "integrated 5x random forest").
        auc: its test AUC.
        ci: the AUC interval (low, high).
        ci_level: the interval's level.
        n_test: test cases.
        n_positive: positive test cases.
        classes: (positive, negative) diagnosis names.

    Returns:
        One sentence.
    """
    low, high = ci
    if low > 0.5:
        chance = "the interval lies above 0.5 (better than chance)"
    elif high < 0.5:
        chance = "the interval lies below 0.5 (worse than chance)"
    else:
        chance = "the interval includes 0.5 (not distinguishable from chance)"
    positive, negative = classes
    return (f"Best model, {label} (highest test AUC, so optimistic): AUC {auc:.3f} ({ci_level:.0%} CI "
            f"{low:.3f}-{high:.3f}) for {positive} vs {negative} on {n_test} test cases ({n_positive} "
            f"{positive}); {chance}.")


def logrank_sentence(p: float | None, groups: Sequence[tuple[str, int, int]], alpha: float = 0.05) -> str:
    """The Kaplan-Meier split by predicted class: log-rank p and each group's size and events.

    Args:
        p: the log-rank p (None or NaN = not tested).
        groups: (name, cases, events) per group.
        alpha: the significance level.

    Returns:
        One sentence.
    """
    sizes = " and ".join(f"{name} ({n} cases, {events} events)" for name, n, events in groups)
    if len(groups) < 2 or p is None or not math.isfinite(p):
        return f"Survival by predicted class: not tested, one group only: {sizes}."
    if significant(p, alpha):
        return (f"Survival by predicted class: differs significantly between {sizes} "
                f"(log-rank p {p_text(p, alpha)}).")
    return (f"Survival by predicted class: no significant difference between {sizes} "
            f"(log-rank p {p_text(p, alpha)}).")


def cox_sentence(multivariable: pd.DataFrame, hr_per: float, ci_level: float, alpha: float = 0.05) -> str:
    """Which findings of the multivariable Cox model are significant, with HR and interval, or none.

    Args:
        multivariable: the multivariable Cox table (feature, kind, hr, hr_low, hr_high, p); empty =
            not fitted.
        hr_per: the frequency change the hazard ratios are per.
        ci_level: the interval's level.
        alpha: the significance level.

    Returns:
        One sentence (covariates are left out: it reads the findings).
    """
    if multivariable.empty:
        return "Multivariable Cox: not fitted (see the notes)."
    rows = multivariable[multivariable["kind"] == "finding"] if "kind" in multivariable else multivariable
    hits = [r for r in rows.to_dict("records") if significant(float(r["p"]), alpha)]
    if not hits:
        return (f"Multivariable Cox: no finding is significant at {alpha:g} "
                f"({len(rows)} findings in the model).")
    parts = [f"{r['feature']} HR {r['hr']:.2f} ({ci_level:.0%} CI {r['hr_low']:.2f}-{r['hr_high']:.2f}, "
             f"p {p_text(float(r['p']), alpha)})" for r in hits]
    rest = len(rows) - len(hits)
    tail = f"; the other {rest} finding{'s are' if rest != 1 else ' is'} not" if rest else ""
    return (f"Multivariable Cox (HR per {hr_per:g} frequency): significant at {alpha:g}: "
            f"{'; '.join(parts)}{tail}.")


def headline_sentences(result: Analyses) -> dict[str, str]:
    """The four sentences of a run: integrated vs baseline, best model, survival split, Cox.

    Args:
        result: the run's analyses.

    Returns:
        ``integrated_vs_baseline``, ``best_model``, ``survival``, ``cox`` -> sentence.
    """
    cfg, best, clinical = result.cfg, result.best, result.clinical
    alpha = alpha_for(cfg.ci_level)
    row, base = result.baseline_comparison, result.best_baseline
    if row is None or base is None:
        versus = "integrated vs baseline: not compared (no baseline tables given)."
    else:
        boot = float(row["bootstrap_p"]) if row["bootstrap_iterations"] else None
        versus = comparison_sentence("integrated", "baseline", best.auc, base.auc, float(row["p"]), boot,
                                     len(best.y_test), alpha, (model_label(best), model_label(base)))
    table = result.survival.km_table
    groups = [(str(r["group"]), int(r["n"]), int(r["events"])) for r in table.to_dict("records")]
    p = result.survival.logrank["p"].iloc[0]
    return {
        "integrated_vs_baseline": versus,
        "best_model": auc_sentence(f"integrated {model_label(best)}", best.auc, best.ci, cfg.ci_level,
                                   len(best.y_test), int(best.y_test.sum()),
                                   (clinical.positive, clinical.negative)),
        "survival": logrank_sentence(None if pd.isna(p) else float(p), groups, alpha),
        "cox": cox_sentence(result.cox.multivariable, cfg.hr_per, cfg.ci_level, alpha),
    }
