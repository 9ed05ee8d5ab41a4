"""Per-case finding counts and frequencies; each magnification is its own feature set.

Columns are named ``<mag>x/<finding>`` (e.g. ``20x/dense_fibrosis``, ``2.5x/near_normal``);
frequencies are normalised within each magnification after dropping the excluded findings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixture_ray.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


def case_counts(rows: pd.DataFrame, label: pd.Series, columns: Sequence[str], prefix: str) -> pd.DataFrame:
    """Wide counts (case_id index) of ``label`` values per case; every column present, zero-filled."""
    table = pd.crosstab(rows["case_id"].astype(str), label.astype(str))
    unknown = sorted(set(table.columns) - set(columns))
    if unknown:
        raise ConfigError(f"values {unknown} are not among the expected columns {list(columns)}")
    table = table.reindex(columns=list(columns), fill_value=0)
    table.columns = [f"{prefix}/{c}" for c in columns]
    table.index.name = "case_id"
    return table.astype(np.int64)


def combine(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Side-by-side count tables of several magnifications; a case missing from one gets zeros."""
    frames = list(tables)
    names = [c for t in frames for c in t.columns]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ConfigError(
            f"predictions: columns {repeated} come from two stores (give one store per magnification)"
        )
    out = pd.concat(frames, axis=1).fillna(0).astype(np.int64)
    out.index.name = "case_id"
    return out.sort_index()


def frequencies(counts: pd.DataFrame, exclude: Sequence[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """Row-normalised counts within each magnification, excluded columns dropped first.

    Returns the table and the ``<mag>x`` groups of cases with no counted tile at that
    magnification (their frequencies are 0 there), as ``"<case_id>: <mag>x"`` strings.
    """
    kept = counts.drop(columns=[c for c in exclude if c in counts.columns])
    out = pd.DataFrame(index=kept.index, dtype=np.float64)
    empty: list[str] = []
    for prefix in dict.fromkeys(c.split("/", 1)[0] for c in kept.columns):
        group = kept[[c for c in kept.columns if c.split("/", 1)[0] == prefix]].astype(np.float64)
        total = group.sum(axis=1)
        empty += [f"{case}: {prefix}" for case in group.index[total == 0]]
        out = out.join(group.div(total.where(total > 0, 1.0), axis=0))
    out.index.name = "case_id"
    return out, empty
