"""A self-contained HTML report: tables and base64-embedded PNGs, every data string HTML-escaped.

The page carries a Content-Security-Policy that allows no script at all and images only from data:
URIs, so even a missed escape could not run code or fetch anything.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mixture_ray.stats.analyses import Analyses

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #8a5a00; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
.lead { font-weight: bold; }
"""


@dataclasses.dataclass(frozen=True)
class Section:
    """A heading, a paragraph, tables (caption, frame) and figures (caption, PNG path).

    ``lead``: sentences reading the section's results, shown in bold before the paragraph.
    """

    heading: str
    text: str = ""
    tables: Sequence[tuple[str, pd.DataFrame]] = ()
    figures: Sequence[tuple[str, Path]] = ()
    lead: Sequence[str] = ()


def _table(caption: str, frame: pd.DataFrame) -> str:
    if frame.empty:
        return f"<p><b>{html.escape(caption)}</b>: no rows.</p>"
    body = frame.to_html(index=False, escape=True, na_rep="", border=0, float_format=lambda v: f"{v:.4g}")
    head, sep, rest = body.partition(">")
    return f"{head}{sep}<caption>{html.escape(caption)}</caption>{rest}"


def _figure(caption: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    text = html.escape(caption)
    return (
        f'<figure><img alt="{text}" src="data:image/png;base64,{data}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def write_report(
    path: Path, *, title: str, inputs: dict[str, str], notes: Sequence[str], sections: Sequence[Section]
) -> Path:
    """Write the page to ``path`` (atomically) and return it."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table("Inputs", pd.DataFrame({"input": list(inputs), "value": list(inputs.values())})),
    ]
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f'<h2>Notes</h2><ul class="note">{items}</ul>')
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts.extend(f'<p class="lead">{html.escape(sentence)}</p>' for sentence in section.lead)
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        parts.extend(_table(c, f) for c, f in section.tables)
        parts.extend(_figure(c, p) for c, p in section.figures)
    parts.append("</body></html>")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path


def texts(result: Analyses) -> dict[str, str]:
    """The explanatory paragraph of each section.

    Args:
        result: the run's analyses.

    Returns:
        Section key (diagnosis, baseline, survival, cox) -> paragraph.
    """
    cfg, clinical = result.cfg, result.clinical
    return {
        "diagnosis": f"Diagnosis {clinical.positive} (positive class) vs {clinical.negative}. "
        f"{len(result.cases)} cases; seeded ({cfg.seed}) split with "
        f"{cfg.test_fraction:.0%} test cases, stratified on the label. AUC CI: DeLong variance, normal "
        f"interval clipped to [0, 1]. Paired comparisons: DeLong, and a stratified bootstrap "
        f"({cfg.bootstrap_iterations} iterations, seed {cfg.seed}; 0 = off) with a percentile interval of "
        f"the AUC difference and p from difference / bootstrap SD. Best model (highest test AUC): "
        f"{result.best.name}. Random forest: {cfg.forest}.",
        "baseline": "The same classifiers on the non-integrated k-means frequencies (every magnification "
        "column), on the same split; the DeLong p compares the best integrated with the best baseline model "
        "(each best by test AUC).",
        "survival": f"Groups are out-of-fold predicted classes ({cfg.cv_folds}-fold stratified, seeded) "
        f"of {result.km.model.feature_set} {result.km.model.model} (chosen by {result.km.chosen_by}; "
        f"{_threshold(result)}), so no case is scored by a model fitted on it. Survival at "
        f"{horizon_text(cfg.horizon, cfg.time_column, cfg.time_unit)} with a Greenwood log(-log) interval.",
        "cox": f"coef = log hazard ratio per unit frequency; HR per {cfg.hr_per:g} frequency. The "
        "multivariable model leaves out one reference finding per magnification (frequencies sum to 1), "
        f"then findings with pairwise |r| > {cfg.max_correlation}, then VIF > {cfg.max_vif}.",
    }


def horizon_text(horizon: float, column: str, unit: str) -> str:
    """``"5 years"`` with a unit, else ``"time 5"`` (the time column's name, once)."""
    return f"{horizon:g} {unit.strip()}" if unit.strip() else f"{column} {horizon:g}"


def _threshold(result: Analyses) -> str:
    t = result.km.threshold
    return "the model's own class" if t is None else f"positive when the score >= {t:g}"


def sections(tables: Mapping[str, pd.DataFrame], figures: Mapping[str, Path],
             text: Mapping[str, str], lead: Mapping[str, str] | None = None) -> list[Section]:
    """The report, in reading order.

    Args:
        tables: the output tables by name.
        figures: the PNGs by plot name.
        text: the explanatory paragraph of each section (see :func:`texts`).
        lead: the headline sentences (``integrated_vs_baseline``, ``best_model``, ``survival``, ``cox``);
            all of them open the report and each leads its section.

    Returns:
        The sections, headline results first when ``lead`` is given.
    """
    lead = lead or {}

    def said(*keys: str) -> list[str]:
        return [lead[k] for k in keys if k in lead]

    top = [Section("Headline results", lead=list(lead.values()))] if lead else []
    return [
        *top,
        Section("Diagnosis prediction", text["diagnosis"],
                [("AUC per feature set and model (test split)", tables["diagnosis_auc"]),
                 ("Paired DeLong and bootstrap tests", tables["delong_comparisons"])],
                [("ROC per feature set", figures["roc_feature_sets"]),
                 ("Out-of-fold random forest score per case by diagnosis", figures["score_by_diagnosis"])],
                said("best_model")),
        Section("Non-integrated baseline", text["baseline"],
                [("Baseline AUC per k and model (same test split)", tables["baseline_auc"])],
                [("Best integrated vs best baseline", figures["roc_integrated_vs_baseline"])],
                said("integrated_vs_baseline")),
        Section("Feature importance", "Random forest mean decrease in impurity, per feature set.",
                [("Feature importance", tables["feature_importance"])],
                [("Feature importance of the best feature set", figures["feature_importance"])]),
        Section("Survival by predicted class", text["survival"],
                [("Survival at the horizon per group", tables["km_survival"]),
                 ("Log-rank test", tables["logrank"])],
                [("Kaplan-Meier by predicted class", figures["km_predicted_class"])], said("survival")),
        Section("Cox proportional hazards", text["cox"],
                [("Univariable Cox per finding", tables["cox_univariable"]),
                 ("Findings of the multivariable model (reference categories, collinearity)",
                  tables["collinearity"]),
                 ("Multivariable Cox", tables["cox_multivariable"]),
                 ("Proportional-hazards check of the multivariable model", tables["ph_check"]),
                 ("Subgroups: univariable Cox per finding within each level", tables["subgroups"])],
                [("Forest plot", figures["forest_cox"])], said("cox")),
        Section("Findings across magnifications", "Pearson correlation of the per-case finding frequencies "
                "(every case of the frequency table); the matrix is finding_correlation.csv.", [],
                [("Correlation of finding frequencies", figures["finding_correlation"])]),
        Section("Cases", "Every case analysed: split, label and diagnosis, out-of-fold predicted class "
                "(0/1 and its diagnosis), follow-up.",
                [("Cases", tables["cases"])]),
    ]
