"""Every analysis of a stats run, on the driver: inputs checked, diagnosis, baseline, survival, Cox."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pandas as pd

from mixture_ray.errors import ConfigError
from mixture_ray.stats.baseline import load_baselines, run_baseline
from mixture_ray.stats.clinical import ClinicalData, load_clinical
from mixture_ray.stats.config import StatsConfig
from mixture_ray.stats.cox import CoxAnalysis
from mixture_ray.stats.diagnosis import (
    DiagnosisAnalysis,
    ModelResult,
    comparisons,
)
from mixture_ray.stats.errors import StatsInputError
from mixture_ray.stats.features import (
    FrequencyTable,
    load_frequencies,
    parse_feature_set,
    row_sum_note,
    select_feature_sets,
)
from mixture_ray.stats.km import KMGroups, km_groups
from mixture_ray.stats.survival import SurvivalByGroup
from mixture_ray.store.case_split import Split, read_split, split_cases

if TYPE_CHECKING:
    from pathlib import Path


@dataclasses.dataclass
class Analyses:
    """The fitted analyses of one run (what the tables, plots and report are made from)."""

    cfg: StatsConfig
    frequencies: FrequencyTable
    clinical: ClinicalData
    cases: list[str]
    split: Split
    diagnosis: DiagnosisAnalysis
    comparisons: list[dict[str, Any]]
    baseline: DiagnosisAnalysis | None
    baseline_comparison: dict[str, Any] | None
    predicted: pd.Series
    km: KMGroups
    survival: SurvivalByGroup
    cox: CoxAnalysis
    notes: list[str]

    @property
    def best(self) -> ModelResult:
        """The diagnosis model with the highest test AUC."""
        return self.diagnosis.best()

    @property
    def best_baseline(self) -> ModelResult | None:
        """The baseline model with the highest test AUC, or None without a baseline."""
        return self.baseline.best() if self.baseline is not None else None


def given_split(path: Path, labels: pd.Series) -> Split:
    """The split file's parts restricted to the analysed cases; every analysed case must be in it."""
    split = read_split(path)
    missing = split.missing(labels.index)
    if missing:
        raise StatsInputError(f"split: {path} does not list {len(missing)} analysed cases "
                              f"({', '.join(missing[:10])}); give the split the clustering was fitted with, "
                              f"or write a new one with `mixture-ray split`")
    split = split.restricted(labels.index)
    for part, ids in (("train", split.train), ("test", split.test)):
        counts = labels.loc[list(ids)].value_counts()
        if len(counts) < 2:
            raise StatsInputError(f"split: the {part} cases of {path} hold one class only "
                                  f"({counts.to_dict()}); the AUC needs both")
    return split


def analyse(cfg: StatsConfig) -> Analyses:
    """Read and check the inputs, then run every analysis (raises on bad input, naming it)."""
    freq = load_frequencies(cfg.frequencies)
    notes = [n for n in (row_sum_note(freq),) if n]
    if freq.ignored:
        notes.append(f"{freq.path}: columns not named '<mag>x/<finding>' ignored: {list(freq.ignored)}")
    clinical = load_clinical(cfg.clinical, list(freq.frame.index), cfg)
    notes += clinical.notes
    cases = [c for c in freq.frame.index if c in clinical.frame.index]
    frame, clin = freq.frame.loc[cases], clinical.frame.loc[cases]
    unknown = sorted(set(cfg.reference_findings) - set(freq.frame.columns))
    if unknown:
        raise ConfigError(f"reference_findings: {unknown} are not columns of {freq.path}")
    sets, skipped = select_feature_sets(freq, cfg.feature_sets)
    notes += skipped
    labels = clin["label"]
    split = (split_cases(labels, cfg.test_fraction, cfg.seed) if cfg.split is None
             else given_split(cfg.split, labels))
    diagnosis = DiagnosisAnalysis(cfg, split).fit({n: frame[c] for n, c in sets.items()}, labels)
    best = diagnosis.best()
    rows = comparisons(diagnosis)
    baseline, baseline_row = None, None
    if cfg.baseline_dir is not None:
        tables, more = load_baselines(cfg, cases)
        notes += more
        baseline, baseline_row = run_baseline(cfg, split, labels, tables, best)
        rows.append(baseline_row)
    km = km_groups(cfg, diagnosis, frame, labels)
    predicted = km.predicted
    names = {1: f"predicted {clinical.positive}", 0: f"predicted {clinical.negative}"}
    survival = SurvivalByGroup(cfg.horizon, cfg.ci_level)
    survival.fit(clin["time"], clin["event"], predicted.map(names))
    if cfg.cox_feature_set:
        cox_columns = freq.columns_for(parse_feature_set(cfg.cox_feature_set))
        if not cox_columns:
            raise ConfigError(f"cox_feature_set: {cfg.cox_feature_set!r} selects no column of {freq.path}")
    else:
        cox_columns = list(frame.columns)
    cox = CoxAnalysis(cfg, frame[cox_columns], freq.magnification, clin).fit()
    notes += cox.notes
    return Analyses(cfg, freq, clinical, cases, split, diagnosis, rows, baseline, baseline_row, predicted,
                    km, survival, cox, notes)
