"""Kaplan-Meier groups: out-of-fold scores and predicted classes of a chosen model.

The model is ``km_model`` ([feature set, model]) or, by default, the one with the highest test AUC;
its type is refitted in seeded stratified K-fold over every analysed case, so no case is scored by
a model fitted on it. The class is the model's own (``km_threshold: null``) or score >= threshold.
The random forest's out-of-fold scores of the same feature set are kept for the score plot.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.base import clone, is_classifier
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from mixture_ray.errors import ConfigError
from mixture_ray.stats.diagnosis import DiagnosisAnalysis, ModelResult, folds_for, make_model
from mixture_ray.stats.features import parse_feature_set

if TYPE_CHECKING:
    from mixture_ray.stats.config import StatsConfig


@dataclasses.dataclass(frozen=True)
class KMGroups:
    """The model that splits the Kaplan-Meier curves, how it was chosen, and its out-of-fold output."""

    model: ModelResult
    chosen_by: str
    threshold: float | None
    predicted: pd.Series
    score: pd.Series
    rf_score: pd.Series


def choose_model(cfg: StatsConfig, diagnosis: DiagnosisAnalysis) -> tuple[ModelResult, str]:
    """``cfg.km_model`` among the fitted models, else the best by test AUC; and how it was chosen.

    Raises ConfigError when ``km_model`` names a feature set that was not fitted.
    """
    if not cfg.km_model:
        return diagnosis.best(), "highest test AUC"
    wanted, model = parse_feature_set(cfg.km_model[0]), cfg.km_model[1]
    for r in diagnosis.results:
        if r.model == model and parse_feature_set(r.feature_set) == wanted:
            return r, "km_model"
    fitted = sorted({r.feature_set for r in diagnosis.results})
    raise ConfigError(f"km_model: feature set {cfg.km_model[0]!r} was not fitted (fitted: {fitted}); "
                      "add it to feature_sets or choose one of these")


def km_groups(cfg: StatsConfig, diagnosis: DiagnosisAnalysis, frame: pd.DataFrame,
              labels: pd.Series) -> KMGroups:
    """Out-of-fold class (the KM groups) and scores of the chosen model over every case of ``frame``.

    Args:
        cfg: the run's settings (``km_model``, ``km_threshold``, folds, seed).
        diagnosis: the fitted integrated models.
        frame: every feature column, indexed by case id.
        labels: 0/1 labels indexed by case id.

    Returns:
        The chosen model, its out-of-fold classes and scores, and the random forest's scores.
    """
    chosen, how = choose_model(cfg, diagnosis)
    table = frame[chosen.features]
    out = out_of_fold(cfg, chosen.model, table, labels, cfg.km_threshold)
    rf = out if chosen.model == "random_forest" else out_of_fold(cfg, "random_forest", table, labels)
    return KMGroups(chosen, how, cfg.km_threshold, out["predicted"].rename("predicted"), out["score"],
                    rf["score"])


def out_of_fold(cfg: StatsConfig, model: str, table: pd.DataFrame, labels: pd.Series,
                threshold: float | None = None) -> pd.DataFrame:
    """Score and predicted class of every case from a model never fitted on it (seeded stratified K-fold).

    Args:
        cfg: the run's settings (folds, seed, model settings).
        model: ``random_forest`` or ``svm``.
        table: features indexed by case id.
        labels: 0/1 labels indexed by case id.
        threshold: predicted 1 when the score >= threshold; None = the model's own class (a
            classifier's ``predict``, i.e. positive probability above the negative's; a regressor's
            prediction > 0.5).

    Returns:
        Columns ``score`` (float) and ``predicted`` (0/1), indexed like ``table``.
    """
    y = labels.loc[table.index].to_numpy()
    folds = folds_for(y, cfg.cv_folds)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.seed)
    smallest_train = int(np.bincount(y).min()) * (folds - 1) // folds
    estimator = clone(make_model(model, cfg, calibration_folds=max(2, min(5, smallest_train))))
    if is_classifier(estimator):
        proba = cross_val_predict(estimator, table.to_numpy(), y, cv=cv, method="predict_proba")
        scores, own = proba[:, 1], proba[:, 1] > proba[:, 0]  # exactly predict()'s argmax
    else:
        scores = cross_val_predict(estimator, table.to_numpy(), y, cv=cv).astype(float)
        own = scores > 0.5
    predicted = own if threshold is None else scores >= threshold
    return pd.DataFrame({"score": scores, "predicted": predicted.astype(int)}, index=table.index)


def out_of_fold_class(cfg: StatsConfig, model: str, table: pd.DataFrame, labels: pd.Series,
                      threshold: float | None = None) -> pd.Series:
    """Predicted class of every case from a model never fitted on it (see :func:`out_of_fold`)."""
    return out_of_fold(cfg, model, table, labels, threshold)["predicted"].rename("predicted")
