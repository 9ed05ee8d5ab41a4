"""Figures of the stats stage (matplotlib, Agg backend): ROC, Kaplan-Meier, forest, importance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import pandas as pd
    from matplotlib.axes import Axes

    from mixture_ray.stats.diagnosis import ModelResult
    from mixture_ray.stats.survival import SurvivalByGroup

_MODEL_NAMES = {"random_forest": "Random forest", "svm": "SVM"}


def _legend(r: ModelResult, label: str) -> str:
    return f"{label}: AUC {r.auc:.3f} ({r.ci[0]:.3f}-{r.ci[1]:.3f})"


def _roc_axes(ax: Axes, title: str) -> None:
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)


def roc_feature_sets(results: Sequence[ModelResult], path: Path, ci_level: float) -> None:
    """One panel per feature set with each model's test ROC; AUC and CI in the legend."""
    sets = list(dict.fromkeys(r.feature_set for r in results))
    cols = min(len(sets), 3)
    rows = -(-len(sets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), sets, strict=False):
        for r in (r for r in results if r.feature_set == name):
            ax.plot(r.fpr, r.tpr, label=_legend(r, _MODEL_NAMES.get(r.model, r.model)))
        _roc_axes(ax, f"feature set {name}")
    for ax in axes.ravel()[len(sets) :]:
        ax.axis("off")
    fig.suptitle(f"Diagnosis, test split: ROC with AUC and {ci_level:.0%} DeLong CI", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def roc_best(
    integrated: ModelResult, baseline: ModelResult | None, p_value: float | None, path: Path,
    bootstrap_p: float | None = None,
) -> None:
    """Best integrated model vs best non-integrated baseline (paired DeLong and bootstrap p in the title)."""
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    pairs = [(integrated, "integrated"), *([(baseline, "baseline")] if baseline is not None else [])]
    for r, kind in pairs:
        label = f"{kind} {r.feature_set} {_MODEL_NAMES.get(r.model, r.model)}"
        ax.plot(r.fpr, r.tpr, label=_legend(r, label))
    title = "Best integrated vs best baseline" if baseline is not None else "Best integrated model"
    if p_value is not None:
        title += f"\nDeLong p = {p_value:.3g}"
    if bootstrap_p is not None:
        title += f", bootstrap p = {bootstrap_p:.3g}"
    _roc_axes(ax, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def kaplan_meier(survival: SurvivalByGroup, p_value: float, path: Path, title: str, time_label: str) -> None:
    """KM curves with CI bands, at-risk counts under the axis and the log-rank p."""
    from lifelines.plotting import add_at_risk_counts

    fig, ax = plt.subplots(figsize=(7.0, 5.2))
    fitters = list(survival.fitters.values())
    for kmf in fitters:
        kmf.plot_survival_function(ax=ax, ci_show=True, show_censors=True, censor_styles={"ms": 4})
    ax.axvline(survival.horizon, ls=":", c="grey", lw=0.8)
    ax.set(ylim=(0, 1.02), xlabel=time_label, ylabel="survival probability")
    p_text = "n/a" if not np.isfinite(p_value) else f"{p_value:.3g}"
    ax.set_title(f"{title}\nlog-rank p = {p_text}", fontsize=10)
    add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk", "Events"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def forest(univariable: pd.DataFrame, multivariable: pd.DataFrame, hr_per: float, path: Path,
           dropped: Mapping[str, str] | None = None) -> None:
    """Hazard ratio per ``hr_per`` with CI for every finding: univariable and multivariable.

    ``dropped`` maps findings left out of the multivariable model to a short tag shown by the name.
    """
    dropped = dropped or {}
    features = [f for f in univariable["feature"] if f]
    if "feature" in multivariable:
        features += [f for f in multivariable["feature"] if f not in features]
    y = np.arange(len(features))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.38 * len(features)))
    styles = ((univariable, "univariable", "C0", 0.15), (multivariable, "multivariable", "C3", -0.15))
    for frame, label, colour, offset in styles:
        if frame.empty:
            continue
        index = frame.set_index("feature")
        for pos, feature in zip(y, features, strict=True):
            if feature not in index.index or not np.isfinite(index.loc[feature, "hr"]):
                continue
            row = index.loc[feature]
            err = [[row["hr"] - row["hr_low"]], [row["hr_high"] - row["hr"]]]
            ax.errorbar(row["hr"], pos + offset, xerr=err, fmt="o", color=colour, ms=4, capsize=2,
                        label=label)
            label = "_nolegend_"
    ax.axvline(1.0, c="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    names = [f"{f} ({dropped[f]})" if f in dropped else f for f in features]
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel(f"hazard ratio per {hr_per:g} frequency ({hr_per * 100:g} percentage points)")
    ax.set_title("Cox proportional hazards per finding", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def importance(frame: pd.DataFrame, path: Path, title: str) -> None:
    """Random forest mean decrease in impurity, largest on top."""
    frame = frame.sort_values("importance")
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.32 * len(frame)))
    ax.barh(np.arange(len(frame)), frame["importance"], color="C2")
    ax.set_yticks(np.arange(len(frame)), frame["feature"], fontsize=8)
    ax.set_xlabel("mean decrease in impurity")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
