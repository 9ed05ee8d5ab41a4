"""`mixture-ray stats` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from mixture_ray.config import option, require_positive
from mixture_ray.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class StatsConfig:
    """`mixture-ray stats`: diagnosis and survival statistics from per-case finding frequencies.

    Random forest and SVM per magnification feature set on a seeded, label-stratified split (ROC AUC
    with DeLong 95 % CI, paired DeLong and bootstrap tests), the non-integrated baseline tables,
    Kaplan-Meier and log-rank by out-of-fold predicted class, Cox per finding (univariable,
    multivariable without collinear findings, proportional-hazards check, subgroups); tables
    (CSV + JSON), PNG plots (with the paper's score and correlation figures),
    report.html and summary.json, then _SUCCESS. Runs on the driver (no Ray).
    """

    frequencies: Path = option(
        "per-case frequency table (CSV/Parquet: case_id + '<mag>x/<finding>' columns) or a folder "
        "holding frequencies.parquet|csv"
    )
    clinical: Path = option("clinical CSV: case id, binary label, follow-up time, event (columns below)")
    out_dir: Path = option("folder for the tables, plots, report.html, summary.json and _SUCCESS")
    feature_sets: tuple[str, ...] = option(
        "'+'-joined magnification sets the diagnosis is predicted from; sets whose magnifications are "
        "absent from the table are skipped with a note",
        ["2.5x", "5x", "20x", "5x+20x", "2.5x+5x+20x"],
    )
    baseline_dir: Path | None = option(
        "folder of non-integrated baseline tables k<k>.csv|parquet (case_id + '<mag>x/c<cluster>')", None
    )
    baseline_ks: tuple[int, ...] = option(
        "baseline k values used (files missing are noted); empty = every k<k> file found",
        [4, 8, 10, 20, 30, 50, 80],
    )
    case_id_column: str = option("clinical column of the case id", "case_id")
    label_column: str = option("clinical column of the binary diagnosis label", "label")
    positive_label: str = option(
        "label value of the positive class for text labels; empty = labels are 0/1", ""
    )
    class_names: tuple[str, ...] = option(
        "[negative, positive] names of the two diagnoses shown in plots, tables and sentences (e.g. "
        "[non-UIP, UIP]); empty = positive_label and the other label value, else class_name_column",
        [],
    )
    class_name_column: str = option(
        "clinical column naming each case's diagnosis (e.g. UIP / non-UIP): with 0/1 labels and no "
        "class_names, the names its values give each label; a column absent or empty = 'positive' / "
        "'negative'", "diagnosis"
    )
    time_column: str = option("clinical column of follow-up time (>= 0)", "time")
    time_unit: str = option(
        "unit of the follow-up time (e.g. months), shown on the Kaplan-Meier axis and in the report; "
        "empty = the time column's name only", ""
    )
    event_column: str = option("clinical column of the event indicator (1 event, 0 censored)", "event")
    covariates: tuple[str, ...] = option("numeric clinical columns added to the multivariable Cox model", [])
    subgroup_column: str = option(
        "clinical column for subgroup Cox analyses (e.g. diagnosis); empty = none", ""
    )
    missing_clinical: Literal["warn", "error"] = option(
        "frequency-table cases with no clinical row: warn (left out, listed) or error", "warn"
    )
    test_fraction: float = option("share of cases in the label-stratified test split", 0.3)
    split: Path | None = option(
        "case split CSV (case_id, split = train/test; `mixture-ray split` writes one) used instead of "
        "drawing the split here: pass the file the clustering was fitted with (`cluster.fit_split`) for a "
        "fold-nested run; null = a seeded label-stratified split of test_fraction", None
    )
    cv_folds: int = option("stratified folds of the out-of-fold predicted class (Kaplan-Meier groups)", 5)
    rf_trees: int = option("random forest trees", 500)
    forest: Literal["classifier", "regressor"] = option(
        "random forest kind: classifier (score = predicted probability) or regressor on the 0/1 label "
        "(score = the regression prediction, as the MIXTURE paper); importance is impurity-based either way",
        "classifier",
    )
    svm_c: float = option("SVM (RBF kernel, standardised features) regularisation C", 1.0)
    ci_level: float = option("confidence level of every interval", 0.95)
    bootstrap_iterations: int = option(
        "iterations of the paired stratified bootstrap AUC comparison reported next to each DeLong test "
        "(0 = no bootstrap)", 5000
    )
    km_model: tuple[str, ...] = option(
        "[feature_set, model] whose out-of-fold predicted class splits the Kaplan-Meier curves "
        "(e.g. [5x, random_forest]); empty = the model with the highest test AUC",
        [],
    )
    km_threshold: float | None = option(
        "Kaplan-Meier groups: predicted positive when the out-of-fold score >= this; "
        "null = the model's own predicted class (score > 0.5)", None
    )
    horizon: float = option("survival is reported at this time (unit of the time column)", 5.0)
    cox_feature_set: str = option("'+'-joined magnifications of the Cox findings; empty = all", "")
    hr_per: float = option(
        "hazard ratios are reported per this change in frequency (0.1 = 10 percentage points); "
        "coefficients per unit frequency are kept too", 0.1
    )
    reference_findings: tuple[str, ...] = option(
        "columns ('<mag>x/<finding>') left out of the multivariable Cox model as the reference of their "
        "magnification (frequencies sum to 1); a magnification not listed drops its most common finding",
        [],
    )
    max_correlation: float = option("multivariable Cox: drop a finding while a pair has |r| above this", 0.8)
    max_vif: float = option("multivariable Cox: then drop the finding of highest VIF while above this", 5.0)
    min_events: int = option("Cox models (and subgroup levels) with fewer events are skipped", 10)
    cox_penalizer: float = option("lifelines CoxPHFitter penalizer (0 = plain partial likelihood)", 0.0)
    n_jobs: int = option("random forest threads (-1 = all cores)", 1)
    seed: int = option("random seed (split, forests, SVM, folds)", 0)

    def validate(self) -> None:
        """Check counts, fractions and thresholds, the feature sets, and distinct column names."""
        from mixture_ray.stats.features import parse_feature_set

        require_positive(self, "cv_folds", "rf_trees", "svm_c", "horizon", "hr_per", "min_events")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds: must be >= 2 (got {self.cv_folds})")
        for name in ("test_fraction", "ci_level"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: must be in (0, 1) (got {getattr(self, name)})")
        if not 0.0 < self.max_correlation <= 1.0:
            raise ConfigError(f"max_correlation: must be in (0, 1] (got {self.max_correlation})")
        if self.max_vif <= 1.0:
            raise ConfigError(f"max_vif: must be > 1 (got {self.max_vif})")
        if self.bootstrap_iterations < 0 or self.bootstrap_iterations == 1:
            raise ConfigError(f"bootstrap_iterations: must be 0 (off) or >= 2 "
                              f"(got {self.bootstrap_iterations})")
        self._validate_km()
        if self.cox_penalizer < 0 or self.n_jobs == 0:
            raise ConfigError("cox_penalizer: must be >= 0; n_jobs: must not be 0")
        if not self.feature_sets:
            raise ConfigError("feature_sets: give at least one magnification set, e.g. [20x, 5x+20x]")
        sets = [("feature_sets", s) for s in self.feature_sets]
        if self.cox_feature_set:
            sets.append(("cox_feature_set", self.cox_feature_set))
        for key, text in sets:
            try:
                parse_feature_set(text)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from exc
        if any(k < 1 for k in self.baseline_ks):
            raise ConfigError(f"baseline_ks: k must be >= 1 (got {list(self.baseline_ks)})")
        columns = [self.case_id_column, self.label_column, self.time_column, self.event_column]
        if any(not c.strip() for c in columns) or len(set(columns)) < 4:
            raise ConfigError(f"case_id_column/label_column/time_column/event_column: give four distinct "
                              f"column names (got {columns})")
        if self.class_names and (len(self.class_names) != 2 or len({n.strip() for n in self.class_names}) != 2
                                 or not all(n.strip() for n in self.class_names)):
            raise ConfigError(f"class_names: give two distinct names [negative, positive] or none "
                              f"(got {list(self.class_names)})")
        clash = sorted(set(self.covariates) & set(columns))
        if clash:
            raise ConfigError(f"covariates: {clash} are already the id, label, time or event column")

    def _validate_km(self) -> None:
        from mixture_ray.stats.diagnosis import MODELS
        from mixture_ray.stats.features import parse_feature_set

        if self.km_model:
            if len(self.km_model) != 2 or self.km_model[1] not in MODELS:
                raise ConfigError(f"km_model: give [feature_set, model] with model one of {list(MODELS)} "
                                  f"(got {list(self.km_model)})")
            try:
                parse_feature_set(self.km_model[0])
            except ValueError as exc:
                raise ConfigError(f"km_model: {exc}") from exc
        if self.km_threshold is not None and not 0.0 <= self.km_threshold <= 1.0:
            raise ConfigError(f"km_threshold: must be in [0, 1] or null (got {self.km_threshold})")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """`mixture-ray split`: draw the train/test case split once, for a fold-nested run.

    The file (``case_id,split``) is then given to ``cluster.fit_split`` (k-means fitted on the training
    cases' tiles only, every tile assigned) and to ``stats.split`` (the diagnosis models fitted on the
    same training cases), so no test case shapes the clusters, the baseline or the models.
    """

    clinical: Path = option("clinical CSV: one row per case with its id and binary label")
    out: Path = option("split CSV to write (case_id, split = train/test)")
    case_id_column: str = option("clinical column of the case id", "case_id")
    label_column: str = option("clinical column of the binary diagnosis label", "label")
    positive_label: str = option(
        "label value of the positive class for text labels; empty = labels are 0/1", ""
    )
    test_fraction: float = option("share of cases in the label-stratified test part", 0.3)
    seed: int = option("random seed of the split", 0)

    def validate(self) -> None:
        """Check the test fraction and two distinct column names."""
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction: must be in (0, 1) (got {self.test_fraction})")
        if self.case_id_column.strip() == self.label_column.strip() or not self.label_column.strip():
            raise ConfigError(f"case_id_column/label_column: give two distinct column names "
                              f"(got {self.case_id_column!r}, {self.label_column!r})")
