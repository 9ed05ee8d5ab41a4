"""ROC curves drawn from saved curve points (``roc_curves.csv``: feature_set, model, fpr, tpr)."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    import pandas as pd

CURVE_COLUMNS = ("feature_set", "model", "fpr", "tpr")
#: Line style per model, so curves that coincide stay visible (the dashed one drawn on top).
_STYLES: dict[str, dict[str, Any]] = {"random_forest": {"ls": "-", "lw": 2.2, "zorder": 2},
           "svm": {"ls": "--", "lw": 1.4, "marker": "o", "markersize": 3, "zorder": 3}}


def roc_data_uri(curves: pd.DataFrame, aucs: pd.DataFrame | None, px: int) -> str:
    """One ROC line per (feature set, model), AUC and CI in the legend when known, as a PNG data URI.

    Args:
        curves: rows of curve points (``CURVE_COLUMNS``), in drawing order within each curve.
        aucs: the stats AUC table (feature_set, model, auc, ci_low, ci_high) or None.
        px: the figure's edge in pixels.

    Returns:
        ``data:image/png;base64,...``.
    """
    known: dict[tuple[str, str], str] = {}
    if aucs is not None and {"feature_set", "model", "auc", "ci_low", "ci_high"} <= set(aucs.columns):
        known = {(str(r["feature_set"]), str(r["model"])): f": AUC {float(r['auc']):.3f} "
                 f"({float(r['ci_low']):.3f}-{float(r['ci_high']):.3f})" for r in aucs.to_dict("records")}
    fig, ax = plt.subplots(figsize=(px / 100, px / 100), dpi=100)
    for (feature_set, model), points in curves.groupby(["feature_set", "model"], sort=False):
        label = f"{feature_set} {model}{known.get((str(feature_set), str(model)), '')}"
        style = _STYLES.get(str(model), {"ls": ":", "zorder": 4})
        ax.plot(points["fpr"], points["tpr"], label=label, **style)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity")
    ax.legend(loc="lower right", fontsize=6)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
