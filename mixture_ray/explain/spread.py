"""Spread of one analysis over runs with other seeds: per-run numbers, their mean and std.

An NMF class has no fixed index across runs (class 2 of one seed is class 0 of another), so each
run is summed up by numbers that do not depend on the classes' order:

* ``auc``: the logistic regression's AUC (class-weight sums -> the model's prediction);
* ``iou_<finding>`` / ``corr_<finding>``: the best IoU (correlation) of any class with a planted
  finding (analyses with truth masks);
* ``gradcam_iou_pred<p>`` / ``gradcam_corr_pred<p>``: the best mean GradCAM IoU (correlation) of
  any class over the tiles predicted ``p``.

The std is the sample std over runs (ddof 1); a run without a number (NaN) is left out of both.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

DDOF = 1


def _best(values: Sequence[float] | np.ndarray) -> float:
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size else math.nan


def run_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The class-order-free numbers of one K's analysis (one run).

    Args:
        result: one ``k<K>`` entry of ``analysis/summary.json``.

    Returns:
        Metric name -> value (see the module docstring).
    """
    row = {"auc": float(result.get("logistic", {}).get("auc", math.nan))}
    truth = result.get("truth")
    if truth:
        iou = np.asarray(truth["iou"], float)
        corr = np.asarray(truth.get("corr", np.full_like(iou, np.nan)), float)
        for j, name in enumerate(truth["findings"]):
            row[f"iou_{name}"] = _best(iou[:, j])
            row[f"corr_{name}"] = _best(corr[:, j])
    gradcam = result.get("gradcam", [])
    for pred in sorted({int(r["pred"]) for r in gradcam}):
        rows = [r for r in gradcam if int(r["pred"]) == pred]
        row[f"gradcam_iou_pred{pred}"] = _best([r["iou"] for r in rows])
        row[f"gradcam_corr_pred{pred}"] = _best([r["corr"] for r in rows])
    return row


def seed_table(runs: Sequence[tuple[str, int, Mapping[str, Any]]]) -> pd.DataFrame:
    """One row per run and K: ``run``, ``seed``, ``k`` and the run's metrics.

    Args:
        runs: (run label, fit seed, the run's ``analysis/summary.json``) per run.

    Returns:
        The per-run table (a metric a run lacks is NaN).
    """
    rows = []
    for label, seed, summary in runs:
        for result in summary.values():
            rows.append({"run": label, "seed": seed, "k": int(result["k"]), **run_metrics(result)})
    return pd.DataFrame(rows)


def seed_spread(table: pd.DataFrame, k: int) -> dict[str, Any]:
    """Mean and std over the runs of one K.

    Args:
        table: the per-run table of :func:`seed_table`.
        k: the class count.

    Returns:
        ``{"runs", "seeds", "per_run": rows, "mean": {metric: value}, "std": {metric: value},
        "ddof"}``.
    """
    part = table[table.k == k]
    metrics = part.drop(columns=["run", "seed", "k"]).astype(float)
    return {"runs": part.run.tolist(), "seeds": [int(s) for s in part.seed],
            "per_run": part.to_dict(orient="records"),
            "mean": {m: float(v) for m, v in metrics.mean().items()},
            "std": {m: float(v) for m, v in metrics.std(ddof=DDOF).items()}, "ddof": DDOF}


def write_spread(table: pd.DataFrame, path: Path) -> None:
    """The per-run table, then a ``mean`` and a ``std`` row per K (in ``run``), as CSV.

    Args:
        table: the per-run table of :func:`seed_table`.
        path: the CSV file written.
    """
    parts = [table.astype({"seed": "Int64"})]  # stays whole beside the mean and std rows
    for k in sorted(table.k.unique()):
        spread = seed_spread(table, int(k))
        for stat in ("mean", "std"):
            parts.append(pd.DataFrame([{"run": stat, "k": int(k), **spread[stat]}]))
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)


def spread_lines(spread: Mapping[str, Any], k: int) -> list[str]:
    """Report lines of one K's spread: AUC, truth IoU and correlation, GradCAM IoU and correlation.

    Args:
        spread: what :func:`seed_spread` returned.
        k: the class count.

    Returns:
        Indented lines, ``mean ± std`` per metric (findings no class overlaps are left out).
    """
    mean, std = spread["mean"], spread["std"]

    def pm(metric: str) -> str:
        return f"{mean[metric]:.2f} ± {std[metric]:.2f}"

    seeds = ", ".join(str(s) for s in spread["seeds"])
    lines = [f"  K={k} over {len(spread['runs'])} runs (seeds {seeds}), mean ± std: "
             f"logistic AUC {pm('auc')}"]
    findings = [m.removeprefix("iou_") for m in mean if m.startswith("iou_") and mean[m] > 0]
    if findings:
        lines.append("    best IoU with a planted finding: "
                     + ", ".join(f"{f} {pm('iou_' + f)}" for f in findings))
        lines.append("    best correlation with a planted finding: "
                     + ", ".join(f"{f} {pm('corr_' + f)}" for f in findings))
    for metric in (m for m in mean if m.startswith("gradcam_iou_pred")):
        pred = metric.removeprefix("gradcam_iou_pred")
        lines.append(f"    GradCAM agreement, tiles predicted {pred}: IoU {pm(metric)}, "
                     f"correlation {pm('gradcam_corr_pred' + pred)}")
    return lines
