"""Which tile rows a model stage will process: per-slide row counts from the tile store's index.

The index holds rows per slide and magnification, so planning opens no data file; only a
background filter reads the small metadata columns. The counts let the driver commit each slide
as soon as all its rows are written.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixture_ray.locations import Location
from mixture_ray.store.folder import committed_locations, read_settings
from mixture_ray.store.store_index import StoreIndex, read_index

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

    from mixture_ray.locations import Uri


@dataclasses.dataclass(frozen=True)
class RowFilter:
    """The rows of a tile store a model stage takes (the same rule when planning and reading)."""

    magnification: float | None = None
    max_background: float | None = None
    from_slides: bool = False

    def columns(self) -> list[str]:
        """Metadata columns the rule needs."""
        return ["slide_id", "magnification", "background_fraction", "encoding"]

    def mask(self, table: pa.Table) -> pa.ChunkedArray | pa.Array:
        """Boolean mask of the rows kept (rows without pixels are kept only when reading slides)."""
        keep = pa.array([True] * table.num_rows)
        if not self.from_slides:
            keep = pc.not_equal(table["encoding"], "none")
        if self.magnification is not None:
            wanted = pa.scalar(self.magnification, pa.float32())  # the column's type: 0.3 matches 0.3
            keep = pc.and_(keep, pc.equal(table["magnification"], wanted))
        if self.max_background is not None:
            keep = pc.and_(keep, pc.less_equal(table["background_fraction"], self.max_background))
        return keep


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """The work of one model-stage run.

    Attributes:
        files: tile files holding pending rows.
        expected: pending slide -> rows it will send through the pipeline.
        sources: pending slide -> the tile chunk it came from (for the failures table).
        requested: every slide with rows under the filter (pending or already committed).
        skipped: slides already committed in the output store.
    """

    files: list[str]
    expected: dict[str, int]
    sources: dict[str, str]
    requested: list[str]
    skipped: int


def stored_encoding(tiles: Path | Uri) -> str:
    """The encoding a tile store was written with (``none`` = coordinates only)."""
    return str(read_settings(tiles).get("encoding", "jpeg"))


def plan_rows(tiles: Path | Uri, rule: RowFilter, done: Collection[str]) -> TilePlan:
    """Count the rows each slide will send through a model stage, skipping ``done`` slides.

    The counts come from the tile store's index (rows per slide and magnification) without
    opening a data file; only a background filter (``max_background``), which the index cannot
    answer, reads the metadata columns of the parts.

    Args:
        tiles: a complete tile store (a folder or an object-store URI).
        rule: which rows the stage takes.
        done: slides already committed in the stage's output.

    Returns:
        The plan: files with pending rows, rows per pending slide, sources, requested slides.
    """
    where = Location.of(tiles)
    committed_locations(tiles)  # refuses a store that is not complete
    index = read_index(where)
    counts = counts_from_index(index, rule, stored_encoding(tiles))
    if counts is None:
        counts = counts_from_files(where, index, rule)
    pending = {s: n for s, n in counts.items() if s not in done}
    files = sorted({str(where / f) for s in pending for f in index.slides[s].files})
    sources = {s: index.slides[s].files[0].split("/")[0] for s in pending}
    return TilePlan(files=files, expected=pending, sources=sources,
                    requested=sorted(counts), skipped=len(counts) - len(pending))


def counts_from_index(index: StoreIndex, rule: RowFilter, encoding: str) -> dict[str, int] | None:
    """Rows per slide under ``rule`` from the index; None where only the data can tell."""
    if rule.max_background is not None:
        return None
    if encoding == "none" and not rule.from_slides:
        return {}
    counts: dict[str, int] = {}
    for slide, entry in index.slides.items():
        if rule.magnification is None:
            rows = entry.rows
        elif not entry.magnifications:
            return None  # a store written before the index counted magnifications
        else:
            wanted = np.float32(rule.magnification)
            rows = sum(n for m, n in entry.magnifications.items()
                       if m != "unknown" and np.float32(float(m)) == wanted)
        if rows:
            counts[slide] = rows
    return counts


def counts_from_files(where: Location, index: StoreIndex, rule: RowFilter) -> dict[str, int]:
    """Rows per slide under ``rule``, read from the parts' metadata columns (background filter)."""
    counts: Counter[str] = Counter()
    for name in index.files:
        location = where / name
        table = pq.read_table(location.path, columns=rule.columns(), filesystem=location.fs)
        counts.update(table.filter(rule.mask(table))["slide_id"].to_pylist())
    return dict(counts)
