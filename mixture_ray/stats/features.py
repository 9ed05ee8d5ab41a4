"""Per-case frequency tables: reading, ``<mag>x/<finding>`` columns and magnification feature sets."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixture_ray.errors import StageIncompleteError
from mixture_ray.stats.errors import StatsInputError, rows_text
from mixture_ray.store.folder import SUCCESS
from mixture_ray.store.schemas import magnification_label

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_MAG = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX]?\s*$")


def parse_magnification(token: str) -> float:
    """``"20x"`` / ``"2.5x"`` / ``"20"`` -> 20.0 / 2.5 / 20.0; ValueError otherwise."""
    match = _MAG.match(token)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{token!r} is not a magnification like '20x' or '2.5x'")
    return float(match.group(1))


def parse_feature_set(text: str) -> tuple[float, ...]:
    """``"5x+20x"`` -> (5.0, 20.0); ValueError for an empty set or a bad magnification."""
    tokens = [t for t in text.split("+") if t.strip()]
    if not tokens:
        raise ValueError(f"{text!r} names no magnification")
    return tuple(sorted({parse_magnification(t) for t in tokens}))


@dataclasses.dataclass(frozen=True)
class FrequencyTable:
    """Feature columns of a per-case table, indexed by case id (str)."""

    path: Path
    frame: pd.DataFrame
    magnification: dict[str, float]
    ignored: tuple[str, ...] = ()

    @property
    def magnifications(self) -> tuple[float, ...]:
        """The distinct magnifications of the feature columns, ascending."""
        return tuple(sorted(set(self.magnification.values())))

    def columns_for(self, mags: Iterable[float]) -> list[str]:
        """Feature columns whose magnification is one of ``mags`` (table order)."""
        wanted = set(mags)
        return [c for c, m in self.magnification.items() if m in wanted]


def read_table(path: Path, case_id_column: str) -> pd.DataFrame:
    """CSV or Parquet (by suffix) with the case id column read as text."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype={case_id_column: str}, keep_default_na=False, na_values=[""])
        else:
            raise StatsInputError(f"{path}: expected a .csv or .parquet table")
    except (OSError, ValueError) as exc:
        raise StatsInputError(f"{path}: cannot read the table ({exc})") from exc
    if case_id_column not in frame.columns:
        raise StatsInputError(
            f"{path}: no {case_id_column!r} column; columns present: {', '.join(map(str, frame.columns))}"
        )
    frame[case_id_column] = frame[case_id_column].astype(str).str.strip()
    return frame


def resolve_table(path: Path, stem: str) -> Path:
    """``path`` itself, or ``<path>/<stem>.parquet|.csv`` when ``path`` is a stage folder.

    A stage folder must carry the stage's ``_SUCCESS`` marker: partial output is refused.
    """
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise StatsInputError(f"{path}: file not found")
        return path
    if not (path / SUCCESS).exists():
        raise StageIncompleteError(f"{path}: no _SUCCESS marker (the cases stage did not finish); rerun it, "
                                   f"or give the {stem} file itself")
    for suffix in (".parquet", ".csv"):
        if (path / f"{stem}{suffix}").exists():
            return path / f"{stem}{suffix}"
    raise StatsInputError(f"{path}: folder holds no {stem}.parquet or {stem}.csv")


def load_frequencies(path: Path, case_id_column: str = "case_id") -> FrequencyTable:
    """Read and check a wide per-case table: unique case ids, numeric values >= 0, no gaps."""
    path = resolve_table(path, "frequencies")
    raw = read_table(path, case_id_column)
    mags: dict[str, float] = {}
    ignored = []
    for column in raw.columns:
        prefix, sep, finding = str(column).partition("/")
        try:
            if column == case_id_column or not sep or not finding:
                raise ValueError(column)
            mags[str(column)] = parse_magnification(prefix)
        except ValueError:
            if column != case_id_column:
                ignored.append(str(column))
    if not mags:
        raise StatsInputError(
            f"{path}: no feature columns named '<mag>x/<finding>' (e.g. '20x/dense_fibrosis'); "
            f"columns present: {', '.join(map(str, raw.columns))}"
        )
    problems = _check_values(raw, list(mags), case_id_column)
    if problems:
        raise StatsInputError(f"{path}: " + "; ".join(problems))
    frame = raw.set_index(case_id_column)[list(mags)].astype(float)
    frame.index.name = "case_id"
    return FrequencyTable(path, frame, mags, tuple(ignored))


def _check_values(raw: pd.DataFrame, columns: Sequence[str], id_column: str) -> list[str]:
    problems = []
    ids = raw[id_column].tolist()
    dup = raw[id_column].duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        problems.append(
            f"duplicate case ids at data {rows_text([int(r) + 1 for r in rows], [ids[r] for r in rows])}"
        )
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(raw[c])]
    if text:
        problems.append(f"columns {text} are not numeric")
    numeric = raw[[c for c in columns if c not in text]].to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(numeric).all(axis=1) | (numeric < 0).any(axis=1))
    if bad.size:
        problems.append(
            f"missing, infinite or negative values at data "
            f"{rows_text([int(r) + 1 for r in bad], [ids[r] for r in bad])}"
        )
    return problems


def row_sum_note(table: FrequencyTable, tolerance: float = 1e-3) -> str | None:
    """A note when rows do not sum to 1 within a magnification (frequencies expected)."""
    off = []
    for mag in table.magnifications:
        sums = table.frame[table.columns_for([mag])].sum(axis=1)
        n = int((np.abs(sums - 1.0) > tolerance).sum())
        if n:
            off.append(f"{n} case(s) at {magnification_label(mag)}")
    if not off:
        return None
    return f"{table.path}: rows do not sum to 1 within a magnification for {', '.join(off)}"


def select_feature_sets(table: FrequencyTable, sets: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Columns of each feature set, and notes on the sets skipped.

    Sets with a magnification absent from the table are skipped with a note; raises when none
    remains.
    """
    chosen: dict[str, list[str]] = {}
    notes = []
    present = table.magnifications
    for text in sets:
        mags = parse_feature_set(text)
        absent = [magnification_label(m) for m in mags if m not in present]
        if absent:
            notes.append(f"feature set {text!r} skipped: {', '.join(absent)} not in {table.path}")
        else:
            chosen[text.strip()] = table.columns_for(mags)
    if not chosen:
        have = ", ".join(magnification_label(m) for m in present)
        raise StatsInputError(
            f"none of the feature sets {list(sets)} can be built from {table.path}, "
            f"which has magnifications {have}; set feature_sets to sets of these"
        )
    return chosen, notes
