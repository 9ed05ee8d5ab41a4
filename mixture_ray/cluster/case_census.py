"""Rows per slide and magnification, and each slide's case, counted in Ray tasks from light columns.

A per-case clustering needs, before any case is fitted, each case's rows at each magnification
(to number the clusters across cases and to place the silhouette sample) and, with z-scoring,
every magnification's mean and spread. One task per block of store parts reads ``slide_id``,
``case_id`` and ``magnification`` (and the feature column only to z-score) and returns counts per
slide: the driver holds O(slides) numbers, never a row.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from mixture_ray.cluster.block_sources import at_magnification
from mixture_ray.cluster.kmeans_torch import BlockStats, block_stats, reduce_stats
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.store.schemas import magnification_label

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Census:
    """What the store holds, per magnification label (``"20x"``, ``"unknown"``).

    Args:
        cases: slide -> case id.
        rows: magnification label -> slide -> rows.
        values: magnification label -> magnification (NaN for ``unknown``).
        stats: magnification label -> counts and sums of the feature (only when z-scoring).
    """

    cases: dict[str, str]
    rows: dict[str, dict[str, int]]
    values: dict[str, float]
    stats: dict[str, BlockStats]

    def labels(self) -> list[str]:
        """Magnification labels in the driver engines' order (unknown first, then ascending)."""
        return sorted(self.values, key=lambda m: -1.0 if math.isnan(self.values[m]) else self.values[m])

    def case_rows(self, label: str) -> Counter[str]:
        """Rows of each case at one magnification."""
        counts: Counter[str] = Counter()
        for slide, n in self.rows.get(label, {}).items():
            counts[self.cases[slide]] += n
        return counts


def count_block(paths: Sequence[str], feature: str | None) -> Census:
    """One block's census (run in a task): rows per slide and magnification, sums when ``feature``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mixture_ray.store.embeddings import fixed_list_to_matrix

    columns = ["slide_id", "case_id", "magnification", *([feature] if feature else [])]
    table = pa.concat_tables([pq.read_table(p, columns=columns) for p in paths])
    cases: dict[str, str] = {}
    rows: dict[str, dict[str, int]] = {}
    values: dict[str, float] = {}
    grouped = table.group_by(["slide_id", "case_id", "magnification"]).aggregate([("slide_id", "count")])
    for entry in grouped.to_pylist():
        value = math.nan if entry["magnification"] is None else float(entry["magnification"])
        label = magnification_label(value)
        values[label] = value
        slide = str(entry["slide_id"])
        cases[slide] = "" if entry["case_id"] is None else str(entry["case_id"])
        per_slide = rows.setdefault(label, {})
        per_slide[slide] = per_slide.get(slide, 0) + int(entry["slide_id_count"])
    stats: dict[str, BlockStats] = {}
    if feature:
        for label, value in values.items():
            stats[label] = block_stats(fixed_list_to_matrix(at_magnification(table, value)[feature]))
    return Census(cases, rows, values, stats)


def merge_censuses(parts: Sequence[Census]) -> Census:
    """Add up the blocks' censuses (a slide's rows may span blocks)."""
    cases: dict[str, str] = {}
    rows: dict[str, dict[str, int]] = {}
    values: dict[str, float] = {}
    stats: dict[str, list[BlockStats]] = {}
    for part in parts:
        cases.update(part.cases)
        values.update(part.values)
        for label, per_slide in part.rows.items():
            merged = rows.setdefault(label, {})
            for slide, n in per_slide.items():
                merged[slide] = merged.get(slide, 0) + n
        for label, found in part.stats.items():
            stats.setdefault(label, []).append(found)
    return Census(cases, rows, values, {label: reduce_stats(found) for label, found in stats.items()})


def take_census(blocks: Sequence[Sequence[str]], *, feature: str | None, task: dict[str, Any]) -> Census:
    """The census of a store, one task per block of parts.

    Args:
        blocks: the store's parts, cut into blocks.
        feature: the feature column, read only to z-score (its sums per magnification); None skips it.
        task: resources of each task.

    Returns:
        The store's census.
    """
    ensure_ray()
    count = ray.remote(count_block).options(**task)
    return merge_censuses(ray.get([count.remote(tuple(b), feature) for b in blocks]))


def slide_offsets(rows: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """Slides in tile-key order and the position of each slide's first row among all rows."""
    slides = sorted(rows)
    return slides, np.cumsum([0, *(rows[s] for s in slides)])[:-1]
