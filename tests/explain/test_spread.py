"""Spread over seeds (per-run table, mean and std against numpy), truth correlation, GradCAM std."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mixture_ray.explain.analyse import gradcam_agreement, truth_correlation
from mixture_ray.explain.spread import seed_spread, seed_table, spread_lines, write_spread

FINDINGS = ["background", "foci", "fat"]


def _summary(rng: np.random.Generator, k: int) -> dict[str, Any]:
    """One run's k<K> analysis entry with random numbers where the spread reads them."""
    gradcam = [{"pred": p, "cls": c, "iou": float(rng.random()), "corr": float(rng.random())}
               for p in (0, 1) for c in range(k)]
    return {"k": k, "logistic": {"auc": float(rng.random())}, "gradcam": gradcam,
            "truth": {"findings": FINDINGS, "iou": rng.random((k, 3)).tolist(),
                      "corr": rng.uniform(-1, 1, (k, 3)).tolist()}}


def test_spread_is_mean_and_sample_std_of_the_per_seed_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    runs = [(f"run{s}", s, {"k3": _summary(rng, 3), "k4": _summary(rng, 4)}) for s in range(3)]
    table = seed_table(runs)
    assert len(table) == 6 and sorted(table.k.unique()) == [3, 4]
    for label, seed, summary in runs:  # per-seed values: the best class, whatever its index
        row = table[(table.run == label) & (table.k == 3)].iloc[0]
        k3 = summary["k3"]
        assert row.seed == seed and row.auc == k3["logistic"]["auc"]
        assert row.iou_foci == max(r[1] for r in k3["truth"]["iou"])
        assert row.corr_fat == max(r[2] for r in k3["truth"]["corr"])
        assert row.gradcam_iou_pred1 == max(g["iou"] for g in k3["gradcam"] if g["pred"] == 1)
        assert row.gradcam_corr_pred0 == max(g["corr"] for g in k3["gradcam"] if g["pred"] == 0)
    spread = seed_spread(table, 4)
    per_seed = table[table.k == 4]
    assert spread["seeds"] == [0, 1, 2] and spread["ddof"] == 1
    for metric in ("auc", "iou_background", "corr_foci", "gradcam_iou_pred0", "gradcam_corr_pred1"):
        values = per_seed[metric].to_numpy()
        assert spread["mean"][metric] == pytest.approx(np.mean(values), abs=1e-12)
        assert spread["std"][metric] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    write_spread(table, tmp_path / "seed_spread.csv")
    csv = pd.read_csv(tmp_path / "seed_spread.csv")
    assert csv.run.tolist() == ["run0", "run0", "run1", "run1", "run2", "run2",
                                "mean", "std", "mean", "std"]
    std4 = csv[(csv.run == "std") & (csv.k == 4)].iloc[0]
    assert std4.iou_fat == pytest.approx(np.std(per_seed.iou_fat.to_numpy(), ddof=1))
    lines = spread_lines(spread, 4)
    assert "over 3 runs (seeds 0, 1, 2)" in lines[0] and "foci" in lines[1]
    assert any("tiles predicted 1" in line for line in lines)


def test_a_run_without_a_number_is_left_out() -> None:
    rng = np.random.default_rng(1)
    summaries = [{"k2": _summary(rng, 2)} for _ in range(3)]
    del summaries[1]["k2"]["logistic"]["auc"]  # the model predicted one label: no regression
    table = seed_table([(str(i), i, s) for i, s in enumerate(summaries)])
    spread = seed_spread(table, 2)
    aucs = [summaries[i]["k2"]["logistic"]["auc"] for i in (0, 2)]
    assert spread["mean"]["auc"] == pytest.approx(np.mean(aucs))
    assert spread["std"]["auc"] == pytest.approx(np.std(aucs, ddof=1))


def test_truth_correlation_is_pearson_over_covered_cells() -> None:
    rng = np.random.default_rng(2)
    triples = []
    for shape in ((5, 7), (6, 4)):
        weights = rng.random((*shape, 3)).astype(np.float32)
        valid = rng.random(shape) > 0.2
        truth = rng.integers(0, 3, shape)  # code 3 of 4 never occurs: NaN
        triples.append((weights, valid, truth))
    corr = truth_correlation(triples, 4)
    w = np.concatenate([t[0][t[1]] for t in triples]).astype(np.float64)
    codes = np.concatenate([t[2][t[1]] for t in triples])
    for c in range(3):
        for code in range(3):
            expected = np.corrcoef(w[:, c], codes == code)[0, 1]
            assert corr[c, code] == pytest.approx(expected, abs=1e-9)
    assert np.isnan(corr[:, 3]).all()


def test_gradcam_agreement_reports_the_std_over_tiles() -> None:
    rng = np.random.default_rng(3)
    windows = [(i % 2, rng.random((4, 4, 2)), rng.random((4, 4))) for i in range(6)]
    frame = gradcam_agreement(windows, np.ones(2), 0.5, 0.5)
    assert set(frame.columns) >= {"iou", "iou_std", "corr", "corr_std", "n_tiles"}
    corr = [np.corrcoef(w[..., 1].ravel(), cam.ravel())[0, 1] for p, w, cam in windows if p == 0]
    row = frame[(frame.pred == 0) & (frame.cls == 1)].iloc[0]
    assert row["corr"] == pytest.approx(np.mean(corr))
    assert row["corr_std"] == pytest.approx(np.std(corr, ddof=1))
