"""The stats stage's tables (CSV + JSON, one row object per row) and summary.json."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixture_ray.stats.sentences import headline_sentences
from mixture_ray.store.folder import write_json_atomic

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mixture_ray.stats.analyses import Analyses

TABLES = ("diagnosis_auc", "delong_comparisons", "baseline_auc", "feature_importance", "km_survival",
          "logrank", "cox_univariable", "cox_multivariable", "collinearity", "ph_check", "subgroups", "cases",
          "roc_curves", "finding_correlation")


def clean(value: Any) -> Any:
    """JSON-ready scalar: numpy types to Python, NaN/inf to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts."""
    return [{str(k): clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def build_tables(result: Analyses) -> dict[str, pd.DataFrame]:
    """Every output table by name (the names in ``TABLES``)."""
    split_of = dict.fromkeys(result.split.train, "train") | dict.fromkeys(result.split.test, "test")
    clin = result.clinical.frame.loc[result.cases]
    names = {1: result.clinical.positive, 0: result.clinical.negative}
    cases = pd.DataFrame({"case_id": result.cases, "split": [split_of[c] for c in result.cases],
                          "label": clin["label"].to_numpy(), "diagnosis": clin["label"].map(names).to_numpy(),
                          "predicted_out_of_fold": result.predicted.to_numpy(),
                          "predicted_diagnosis": result.predicted.map(names).to_numpy(),
                          "score_out_of_fold": result.km.score.to_numpy(),
                          "rf_score_out_of_fold": result.km.rf_score.to_numpy(),
                          "time": clin["time"].to_numpy(), "event": clin["event"].to_numpy()})
    cox = result.cox
    tables = {
        "diagnosis_auc": result.diagnosis.summary,
        "delong_comparisons": pd.DataFrame(result.comparisons),
        "baseline_auc": result.baseline.summary if result.baseline else pd.DataFrame(),
        "feature_importance": result.diagnosis.importance(),
        "km_survival": result.survival.km_table,
        "logrank": result.survival.logrank,
        "cox_univariable": cox.univariable,
        "cox_multivariable": cox.multivariable,
        "collinearity": cox.selection.table,
        "ph_check": cox.ph_check,
        "subgroups": cox.subgroups,
        "cases": cases,
        "roc_curves": roc_curves(result),
        "finding_correlation": finding_correlation(result.frequencies.frame),
    }
    assert tuple(tables) == TABLES
    return tables


def roc_curves(result: Analyses) -> pd.DataFrame:
    """Test-split ROC points of every integrated model: feature_set, model, fpr, tpr (curve order)."""
    frames = [pd.DataFrame({"feature_set": r.feature_set, "model": r.model, "fpr": r.fpr, "tpr": r.tpr})
              for r in result.diagnosis.results]
    return pd.concat(frames, ignore_index=True)


def finding_correlation(frequencies: pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation of every pair of finding columns (all magnifications) over every case.

    Args:
        frequencies: the per-case frequency table (case id index, ``<mag>x/<finding>`` columns).

    Returns:
        ``feature`` then one column per finding: ``frequencies.corr()`` (NaN for a constant column).
    """
    matrix = frequencies.corr(method="pearson")
    return matrix.rename_axis("feature").reset_index()


def write_tables(out_dir: Path, tables: Mapping[str, pd.DataFrame]) -> None:
    """``<name>.csv`` and ``<name>.json`` for every table (written to a temporary name, then renamed)."""
    for name, frame in tables.items():
        tmp = out_dir / f".{name}.csv.tmp"
        frame.to_csv(tmp, index=False)
        tmp.replace(out_dir / f"{name}.csv")
        write_json_atomic(out_dir / f"{name}.json", records(frame))


def _auc_row(frame: pd.DataFrame, index: int) -> dict[str, Any]:
    return {str(k): clean(v) for k, v in frame.loc[index].to_dict().items()}


def _cox(frame: pd.DataFrame) -> dict[str, Any]:
    keys = ("coef", "coef_low", "coef_high", "hr", "hr_low", "hr_high", "p")
    return {str(r["feature"]): {k: r[k] for k in keys} for r in records(frame)} if len(frame) else {}


def _bootstrap(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not row or not row.get("bootstrap_iterations"):
        return None
    return {"difference": clean(row["difference"]), "ci_low": clean(row["bootstrap_ci_low"]),
            "ci_high": clean(row["bootstrap_ci_high"]), "p": clean(row["bootstrap_p"]),
            "iterations": row["bootstrap_iterations"]}


def build_summary(result: Analyses) -> dict[str, Any]:
    """Headline figures for summary.json."""
    cfg, diag, base = result.cfg, result.diagnosis, result.baseline
    best_base = result.best_baseline
    return {
        "n_cases": len(result.cases),
        "n_events": int(result.clinical.frame.loc[result.cases, "event"].sum()),
        "n_train": len(result.split.train),
        "n_test": len(result.split.test),
        "split": (f"read from {cfg.split}" if cfg.split is not None
                  else f"drawn: seed {cfg.seed}, label-stratified, test share {cfg.test_fraction}"),
        "feature_sets": sorted(set(diag.summary["feature_set"]), key=list(diag.summary["feature_set"]).index),
        "best_integrated": _auc_row(diag.summary, diag.results.index(result.best)),
        "best_baseline": _auc_row(base.summary, base.results.index(best_base))
        if base and best_base else None,
        "delong_p_best_integrated_vs_best_baseline": clean(result.baseline_comparison["p"])
        if result.baseline_comparison else None,
        "bootstrap_best_integrated_vs_best_baseline": _bootstrap(result.baseline_comparison),
        "km_groups": {"feature_set": result.km.model.feature_set, "model": result.km.model.model,
                      "chosen_by": result.km.chosen_by, "threshold": result.km.threshold},
        "selection": "best = highest test AUC (chosen and evaluated on the same test cases: optimistic)",
        "auc_ci": f"DeLong variance; normal interval on the AUC scale clipped to [0, 1]; {cfg.ci_level}",
        "auc_comparison": f"paired DeLong; paired stratified bootstrap ({cfg.bootstrap_iterations} "
        f"iterations, seed {cfg.seed}; percentile interval, p from difference / bootstrap SD)",
        "logrank": records(result.survival.logrank)[0],
        "km_survival": records(result.survival.km_table),
        "cox_univariable": _cox(result.cox.univariable),
        "cox_multivariable": _cox(result.cox.multivariable),
        "cox_units": f"coef per unit frequency (1.0 = every tile); HR per {cfg.hr_per:g} frequency",
        "excluded_cases": list(result.clinical.excluded_cases),
        "notes": result.notes,
        "classes": {"positive": result.clinical.positive, "negative": result.clinical.negative},
        "sentences": headline_sentences(result),
    }
