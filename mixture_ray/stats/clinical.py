"""The clinical table: read, check every row, report every problem at once (file, rows, case ids).

Cases in the clinical table must have tiles (appear in the frequency table). Cases in the
frequency table without a clinical row are left out with a note (``missing_clinical: warn``, the
default) or make the run fail (``missing_clinical: error``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixture_ray.stats.errors import ClinicalTableError, StatsInputError, rows_text

if TYPE_CHECKING:
    from mixture_ray.stats.config import StatsConfig

_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


@dataclasses.dataclass(frozen=True)
class ClinicalData:
    """Checked clinical rows indexed by case id.

    Columns: ``label`` (0/1), ``time``, ``event`` (0/1), the covariates (float) and ``subgroup``
    (text, empty = unknown) when configured.
    """

    frame: pd.DataFrame
    positive: str
    negative: str
    excluded_cases: tuple[str, ...]
    notes: tuple[str, ...]


def load_clinical(path: Path, case_ids: Sequence[str], cfg: StatsConfig) -> ClinicalData:
    """Read ``path`` and check it against the frequency table's ``case_ids``.

    Raises :class:`ClinicalTableError` listing every problem.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise StatsInputError(f"clinical table {path}: cannot read it as CSV ({exc})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    cells = raw.apply(lambda col: col.str.strip())
    problems: list[str] = []
    names = {"case_id_column": cfg.case_id_column, "label_column": cfg.label_column,
             "time_column": cfg.time_column, "event_column": cfg.event_column}
    wanted = [*names.items(), *(("covariates", c) for c in cfg.covariates)]
    if cfg.subgroup_column:
        wanted.append(("subgroup_column", cfg.subgroup_column))
    present = ", ".join(raw.columns)
    for key, column in wanted:
        if column not in cells.columns:
            problems.append(f"{path}: column {column!r} is missing; columns present: {present}; "
                            f"set {key} to the column that holds it")
    if cells.empty:
        problems.append(f"{path}: the table has no data rows; give one row per case")
    ids = cells[cfg.case_id_column].tolist() if cfg.case_id_column in cells else ["?"] * len(cells)

    def flag(mask: np.ndarray, what: str) -> None:
        rows = np.flatnonzero(mask)
        if rows.size:
            where = rows_text([int(r) + 1 for r in rows], [ids[r] for r in rows])
            problems.append(f"{path}: {where}: {what}")

    if cfg.case_id_column in cells:
        col = cells[cfg.case_id_column]
        flag((col == "").to_numpy(), "case id is empty; give every row its case id")
        flag((col.duplicated(keep=False) & (col != "")).to_numpy(),
             "case id appears more than once; keep one row per case")
        flag((~col.isin(set(case_ids)) & (col != "")).to_numpy(),
             "case has no tiles (not in the frequency table); remove the row or add the case's slides")
    label, positive, negative = _labels(cells, cfg, flag, problems, path)
    time = _numbers(cells, cfg.time_column, flag, "follow-up time", allow_negative=False)
    event = _binary(cells, cfg.event_column, flag, "event", "give 1 (event observed) or 0 (censored)")
    covariates = {c: _numbers(cells, c, flag, f"covariate {c!r}", allow_negative=True)
                  for c in cfg.covariates}
    orphans = sorted(set(case_ids) - set(ids))
    notes = []
    if orphans:
        text = f"{len(orphans)} case(s) of the frequency table have no row in {path}: {_ids(orphans)}"
        if cfg.missing_clinical == "error":
            problems.append(f"{text}; add their rows, or set missing_clinical=warn to leave them out")
        else:
            notes.append(f"{text}; left out of every analysis (missing_clinical=warn)")
    if problems:
        raise ClinicalTableError(path, problems)
    positive, negative = _class_names(cells, cfg, label, positive, negative)
    frame = pd.DataFrame({"label": label, "time": time, "event": event, **covariates},
                         index=pd.Index(ids, name="case_id"))
    if cfg.subgroup_column:
        frame["subgroup"] = cells[cfg.subgroup_column].to_numpy()
        blank = int((frame["subgroup"] == "").sum())
        if blank:
            notes.append(f"{blank} case(s) have no {cfg.subgroup_column!r} value; "
                         "left out of subgroup analyses")
    return ClinicalData(frame.astype({"label": int, "event": int}), positive, negative, tuple(orphans),
                        tuple(notes))


Flag = Callable[[np.ndarray, str], None]


def _ids(ids: Sequence[str], limit: int = 50) -> str:
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(repr(i) for i in ids[:limit]) + more


def _labels(cells: pd.DataFrame, cfg: StatsConfig, flag: Flag, problems: list[str],
            path: Path) -> tuple[np.ndarray, str, str]:
    column = cfg.label_column
    empty = np.zeros(len(cells), dtype=int)
    if column not in cells:
        return empty, "1", "0"
    values = cells[column]
    flag((values == "").to_numpy(), f"label ({column!r}) is missing; give every case its label")
    given = values[values != ""]
    if cfg.positive_label:
        others = sorted(set(given) - {cfg.positive_label})
        valid = values != ""
        if cfg.positive_label not in set(given):
            valid[:] = False  # reported here; no "one class" problem on top
            problems.append(f"{path}: positive_label {cfg.positive_label!r} does not occur in column "
                            f"{column!r}; labels present: {sorted(set(given))}")
        elif len(others) > 1:
            problems.append(f"{path}: label column {column!r} has more than two classes "
                            f"({[cfg.positive_label, *others]}); the diagnosis must be binary")
        label = (values == cfg.positive_label).to_numpy().astype(int)
        positive, negative = cfg.positive_label, (others[0] if others else "other")
    else:
        valid = values.isin(set(_BINARY))
        flag((~valid & (values != "")).to_numpy(),
             f"label ({column!r}) is not 0 or 1 (values present: {sorted(set(given))[:10]}); "
             "give 0/1 labels, or set positive_label to the value of the positive class")
        label = values.map(_BINARY).fillna(0).to_numpy().astype(int)
        positive, negative = "1", "0"
    classes = set(label[valid.to_numpy()])
    if len(classes) == 1:
        only = positive if classes == {1} else negative
        problems.append(f"{path}: label column {column!r} has only one class ({only!r} for every case); "
                        "the diagnosis model needs cases of both classes")
    return label, positive, negative


def _class_names(cells: pd.DataFrame, cfg: StatsConfig, label: np.ndarray, positive: str,
                 negative: str) -> tuple[str, str]:
    """(positive, negative) display names: ``class_names``, the text labels, or ``class_name_column``.

    With 0/1 labels the name column names a class when every case of it with a name has the same
    one, not used by the other class ("not <other>" when only the other class is named so).
    """
    if cfg.class_names:
        return cfg.class_names[1].strip(), cfg.class_names[0].strip()
    if cfg.positive_label:
        return positive, negative
    column = cfg.class_name_column
    if column and column != cfg.label_column and column in cells:
        names = cells[column].to_numpy()
        named = names != ""
        pos, neg = set(names[named & (label == 1)]), set(names[named & (label == 0)])
        one_pos = next(iter(pos)) if len(pos) == 1 and not pos & neg else None
        one_neg = next(iter(neg)) if len(neg) == 1 and not pos & neg else None
        if one_pos is not None or one_neg is not None:
            return one_pos or f"not {one_neg}", one_neg or f"not {one_pos}"
    return "positive", "negative"


def _numbers(cells: pd.DataFrame, column: str, flag: Flag, what: str, *, allow_negative: bool) -> np.ndarray:
    if column not in cells:
        return np.zeros(len(cells))
    text = cells[column]
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    missing = (text == "").to_numpy()
    flag(missing, f"{what} ({column!r}) is missing; give a number for every case")
    bad = ~missing & ~np.isfinite(values)
    shown = sorted(set(text[bad]))[:10]
    flag(bad, f"{what} ({column!r}) is not a number (got {shown}); give a plain number")
    if not allow_negative:
        flag(np.isfinite(values) & (values < 0), f"{what} ({column!r}) is negative; give a time >= 0")
    return np.where(np.isfinite(values), values, math.nan)


def _binary(cells: pd.DataFrame, column: str, flag: Flag, what: str, fix: str) -> np.ndarray:
    if column not in cells:
        return np.zeros(len(cells), dtype=int)
    text = cells[column]
    missing = (text == "").to_numpy()
    flag(missing, f"{what} ({column!r}) is missing; {fix}")
    bad = ~missing & ~text.isin(set(_BINARY)).to_numpy()
    flag(bad, f"{what} ({column!r}) is not 0 or 1 (got {sorted(set(text[bad]))[:10]}); {fix}")
    return text.map(_BINARY).fillna(0).to_numpy().astype(int)
