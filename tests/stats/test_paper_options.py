"""The MIXTURE paper's choices in the stats stage: random forest regressor score, Kaplan-Meier split by a
chosen model and threshold, paired bootstrap next to DeLong, ROC points, the Fig. S4 / S5 figures."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.stats.config import StatsConfig
from mixture_ray.stats.diagnosis import DiagnosisAnalysis, make_model
from mixture_ray.stats.km import choose_model, km_groups, out_of_fold
from mixture_ray.stats.simulate import SimulatedCohort, simulate_cohort
from mixture_ray.stats.stage import StatsReport
from mixture_ray.stats.stage import run as run_stats
from mixture_ray.store.case_split import split_cases


def config(**values: object) -> StatsConfig:
    return build_config(StatsConfig, {"frequencies": "f.csv", "clinical": "c.csv", "out_dir": "out",
                                      "rf_trees": 40, "bootstrap_iterations": 300, **values})


@pytest.fixture(scope="module")
def cohort() -> SimulatedCohort:
    return simulate_cohort(100, seed=2, tiles=200, baseline_ks=(4,))


def tables(cohort: SimulatedCohort) -> tuple[pd.DataFrame, pd.Series]:
    frame = cohort.frequencies.set_index("case_id")
    return frame, cohort.clinical.set_index("case_id")["label"]


def fitted(cfg: StatsConfig, cohort: SimulatedCohort) -> DiagnosisAnalysis:
    frame, labels = tables(cohort)
    split = split_cases(labels, cfg.test_fraction, cfg.seed)
    sets = {mag: [c for c in frame if c.startswith(f"{mag}/")] for mag in ("5x", "20x")}
    return DiagnosisAnalysis(cfg, split).fit({n: frame[c] for n, c in sets.items()}, labels)


def test_forest_regressor_scores_with_its_prediction_and_impurity_importance(cohort: SimulatedCohort) -> None:
    assert isinstance(make_model("random_forest", config()), RandomForestClassifier)
    cfg = config(forest="regressor")
    assert isinstance(make_model("random_forest", cfg), RandomForestRegressor)
    analysis = fitted(cfg, cohort)
    frame, _ = tables(cohort)
    for r in (r for r in analysis.results if r.model == "random_forest"):
        assert isinstance(r.estimator, RandomForestRegressor)
        test = frame.loc[list(analysis.split.test), r.features].to_numpy()
        np.testing.assert_array_equal(r.scores, r.estimator.predict(test))
        assert r.auc > 0.8
    importance = analysis.importance()
    rf20 = next(r for r in analysis.results if r.model == "random_forest" and r.feature_set == "20x")
    got = importance[importance["feature_set"] == "20x"].set_index("feature")["importance"]
    expected = pd.Series(rf20.estimator.feature_importances_, index=rf20.features)
    pd.testing.assert_series_equal(got.loc[expected.index], expected, check_names=False)
    assert set(got.head(2).index) == {"20x/dense_fibrosis", "20x/fibroblastic_foci"}
    with pytest.raises(ConfigError, match="forest"):
        config(forest="boosting")


def test_default_km_class_is_the_models_own_prediction(cohort: SimulatedCohort) -> None:
    cfg = config()
    frame, labels = tables(cohort)
    table = frame[[c for c in frame if c.startswith("20x/")]]
    for model in ("random_forest", "svm"):
        out = out_of_fold(cfg, model, table, labels)
        cv = StratifiedKFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed)
        own = cross_val_predict(make_model(model, cfg), table.to_numpy(), labels.to_numpy(), cv=cv)
        np.testing.assert_array_equal(out["predicted"].to_numpy(), own)  # what the stage did before
        high = out_of_fold(cfg, model, table, labels, threshold=0.8)
        np.testing.assert_array_equal(high["predicted"], (out["score"] >= 0.8).astype(int))


def test_km_model_and_threshold_choose_the_split(cohort: SimulatedCohort) -> None:
    frame, labels = tables(cohort)
    best_cfg = config()
    analysis = fitted(best_cfg, cohort)
    assert choose_model(best_cfg, analysis) == (analysis.best(), "highest test AUC")
    worst = min(analysis.results, key=lambda r: r.auc)
    cfg = config(km_model=[worst.feature_set, worst.model], km_threshold=0.3)
    groups = km_groups(cfg, analysis, frame, labels)
    assert groups.model is worst and groups.chosen_by == "km_model" and groups.threshold == 0.3
    direct = out_of_fold(cfg, worst.model, frame[worst.features], labels, 0.3)
    pd.testing.assert_series_equal(groups.predicted, direct["predicted"])
    assert ((groups.score >= 0.3).astype(int) == groups.predicted).all()
    rf = out_of_fold(cfg, "random_forest", frame[worst.features], labels)["score"]
    pd.testing.assert_series_equal(groups.rf_score, rf)
    with pytest.raises(ConfigError, match=r"km_model: feature set '2\.5x' was not fitted"):
        choose_model(config(km_model=["2.5x", "svm"]), analysis)
    for bad, message in ((["5x"], "km_model"), (["5x", "tree"], "km_model"), (["5y", "svm"], "km_model")):
        with pytest.raises(ConfigError, match=message):
            config(km_model=bad)
    with pytest.raises(ConfigError, match="km_threshold"):
        config(km_threshold=1.5)
    with pytest.raises(ConfigError, match="bootstrap_iterations"):
        config(bootstrap_iterations=1)


@pytest.fixture(scope="module")
def paper_run(cohort: SimulatedCohort, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StatsReport]:
    """The stage with the paper's choices: RF regressor, KM by the 5x random forest at 0.5."""
    root = tmp_path_factory.mktemp("paper")
    paths = cohort.write(root)
    report = run_stats(build_config(StatsConfig, {
        "frequencies": paths["frequencies"], "clinical": paths["clinical"], "out_dir": root / "out",
        "baseline_dir": paths["baseline_dir"], "baseline_ks": [4], "feature_sets": ["5x", "20x"],
        "rf_trees": 40, "forest": "regressor", "km_model": ["5x", "random_forest"], "km_threshold": 0.5,
        "bootstrap_iterations": 1000, "min_events": 5}))
    return root, report


def test_stage_splits_km_by_the_chosen_model(
    cohort: SimulatedCohort, paper_run: tuple[Path, StatsReport]
) -> None:
    root, _ = paper_run
    out = root / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["km_groups"] == {"feature_set": "5x", "model": "random_forest", "chosen_by": "km_model",
                                    "threshold": 0.5}
    frame, labels = tables(cohort)
    cfg = config(forest="regressor", rf_trees=40)
    direct = out_of_fold(cfg, "random_forest", frame[[c for c in frame if c.startswith("5x/")]], labels, 0.5)
    cases = pd.read_csv(out / "cases.csv").set_index("case_id")
    np.testing.assert_array_equal(cases["predicted_out_of_fold"], direct.loc[cases.index, "predicted"])
    np.testing.assert_allclose(cases["score_out_of_fold"], direct.loc[cases.index, "score"])
    np.testing.assert_array_equal(cases["predicted_out_of_fold"], (cases["score_out_of_fold"] >= 0.5))
    km = pd.read_csv(out / "km_survival.csv").set_index("group")["n"]
    assert km.sum() == len(cases) and km.max() == cases["predicted_out_of_fold"].value_counts().max()
    assert html.escape("score >= 0.5") in (out / "report.html").read_text()


def test_bootstrap_is_reported_wherever_delong_is(paper_run: tuple[Path, StatsReport]) -> None:
    root, report = paper_run
    rows = pd.read_csv(root / "out" / "delong_comparisons.csv")
    assert rows["bootstrap_p"].between(0, 1).all() and (rows["bootstrap_iterations"] == 1000).all()
    assert (rows["bootstrap_ci_low"] <= rows["bootstrap_ci_high"]).all()
    assert (np.sign(rows["bootstrap_z"]) == np.sign(rows["z"])).all()
    versus = rows.iloc[-1]
    boot = report.headline["bootstrap_best_integrated_vs_best_baseline"]
    assert versus["comparison"] == "best integrated vs best baseline"
    assert boot["p"] == pytest.approx(versus["bootstrap_p"]) and boot["iterations"] == 1000
    assert boot["difference"] == pytest.approx(versus["difference"])
    assert "bootstrap p" in report.summary()


def test_roc_points_and_paper_figures_are_written(paper_run: tuple[Path, StatsReport]) -> None:
    root, report = paper_run
    out = root / "out"
    curves = pd.read_csv(out / "roc_curves.csv")
    assert list(curves.columns) == ["feature_set", "model", "fpr", "tpr"]
    auc = pd.read_csv(out / "diagnosis_auc.csv")
    assert curves.groupby(["feature_set", "model"]).ngroups == len(auc) == 4
    for (_, _), points in curves.groupby(["feature_set", "model"]):
        assert points["fpr"].is_monotonic_increasing and points["tpr"].is_monotonic_increasing
        assert points["fpr"].iloc[-1] == points["tpr"].iloc[-1] == 1.0
    for _, row in auc.iterrows():  # the trapezoid area under the saved points is the reported AUC
        points = curves[(curves["feature_set"] == row["feature_set"]) & (curves["model"] == row["model"])]
        assert np.trapezoid(points["tpr"], points["fpr"]) == pytest.approx(row["auc"], abs=1e-9)
    for name in ("score_by_diagnosis", "finding_correlation"):
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and min(image.size) > 200
        assert report.plots[name] == out / f"{name}.png"


def test_correlation_matrix_equals_pandas(paper_run: tuple[Path, StatsReport]) -> None:
    root, _ = paper_run
    saved = pd.read_csv(root / "out" / "finding_correlation.csv").set_index("feature")
    direct = pd.read_csv(root / "frequencies.csv").set_index("case_id").corr()
    assert list(saved.index) == list(saved.columns) == list(direct.columns)
    np.testing.assert_allclose(saved.to_numpy(), direct.to_numpy(), rtol=1e-12, atol=1e-12)
    cross = saved.loc["5x/fibrosis", "20x/dense_fibrosis"]
    assert cross > 0.5  # 5x fibrosis merges 20x dense fibrosis and fibroblastic foci
