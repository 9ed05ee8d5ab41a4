"""Statistics sections from a stats folder's files: ROC/AUC, integrated vs non-integrated, survival."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from mixture_ray.run_report.markup import Section, esc, figure, table
from mixture_ray.run_report.roc import CURVE_COLUMNS, roc_data_uri

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from mixture_ray.run_report.galleries import Thumbs
    from mixture_ray.run_report.locate import RunLayout

AUC_COLUMNS = ("source", "feature_set", "model", "n_test", "n_test_positive", "auc", "ci_low", "ci_high")


def read_table(folder: Path, name: str, columns: Sequence[str] = ()) -> pd.DataFrame | None:
    """``<name>.csv`` of ``folder`` (only ``columns`` that exist, when given), or None when absent."""
    path = folder / f"{name}.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    return frame[[c for c in columns if c in frame]] if columns else frame


def _tables(folder: Path, thumbs: Thumbs, specs: Sequence[tuple[str, str, Sequence[str]]]) -> list[str]:
    parts = []
    for name, caption, columns in specs:
        frame = read_table(folder, name, columns)
        if frame is not None:
            parts.append(table(frame, caption, thumbs.max_rows))
    return parts


def _figures(folder: Path, thumbs: Thumbs, names: Sequence[tuple[str, str]]) -> str:
    items = [(folder / f"{name}.png", caption) for name, caption in names
             if (folder / f"{name}.png").is_file()]
    return thumbs.gallery(items, scale=2) if items else ""  # plots: text must stay legible


def roc_section(layout: RunLayout, thumbs: Thumbs) -> Section:
    """ROC curves (drawn from roc_curves.csv when stats saved the points, else its own figure) and AUCs."""
    heading = "Diagnosis: ROC curves and AUC with CI"
    parts = []
    for folder in layout.stats:
        aucs, curves = read_table(folder, "diagnosis_auc"), read_table(folder, "roc_curves")
        found = []
        if curves is not None and set(CURVE_COLUMNS) <= set(curves.columns):
            found.append(figure(roc_data_uri(curves, aucs, 2 * thumbs.px), "ROC per feature set and model"))
        else:  # stats saved no curve points: its own figure
            found.append(_figures(folder, thumbs, [("roc_feature_sets", "ROC per feature set (stats)")]))
        if aucs is not None:
            found.append(table(aucs[[c for c in AUC_COLUMNS if c in aucs]],
                               "AUC per feature set and model (test split)", thumbs.max_rows))
        if any(found):
            parts += [f"<h3>{esc(layout.label(folder))}</h3>", *found]
    if not parts:
        return Section("roc", heading, missing="No diagnosis statistics found (a stats/ folder with "
                                               "diagnosis_auc.csv from `mixture-ray stats`).")
    return Section("roc", heading, "".join(parts))


def _best_rows(summary: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for kind in ("best_integrated", "best_baseline"):
        row = summary.get(kind)
        if isinstance(row, dict):
            rows.append({"kind": kind.removeprefix("best_"), **{c: row.get(c) for c in AUC_COLUMNS[1:]}})
    return pd.DataFrame(rows)


def comparison_section(layout: RunLayout, thumbs: Thumbs) -> Section:
    """Best integrated vs best non-integrated model (DeLong p), the baseline AUCs and paired tests."""
    heading = "Integrated findings vs non-integrated baseline"
    parts = []
    for folder in layout.stats:
        found = []
        if (folder / "summary.json").is_file():
            summary = json.loads((folder / "summary.json").read_text())
            p = summary.get("delong_p_best_integrated_vs_best_baseline")
            found.append(table(_best_rows(summary), "Best models (highest test AUC)", thumbs.max_rows))
            shown = "n/a" if p is None else f"{p:.3g}"
            found.append(f"<p>DeLong p, best integrated vs best baseline: {esc(shown)}</p>")
        found += _tables(folder, thumbs, [
            ("baseline_auc", "Non-integrated baseline AUC per k and model", AUC_COLUMNS),
            ("delong_comparisons", "Paired DeLong tests", ())])
        found.append(_figures(folder, thumbs, [("roc_integrated_vs_baseline",
                                                "Best integrated vs best baseline")]))
        if any(found):
            parts += [f"<h3>{esc(layout.label(folder))}</h3>", *found]
    if not parts:
        return Section("comparison", heading, missing=(
            "No integrated vs non-integrated comparison found (stats summary.json / baseline_auc.csv; "
            "run cases with clusters and stats with baseline_dir)."))
    return Section("comparison", heading, "".join(parts))


def survival_section(layout: RunLayout, thumbs: Thumbs) -> Section:
    """Kaplan-Meier by predicted class with the log-rank test, and the Cox models per finding."""
    heading = "Survival: Kaplan-Meier, log-rank and Cox"
    parts = []
    for folder in layout.stats:
        found = _tables(folder, thumbs, [
            ("km_survival", "Survival at the horizon per predicted class", ()),
            ("logrank", "Log-rank test", ()),
            ("cox_univariable", "Univariable Cox per finding",
             ("feature", "n", "events", "hr_per", "hr", "hr_low", "hr_high", "p", "note")),
            ("cox_multivariable", "Multivariable Cox",
             ("feature", "n", "events", "hr_per", "hr", "hr_low", "hr_high", "p", "note"))])
        found.append(_figures(folder, thumbs, [("km_predicted_class", "Kaplan-Meier by predicted class"),
                                               ("forest_cox", "Cox hazard ratios")]))
        if any(found):
            parts += [f"<h3>{esc(layout.label(folder))}</h3>", *found]
    if not parts:
        return Section("survival", heading, missing=(
            "No survival results found (km_survival.csv, logrank.csv, cox_*.csv of `mixture-ray stats`)."))
    return Section("survival", heading, "".join(parts))
