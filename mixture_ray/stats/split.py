"""`mixture-ray split`: the seeded, label-stratified train/test split of a cohort's cases, as a file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mixture_ray.report import Failure, Report
from mixture_ray.stats.errors import ClinicalTableError, StatsInputError
from mixture_ray.store.case_split import split_cases, write_split

if TYPE_CHECKING:
    from mixture_ray.stats.config import SplitConfig


@dataclasses.dataclass(frozen=True)
class SplitReport(Report):
    """Where the split went and how many cases each part holds."""

    out: Path
    n_train: int
    n_test: int
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """One line: the file and the two part sizes."""
        return (f"case split written to {self.out}: {self.n_train} training and {self.n_test} test cases; "
                f"give it to cluster.fit_split and stats.split for a fold-nested run")


def case_labels(cfg: SplitConfig) -> pd.Series:
    """The 0/1 label of every case of ``cfg.clinical``, indexed by case id in file order.

    Raises:
        ClinicalTableError: a column is missing, or rows have an empty or repeated id or a label that is
            neither 0/1 nor (with ``positive_label``) a text label; the message names the rows.
    """
    path = Path(cfg.clinical)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise StatsInputError(f"clinical table {path}: cannot read it as CSV ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    for key in ("case_id_column", "label_column"):
        column = getattr(cfg, key)
        if column not in raw.columns:
            present = ", ".join(raw.columns)
            raise ClinicalTableError(path, [f"column {column!r} is missing; columns present: {present}; "
                                            f"set {key} to the column that holds it"])
    ids = raw[cfg.case_id_column].str.strip()
    values = raw[cfg.label_column].str.strip()
    labels = (values == cfg.positive_label.strip()).astype(int) if cfg.positive_label.strip() else None
    bad_ids = ((ids == "") | ids.duplicated(keep=False)).to_numpy()
    problems = []
    for row, (case, value, bad_id) in enumerate(zip(ids, values, bad_ids, strict=True), start=1):
        if bad_id:
            problems.append(f"row {row} (case {case!r}): the case id is empty or repeated")
        elif labels is None and value not in ("0", "1"):
            problems.append(f"row {row} (case {case!r}): label {value!r} is not 0 or 1; set positive_label "
                            f"for text labels")
    if problems:
        raise ClinicalTableError(path, problems)
    return pd.Series((labels if labels is not None else values.astype(int)).to_numpy(), index=ids.to_numpy())


def run_split(cfg: SplitConfig) -> SplitReport:
    """Draw the split of ``cfg.clinical`` and write it to ``cfg.out``.

    Args:
        cfg: the clinical table, its id and label columns, the test share and the seed.

    Returns:
        The file written and the part sizes.
    """
    split = split_cases(case_labels(cfg), cfg.test_fraction, cfg.seed)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_split(out, split)
    return SplitReport(out, len(split.train), len(split.test))
