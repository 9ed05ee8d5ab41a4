"""The non-integrated baseline: the same classifiers on per-case k-means cluster frequencies.

One table per k (``k<k>.csv|parquet``: case_id + ``<mag>x/c<cluster>``), every magnification column
used, fitted and tested on exactly the integrated run's split so the paired DeLong and bootstrap
tests apply.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.stats.diagnosis import DiagnosisAnalysis, ModelResult, compare
from mixture_ray.stats.errors import StatsInputError
from mixture_ray.stats.features import load_frequencies

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from mixture_ray.stats.config import StatsConfig
    from mixture_ray.store.case_split import Split

_BASELINE = re.compile(r"^k(\d+)\.(csv|parquet)$")


def find_baselines(folder: Path, ks: Sequence[int]) -> tuple[dict[int, Path], list[str]]:
    """``k<k>.parquet`` (preferred) or ``k<k>.csv`` per k in ``folder``; notes for missing ks.

    Empty ``ks`` = every such file found. Raises when none of the wanted files exists.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StatsInputError(f"baseline_dir {folder}: not a folder")
    found: dict[int, Path] = {}
    for child in sorted(folder.iterdir(), key=lambda p: p.suffix != ".parquet"):
        match = _BASELINE.match(child.name)
        if match and int(match.group(1)) not in found:
            found[int(match.group(1))] = child
    wanted = sorted(set(ks)) if ks else sorted(found)
    files = {k: found[k] for k in wanted if k in found}
    missing = [k for k in wanted if k not in found]
    if not files:
        present = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        raise StatsInputError(
            f"baseline_dir {folder}: no k<k>.csv or k<k>.parquet file for k in {wanted}; "
            f"folder holds: {present}"
        )
    notes = [f"baseline k={k}: no k{k}.csv or k{k}.parquet in {folder}; skipped" for k in missing]
    return files, notes


def load_baselines(cfg: StatsConfig, cases: Sequence[str]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """``k=<k>`` -> feature table of the analysed cases; notes for the ks without a file."""
    assert cfg.baseline_dir is not None
    files, notes = find_baselines(cfg.baseline_dir, cfg.baseline_ks)
    tables = {}
    for k, path in files.items():
        table = load_frequencies(path, "case_id")
        missing = [c for c in cases if c not in table.frame.index]
        if missing:
            shown = ", ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise StatsInputError(
                f"{path}: {len(missing)} analysed case(s) have no row: {shown}; "
                "rerun the cases stage with the baseline for every case"
            )
        tables[f"k={k}"] = table.frame.loc[list(cases)]
    return tables, notes


def run_baseline(
    cfg: StatsConfig,
    split: Split,
    labels: pd.Series,
    tables: dict[str, pd.DataFrame],
    best_integrated: ModelResult,
) -> tuple[DiagnosisAnalysis, dict[str, Any]]:
    """Fit the baseline models; compare the best baseline (by test AUC) with the best integrated model."""
    analysis = DiagnosisAnalysis(cfg, split, source="baseline").fit(tables, labels)
    row = compare(best_integrated, analysis.best(), "best integrated vs best baseline",
                  iterations=cfg.bootstrap_iterations, seed=cfg.seed, ci_level=cfg.ci_level)
    return analysis, row
