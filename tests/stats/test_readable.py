"""Plots people read without asking: diagnosis names, a time axis said once, coinciding curves that stay
visible, and each finding in its map colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.lines import Line2D

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.palette import finding_colours
from mixture_ray.stats import paper_plots, plots
from mixture_ray.stats.clinical import load_clinical
from mixture_ray.stats.colours import class_order, feature_colours
from mixture_ray.stats.config import StatsConfig
from mixture_ray.stats.diagnosis import ModelResult
from mixture_ray.stats.survival import SurvivalByGroup


def result(feature_set: str, model: str, source: str = "integrated") -> ModelResult:
    fpr, tpr = np.array([0.0, 0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0, 1.0])  # the same curve for all
    return ModelResult(source=source, feature_set=feature_set, model=model, features=[], estimator=None,
                       y_test=np.array([0, 1]), scores=np.array([0.2, 0.8]), auc=0.875, se=0.1,
                       ci=(0.7, 1.0), fpr=fpr, tpr=tpr)


def curve(ax: Axes, label: str) -> Line2D:
    return next(line for line in ax.get_lines() if str(line.get_label()).startswith(label))


def test_coinciding_roc_curves_differ_in_style_and_the_dashed_one_is_on_top(tmp_path: Path) -> None:
    results = [result(s, m) for s in ("5x", "20x") for m in ("random_forest", "svm")]
    fig = plots.roc_feature_sets(results, tmp_path / "roc.png", 0.95, "UIP vs non-UIP")
    assert (tmp_path / "roc.png").exists() and "UIP vs non-UIP" in fig.texts[0].get_text()
    for ax in fig.axes[:2]:
        rf, svm = curve(ax, "Random forest"), curve(ax, "SVM")
        assert rf.get_linestyle() != svm.get_linestyle() and rf.get_marker() != svm.get_marker()
        assert rf.get_linewidth() != svm.get_linewidth() and svm.get_zorder() > rf.get_zorder()
    baseline_rf = result("k=8", "random_forest", "baseline")
    best = plots.roc_best(results[0], baseline_rf, 0.4, tmp_path / "b.png", 0.5)
    integrated, baseline = curve(best.axes[0], "integrated"), curve(best.axes[0], "baseline")
    assert integrated.get_linestyle() != baseline.get_linestyle()  # both random forests, still apart
    assert baseline.get_zorder() > integrated.get_zorder()


@pytest.mark.parametrize(("column", "unit", "label"), [
    ("time", "", "time"), ("time", "years", "time (years)"), ("months", "", "months"),
    ("months", "Months", "months"),
])
def test_time_label_says_the_column_once(column: str, unit: str, label: str) -> None:
    assert plots.time_label(column, unit) == label


def test_km_axis_and_groups(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    time, event = pd.Series(rng.exponential(3.0, 40)), pd.Series(rng.integers(0, 2, 40))
    group = pd.Series(np.where(np.arange(40) % 2, "predicted UIP", "predicted non-UIP"))
    survival = SurvivalByGroup(2.0).fit(time, event, group)
    fig = plots.kaplan_meier(survival, 0.3, tmp_path / "km.png", "title", plots.time_label("time"))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time"  # not "time (time)"
    uip, non = curve(ax, "predicted UIP"), curve(ax, "predicted non-UIP")
    assert uip.get_linestyle() != non.get_linestyle()


def test_finding_colours_follow_the_classifier_order(tmp_path: Path) -> None:
    classes = ["fibrosis", "complete_normal", "inflammation", "other"]
    counts = pd.DataFrame({"case_id": ["a"], **{f"5x/{c}": [1] for c in classes}})
    counts.to_csv(tmp_path / "counts.csv", index=False)
    kept = ["5x/fibrosis", "5x/inflammation", "5x/other"]  # complete_normal dropped from frequencies
    order = class_order(tmp_path / "frequencies.csv", kept)
    assert order == [f"5x/{c}" for c in classes]
    assert class_order(tmp_path / "elsewhere" / "frequencies.csv", kept) == kept
    colours = feature_colours([*order, "age"])
    palette = finding_colours(classes)
    for c in classes:
        assert colours[f"5x/{c}"] == "#{:02x}{:02x}{:02x}".format(*palette[c])
    assert colours["age"] == "#000000"
    frame = pd.DataFrame({"feature": kept, "importance": [0.5, 0.3, 0.2]})
    fig = plots.importance(frame, tmp_path / "imp.png", "t", colours)
    bars = {label.get_text(): to_hex(bar.get_facecolor())
            for label, bar in zip(fig.axes[0].get_yticklabels(), fig.axes[0].patches, strict=True)}
    assert bars == {f: colours[f] for f in kept}
    matrix = pd.DataFrame(np.eye(3), index=kept, columns=kept)
    heat = paper_plots.correlation_heatmap(matrix, tmp_path / "corr.png", "t", colours)
    assert [to_hex(t.get_color()) for t in heat.axes[0].get_xticklabels()] == [colours[f] for f in kept]


def names(tmp_path: Path, clinical: pd.DataFrame, **settings: object) -> tuple[str, str]:
    path = tmp_path / "clinical.csv"
    clinical.to_csv(path, index=False)
    cfg = build_config(StatsConfig, {"frequencies": "f.csv", "clinical": path, "out_dir": tmp_path,
                                     **settings})
    data = load_clinical(path, list(clinical["case_id"]), cfg)
    return data.positive, data.negative


def test_class_names_come_from_the_diagnosis_column_or_the_config(tmp_path: Path) -> None:
    label = [1, 1, 0, 0, 1, 0]
    clinical = pd.DataFrame({"case_id": list("abcdef"), "label": label, "time": 1.0, "event": 1,
                             "diagnosis": ["UIP" if v else "non-UIP" for v in label]})
    assert names(tmp_path, clinical) == ("UIP", "non-UIP")
    assert names(tmp_path, clinical, class_names=["other ILD", "IPF"]) == ("IPF", "other ILD")
    several = clinical.assign(diagnosis=["UIP", "UIP", "NSIP", "HP", "UIP", ""])
    assert names(tmp_path, several) == ("UIP", "not UIP")
    assert names(tmp_path, clinical.drop(columns=["diagnosis"])) == ("positive", "negative")
    assert names(tmp_path, clinical.assign(diagnosis="x")) == ("positive", "negative")  # names no class
    with pytest.raises(ConfigError, match="class_names"):
        build_config(StatsConfig, {"frequencies": "f", "clinical": "c", "out_dir": "o",
                                   "class_names": ["UIP"]})
