"""Diagnosis from finding frequencies: random forest and SVM per feature set, ROC AUC with DeLong CI.

Every model of a run is fitted on the same seeded, label-stratified training cases and scored on the
same test cases, so any two test AUCs can be compared with the paired DeLong test.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import roc_curve
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mixture_ray.stats.bootstrap import paired_bootstrap
from mixture_ray.stats.delong import delong
from mixture_ray.stats.errors import StatsInputError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mixture_ray.stats.config import StatsConfig
    from mixture_ray.store.case_split import Split

MODELS = ("random_forest", "svm")


def make_model(name: str, cfg: StatsConfig, calibration_folds: int = 5) -> Any:
    """An unfitted model: ``random_forest`` (classifier or regressor, ``cfg.forest``) or ``svm``.

    The regressor is fitted on the 0/1 label and its prediction is the score (the MIXTURE paper's
    random forest). The SVM is standard scaling + RBF SVC; its probabilities are Platt scaling fitted
    on internal K-fold predictions (``CalibratedClassifierCV(SVC(), ensemble=False)``: what
    ``SVC(probability=True)`` did, which scikit-learn 1.9 deprecates). The sigmoid is monotone, so the
    AUC is that of the SVM's decision function fitted on all training cases.
    """
    if name == "random_forest":
        forest = RandomForestRegressor if cfg.forest == "regressor" else RandomForestClassifier
        return forest(n_estimators=cfg.rf_trees, random_state=cfg.seed, n_jobs=cfg.n_jobs)
    if name == "svm":
        svc = CalibratedClassifierCV(SVC(C=cfg.svm_c), method="sigmoid", cv=calibration_folds, ensemble=False)
        return Pipeline([("scale", StandardScaler()), ("svm", svc)])
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def score(estimator: Any, x: np.ndarray) -> np.ndarray:
    """The positive-class score: predicted probability of a classifier, a regressor's prediction."""
    if is_classifier(estimator):
        return np.asarray(estimator.predict_proba(x))[:, 1]
    return np.asarray(estimator.predict(x), dtype=float)


def folds_for(y: np.ndarray, wanted: int) -> int:
    """``wanted`` folds, fewer when the smaller class has fewer cases; raises below 2."""
    folds = min(wanted, int(np.bincount(y, minlength=2).min()))
    if folds < 2:
        raise StatsInputError(f"too few cases: each class needs at least 2 cases here (got {np.bincount(y)})")
    return folds


@dataclasses.dataclass
class ModelResult:
    """One fitted model and its test-set scores, AUC (DeLong SE and CI) and ROC curve."""

    source: str
    feature_set: str
    model: str
    features: list[str]
    estimator: Any
    y_test: np.ndarray
    scores: np.ndarray
    auc: float
    se: float
    ci: tuple[float, float]
    fpr: np.ndarray
    tpr: np.ndarray

    @property
    def name(self) -> str:
        """Display name: source, feature set and model."""
        return f"{self.source} {self.feature_set} {self.model}"


class DiagnosisAnalysis:
    """RF and SVM per feature table; ``fit`` returns self, ``summary`` is the AUC table."""

    def __init__(self, cfg: StatsConfig, split: Split, source: str = "integrated") -> None:
        self.cfg, self.split, self.source = cfg, split, source
        self.results: list[ModelResult] = []

    def fit(self, tables: Mapping[str, pd.DataFrame], labels: pd.Series) -> DiagnosisAnalysis:
        """Fit every model on every table (name -> features indexed by case id)."""
        train, test = list(self.split.train), list(self.split.test)
        y_train, y_test = labels.loc[train].to_numpy(), labels.loc[test].to_numpy()
        folds = folds_for(y_train, 5)
        for set_name, table in tables.items():
            for model in MODELS:
                est = make_model(model, self.cfg, folds).fit(table.loc[train].to_numpy(), y_train)
                scores = score(est, table.loc[test].to_numpy())
                d = delong(y_test, scores)
                fpr, tpr, _ = roc_curve(y_test, scores)
                self.results.append(ModelResult(
                    source=self.source, feature_set=set_name, model=model, features=list(table.columns),
                    estimator=est, y_test=y_test, scores=scores, auc=float(d.aucs[0]), se=d.se(),
                    ci=d.ci(0, self.cfg.ci_level), fpr=fpr, tpr=tpr))
        return self

    @property
    def summary(self) -> pd.DataFrame:
        """source, feature_set, model, n_features, n_train, n_test, n_test_positive, auc, se, ci."""
        return pd.DataFrame([
            {"source": r.source, "feature_set": r.feature_set, "model": r.model,
             "n_features": len(r.features), "n_train": len(self.split.train), "n_test": len(r.y_test),
             "n_test_positive": int(r.y_test.sum()), "auc": r.auc, "se": r.se, "ci_low": r.ci[0],
             "ci_high": r.ci[1]}
            for r in self.results])

    def best(self) -> ModelResult:
        """Highest test AUC (the first fitted wins a tie)."""
        return max(self.results, key=lambda r: r.auc)

    def importance(self) -> pd.DataFrame:
        """Random forest mean decrease in impurity per feature set, ranked within the set."""
        frames = []
        for r in (r for r in self.results if r.model == "random_forest"):
            frame = pd.DataFrame({"feature_set": r.feature_set, "feature": r.features,
                                  "importance": r.estimator.feature_importances_})
            frame = frame.sort_values("importance", ascending=False, kind="stable")
            frames.append(frame.assign(rank=np.arange(1, len(frame) + 1)))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def compare(a: ModelResult, b: ModelResult, kind: str, *, iterations: int = 0, seed: int = 0,
            ci_level: float = 0.95) -> dict[str, Any]:
    """Paired DeLong test (and, with ``iterations``, paired bootstrap) of two models on the same test cases.

    Args:
        a: the first model's test result.
        b: the second model's, scored on the same test cases.
        kind: the comparison's name (first column of the row).
        iterations: paired stratified bootstrap iterations; 0 = no bootstrap (NaN columns).
        seed: the bootstrap's seed.
        ci_level: level of the bootstrap interval of the difference.

    Returns:
        One table row: models, AUCs, difference, DeLong z and p, bootstrap interval, z and p.
    """
    if not np.array_equal(a.y_test, b.y_test):
        raise ValueError("paired DeLong needs both models scored on the same test cases")
    z, p = delong(a.y_test, np.vstack([a.scores, b.scores])).compare(0, 1)
    row = {"comparison": kind, "model_a": a.name, "model_b": b.name, "auc_a": a.auc, "auc_b": b.auc,
           "difference": a.auc - b.auc, "z": z, "p": p}
    nan = float("nan")
    boot = {"bootstrap_ci_low": nan, "bootstrap_ci_high": nan, "bootstrap_z": nan, "bootstrap_p": nan,
            "bootstrap_iterations": iterations}
    if iterations:
        r = paired_bootstrap(a.y_test, a.scores, b.scores, iterations=iterations, ci_level=ci_level,
                             seed=seed)
        boot |= {"bootstrap_ci_low": r.ci_low, "bootstrap_ci_high": r.ci_high, "bootstrap_z": r.z,
                 "bootstrap_p": r.p}
    return row | boot


def comparisons(analysis: DiagnosisAnalysis) -> list[dict[str, Any]]:
    """RF vs SVM within each feature set, then the best model vs every other model."""
    cfg = analysis.cfg
    settings: dict[str, Any] = {"iterations": cfg.bootstrap_iterations, "seed": cfg.seed,
                                "ci_level": cfg.ci_level}
    by_set: dict[str, dict[str, ModelResult]] = {}
    for r in analysis.results:
        by_set.setdefault(r.feature_set, {})[r.model] = r
    rows = [compare(m["random_forest"], m["svm"], "random_forest vs svm", **settings)
            for m in by_set.values() if len(m) == 2]
    best = analysis.best()
    return rows + [compare(best, r, "best vs other", **settings) for r in analysis.results if r is not best]
