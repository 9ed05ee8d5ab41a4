"""`mixture-ray cases`: prediction stores -> per-case counts and frequencies (+ baseline tables).

Output folder::

    out_dir/counts.csv|.parquet        case_id + <mag>x/<finding> tile counts (all findings)
    out_dir/frequencies.csv|.parquet   the same normalised per magnification, excluded findings dropped
    out_dir/baseline/k<k>.csv|.parquet nearest-centroid cluster frequencies (when clusters are given)
    out_dir/_SUCCESS                   written last, with the run's summary
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mixture_ray.cases.baseline import baseline_tables
from mixture_ray.cases.frequencies import case_counts, combine, frequencies
from mixture_ray.errors import ConfigError
from mixture_ray.locations import recorded_address
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.predictions import load_predictions
from mixture_ray.store.schemas import magnification_label

if TYPE_CHECKING:
    from mixture_ray.cases.config import CasesConfig
    from mixture_ray.locations import Uri

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CasesReport(Report):
    """The per-case tables written and cases lacking tiles at a magnification."""

    out_dir: Path
    counts: pd.DataFrame
    frequencies: pd.DataFrame
    baseline: dict[int, pd.DataFrame]
    empty: list[str]
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """Cases and frequency columns written, and groups without a counted tile."""
        lines = [f"cases {self.out_dir}: {len(self.frequencies)} cases x {self.frequencies.shape[1]} "
                 f"frequency columns; baseline k {sorted(self.baseline)}"]
        if self.empty:
            lines.append(f"  {len(self.empty)} case/magnification groups had no counted tile: "
                         f"{self.empty[:5]}")
        return "\n".join(lines)


def write_table(frame: pd.DataFrame, base: Path) -> None:
    """``frame`` (case_id index) as ``base``.csv and ``base``.parquet."""
    base.parent.mkdir(parents=True, exist_ok=True)
    frame.reset_index().to_csv(base.with_suffix(".csv"), index=False)
    frame.reset_index().to_parquet(base.with_suffix(".parquet"), index=False)


def prediction_counts(stores: tuple[Path | Uri, ...]) -> pd.DataFrame:
    """Counts per case and finding of every prediction store, magnifications side by side."""
    tables = []
    for store in stores:
        predictions = load_predictions(store)
        if predictions.magnification is None:
            raise ConfigError(f"predictions: {store} has no magnification; classify with --magnification")
        rows = predictions.rows
        tables.append(case_counts(rows, rows["finding"], predictions.classes,
                                  magnification_label(predictions.magnification)))
    return combine(tables)


def run(cfg: CasesConfig) -> CasesReport:
    """Write counts, frequencies and (optionally) baseline tables; _SUCCESS last.

    Args:
        cfg: the prediction stores, the columns to exclude and the optional baseline inputs.

    Returns:
        The tables written and the case/magnification groups without a counted tile.
    """
    out_dir = Path(cfg.out_dir)
    settings = {"predictions": [recorded_address(p) for p in cfg.predictions],
                "exclude": list(cfg.exclude), "baseline_ks": list(cfg.baseline_ks)}
    folder = StageFolder(out_dir, stage="cases", item_column=None)
    folder.prepare(settings)
    counts = prediction_counts(cfg.predictions)
    unknown = [e for e in cfg.exclude if e not in counts.columns]
    if unknown:
        log.warning("exclude: %s not among the columns; nothing dropped for them", unknown)
    freq, empty = frequencies(counts, cfg.exclude)
    if empty:
        log.warning("%d case/magnification groups have no counted tile (frequencies 0): %s",
                    len(empty), empty[:10])
    write_table(counts, out_dir / "counts")
    write_table(freq, out_dir / "frequencies")
    baseline: dict[int, pd.DataFrame] = {}
    if cfg.clusters is not None:
        baseline = baseline_tables(cfg.embeddings, cfg.clusters, cfg.baseline_ks)
        for k, table in baseline.items():
            write_table(table, out_dir / "baseline" / f"k{k}")
    folder.finish(requested=list(counts.index.astype(str)), failures=[],
                  extra={"cases": len(counts), "columns": list(freq.columns), "empty_groups": empty,
                               "excluded": list(cfg.exclude), "baseline_ks": sorted(baseline)})
    return CasesReport(out_dir, counts, freq, baseline, empty)
