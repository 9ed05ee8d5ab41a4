"""Figures of the stats stage (matplotlib, Agg backend): ROC, Kaplan-Meier, forest, importance.

Every function writes its PNG and returns the (closed) figure, so its artists can be inspected.
Curves that may coincide (RF and SVM ROC, integrated and baseline, Kaplan-Meier groups) differ in
line style, marker and width, the dashed one drawn on top, so neither hides the other.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from mixture_ray.stats.diagnosis import ModelResult
    from mixture_ray.stats.survival import SurvivalByGroup

_MODEL_NAMES = {"random_forest": "Random forest", "svm": "SVM"}
# (line style, marker, width, zorder): the first drawn solid and wide, the next dashed with markers on top
LINE_STYLES = (("-", "", 2.4, 2), ("--", "o", 1.5, 3), (":", "s", 1.5, 4), ("-.", "^", 1.5, 5))
_MODEL_STYLE = {"random_forest": 0, "svm": 1}


def _style(index: int) -> dict[str, Any]:
    ls, marker, lw, zorder = LINE_STYLES[index % len(LINE_STYLES)]
    return {"ls": ls, "marker": marker, "lw": lw, "zorder": zorder, "ms": 3.5, "markevery": 1}


def time_label(column: str, unit: str = "") -> str:
    """The time axis label: the column's name, with the unit in brackets when one is given and new.

    Args:
        column: the clinical time column (e.g. ``time`` or ``months``).
        unit: the configured unit (e.g. ``years``); empty = none.

    Returns:
        ``"time (years)"``, or ``"months"`` alone when the unit is empty or already the name.
    """
    column, unit = column.strip(), unit.strip()
    return f"{column} ({unit})" if unit and unit.lower() not in column.lower() else column


def _legend(r: ModelResult, label: str) -> str:
    return f"{label}: AUC {r.auc:.3f} ({r.ci[0]:.3f}-{r.ci[1]:.3f})"


def _roc_axes(ax: Axes, title: str) -> None:
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)


def roc_feature_sets(results: Sequence[ModelResult], path: Path, ci_level: float,
                     classes: str = "") -> Figure:
    """One panel per feature set with each model's test ROC; AUC and CI in the legend.

    Args:
        results: the fitted models (random forest solid, SVM dashed with markers on top).
        path: the PNG written.
        ci_level: the level of the AUC intervals (title).
        classes: what is predicted, e.g. ``"UIP vs non-UIP"`` (title); empty = not named.

    Returns:
        The figure (closed).
    """
    sets = list(dict.fromkeys(r.feature_set for r in results))
    cols = min(len(sets), 3)
    rows = -(-len(sets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), sets, strict=False):
        for i, r in enumerate(r for r in results if r.feature_set == name):
            ax.plot(r.fpr, r.tpr, label=_legend(r, _MODEL_NAMES.get(r.model, r.model)),
                    **_style(_MODEL_STYLE.get(r.model, i)))
        _roc_axes(ax, f"feature set {name}")
    for ax in axes.ravel()[len(sets) :]:
        ax.axis("off")
    what = f"Diagnosis ({classes})" if classes else "Diagnosis"
    fig.suptitle(f"{what}, test split: ROC with AUC and {ci_level:.0%} DeLong CI", fontsize=10)
    return save_figure(fig, path)


def save_figure(fig: Figure, path: Path) -> Figure:
    """Lay out, write at 100 dpi and close ``fig``; returns it (closed) for tests to inspect."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def roc_best(
    integrated: ModelResult, baseline: ModelResult | None, p_value: float | None, path: Path,
    bootstrap_p: float | None = None,
) -> Figure:
    """Best integrated model vs best non-integrated baseline (paired DeLong and bootstrap p in the title).

    Args:
        integrated: the best integrated model (solid line).
        baseline: the best baseline model (dashed with markers, on top), or None.
        p_value: the paired DeLong p, or None.
        path: the PNG written.
        bootstrap_p: the paired bootstrap p, or None.

    Returns:
        The figure (closed).
    """
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    pairs = [(integrated, "integrated"), *([(baseline, "baseline")] if baseline is not None else [])]
    for i, (r, kind) in enumerate(pairs):
        label = f"{kind} {r.feature_set} {_MODEL_NAMES.get(r.model, r.model)}"
        ax.plot(r.fpr, r.tpr, label=_legend(r, label), **_style(i))
    title = "Best integrated vs best baseline" if baseline is not None else "Best integrated model"
    if p_value is not None:
        title += f"\nDeLong p = {p_value:.3g}"
    if bootstrap_p is not None:
        title += f", bootstrap p = {bootstrap_p:.3g}"
    _roc_axes(ax, title)
    return save_figure(fig, path)


def kaplan_meier(survival: SurvivalByGroup, p_value: float, path: Path, title: str,
                 xlabel: str) -> Figure:
    """KM curves with CI bands, at-risk counts under the axis and the log-rank p.

    Args:
        survival: the fitted curves per group (each its own line style; see ``LINE_STYLES``).
        p_value: the log-rank p (NaN = not tested).
        path: the PNG written.
        title: the first title line.
        xlabel: the time axis label (see :func:`time_label`).

    Returns:
        The figure (closed).
    """
    from lifelines.plotting import add_at_risk_counts

    fig, ax = plt.subplots(figsize=(7.0, 5.2))
    fitters = list(survival.fitters.values())
    for i, kmf in enumerate(fitters):
        ls, _, lw, zorder = LINE_STYLES[i % len(LINE_STYLES)]  # no markers: they would read as censoring
        kmf.plot_survival_function(ax=ax, ci_show=True, show_censors=True, censor_styles={"ms": 4},
                                   ls=ls, lw=lw, zorder=zorder)
    ax.axvline(survival.horizon, ls=":", c="grey", lw=0.8)
    ax.set(ylim=(0, 1.02), xlabel=xlabel, ylabel="survival probability")
    p_text = "n/a" if not np.isfinite(p_value) else f"{p_value:.3g}"
    ax.set_title(f"{title}\nlog-rank p = {p_text}", fontsize=10)
    add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk", "Events"])
    return save_figure(fig, path)


def forest(univariable: pd.DataFrame, multivariable: pd.DataFrame, hr_per: float, path: Path,
           dropped: Mapping[str, str] | None = None, colours: Mapping[str, str] | None = None) -> Figure:
    """Hazard ratio per ``hr_per`` with CI for every finding: univariable and multivariable.

    Args:
        univariable: the univariable Cox table (feature, hr, hr_low, hr_high).
        multivariable: the multivariable Cox table (may be empty).
        hr_per: the frequency change the hazard ratios are per.
        path: the PNG written.
        dropped: findings left out of the multivariable model -> a short tag shown by the name.
        colours: finding -> its palette colour (the name is written in it); others black.

    Returns:
        The figure (closed).
    """
    dropped = dropped or {}
    features = [f for f in univariable["feature"] if f]
    if "feature" in multivariable:
        features += [f for f in multivariable["feature"] if f not in features]
    y = np.arange(len(features))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.38 * len(features)))
    # neutral markers: the palette colours belong to the findings (their names)
    styles = ((univariable, "univariable", "black", "o", 0.15),
              (multivariable, "multivariable", "dimgrey", "s", -0.15))
    for frame, label, colour, marker, offset in styles:
        if frame.empty:
            continue
        index = frame.set_index("feature")
        for pos, feature in zip(y, features, strict=True):
            if feature not in index.index or not np.isfinite(index.loc[feature, "hr"]):
                continue
            row = index.loc[feature]
            err = [[row["hr"] - row["hr_low"]], [row["hr_high"] - row["hr"]]]
            ax.errorbar(row["hr"], pos + offset, xerr=err, fmt=marker, color=colour, ms=4, capsize=2,
                        label=label)
            label = "_nolegend_"
    ax.axvline(1.0, c="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    names = [f"{f} ({dropped[f]})" if f in dropped else f for f in features]
    ax.set_yticks(y, names, fontsize=8)
    colour_labels(ax.get_yticklabels(), features, colours)
    ax.set_xlabel(f"hazard ratio per {hr_per:g} frequency ({hr_per * 100:g} percentage points)")
    ax.set_title("Cox proportional hazards per finding", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def colour_labels(labels: Sequence[Text], features: Sequence[str], colours: Mapping[str, str] | None) -> None:
    """Write each tick label in its feature's palette colour (black when it has none)."""
    for text, feature in zip(labels, features, strict=True):
        text.set_color((colours or {}).get(str(feature), "black"))


def importance(frame: pd.DataFrame, path: Path, title: str,
               colours: Mapping[str, str] | None = None) -> Figure:
    """Random forest mean decrease in impurity, largest on top, each bar in its finding's colour.

    Args:
        frame: feature and importance columns (one feature set).
        path: the PNG written.
        title: the figure's title.
        colours: finding -> its palette colour; a finding without one is drawn grey.

    Returns:
        The figure (closed).
    """
    frame = frame.sort_values("importance")
    features = [str(f) for f in frame["feature"]]
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.32 * len(frame)))
    ax.barh(np.arange(len(frame)), frame["importance"], edgecolor="black", linewidth=0.5,
            color=[(colours or {}).get(f, "#7f7f7f") for f in features])
    ax.set_yticks(np.arange(len(frame)), features, fontsize=8)
    ax.set_xlabel("mean decrease in impurity")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
