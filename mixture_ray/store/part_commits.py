"""Commits of row-sized parts, each holding many slides' rows, without reading them back.

A writer task writes one part (thousands of rows of many slides) to the run's staging folder and
reports how many rows of each slide it holds. The driver commits a part once every slide in it has
all its rows written (:mod:`mixture_ray.store.part_ledger`): locally the parts move into a new
``chunk-<id>`` folder that appears, with its marker inside, by one rename; on an object store the
parts stay where they were written and one marker (one PUT) lists them. Only a part that holds
rows of a failed slide is read and rewritten without them, which is the exception.

A run killed between two parts of one slide leaves the slide's first rows in a committed part
with a marker that says the slide has more. :func:`drop_partial_slides` (run by every
``prepare``) removes such rows, so the slide is tiled again whole and never counted twice.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixture_ray.locations import Location
from mixture_ray.store.store_index import MARKER_PREFIX, read_index

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from mixture_ray.store.folder import StageFolder


@dataclasses.dataclass(frozen=True)
class StagedPart:
    """One part a writer finished: where it is, and its rows per slide and per magnification."""

    location: Location
    rows: dict[str, int]
    magnifications: dict[str, dict[str, int]]
    cases: dict[str, str] = dataclasses.field(default_factory=dict)


def rewrite_without(source: Location, target: Location, slides: Collection[str], item_column: str) -> int:
    """Write ``source``'s rows except those of ``slides`` to ``target``; the rows kept (0: no file)."""
    table = pq.read_table(source.path, filesystem=source.fs)
    mask = pc.invert(pc.is_in(table[item_column], value_set=pa.array(sorted(slides), pa.string())))
    kept = table.filter(mask)
    if kept.num_rows:
        target.write_parquet(kept)
    if source.path != target.path or not kept.num_rows:
        source.delete()
    return int(kept.num_rows)


def _marker_payload(parts: Mapping[str, Mapping[str, int]], totals: Mapping[str, int],
                    magnifications: Mapping[str, Mapping[str, int]],
                    cases: Mapping[str, str]) -> dict[str, object]:
    items: Counter[str] = Counter()
    for rows in parts.values():
        items.update(rows)
    slides = set(items)
    return {"parts": {name: dict(rows) for name, rows in parts.items()}, "files": sorted(parts),
            "items": dict(items), "totals": {s: int(totals[s]) for s in sorted(slides)},
            "magnifications": {s: dict(magnifications[s]) for s in sorted(slides) if s in magnifications},
            "cases": {s: cases[s] for s in sorted(slides) if s in cases}}


def commit_parts(folder: StageFolder, parts: Sequence[StagedPart], *, totals: Mapping[str, int],
                 drop: Collection[str] = ()) -> dict[str, int]:
    """Commit ``parts`` with one marker; rows of the ``drop`` slides are removed first.

    Args:
        folder: the stage folder.
        parts: parts in the run's staging folder.
        totals: rows each slide of the parts has over all its parts.
        drop: failed slides whose rows must not be committed.

    Returns:
        Rows committed per slide.
    """
    from mixture_ray.store.folder import write_json_atomic

    assert folder.item_column is not None
    folder.ensure_lease()
    dropped = set(drop)
    local = folder.where.is_local
    home = Location.of(folder.new_tmp_dir()) if local else parts[0].location.parent
    listed: dict[str, dict[str, int]] = {}
    mags: dict[str, Counter[str]] = {}
    cases: dict[str, str] = {}
    for part in parts:
        target = home / part.location.name if local else part.location
        keep = {s: n for s, n in part.rows.items() if s not in dropped and n > 0}
        if dropped & {s for s, n in part.rows.items() if n > 0}:
            if not rewrite_without(part.location, target, dropped, folder.item_column):
                continue
        elif not keep:
            part.location.delete()
            continue
        elif local:
            home.mkdir()
            os.replace(part.location.path, target.path)
        listed[target.name] = keep
        for slide in keep:
            mags.setdefault(slide, Counter()).update(part.magnifications.get(slide, {}))
            if slide in part.cases:
                cases[slide] = part.cases[slide]
    if not listed:
        if local:
            home.delete()
        return {}
    payload = _marker_payload(listed, totals, mags, cases)
    if local:
        write_json_atomic(home / f"{MARKER_PREFIX}.json", payload)
        os.replace(home.path, (folder.where / f"chunk-{uuid.uuid4().hex}").path)
    else:
        stem = min(listed).removesuffix(".parquet")
        write_json_atomic(home / f"{MARKER_PREFIX}-{stem}.json", payload)
    committed: Counter[str] = Counter()
    for rows in listed.values():
        committed.update(rows)
    return dict(committed)


def drop_partial_slides(folder: StageFolder) -> set[str]:
    """Remove the rows of slides that only some committed parts hold; the slides cleaned.

    Reads only the parts that hold such rows (after a killed run), and rewrites their markers
    last, so a run killed while cleaning cleans the rest next time.
    """
    from mixture_ray.store.folder import write_json_atomic

    assert folder.item_column is not None
    index = read_index(folder.where, prefer_index=False)
    partial = index.partial()
    if not partial:
        return set()
    for marker in index.markers:
        if not partial & {s for rows in marker.parts.values() for s, n in rows.items() if n > 0}:
            continue
        parts: dict[str, dict[str, int]] = {}
        for name, rows in marker.parts.items():
            file = folder.where / name
            kept = {s: n for s, n in rows.items() if s not in partial}
            if len(kept) != len(rows) and not rewrite_without(file, file, partial, folder.item_column):
                continue
            parts[file.name] = kept
        totals = {s: n for s, n in marker.totals.items() if s not in partial}
        if parts:
            payload = _marker_payload(parts, totals, marker.magnifications, marker.cases)
            write_json_atomic(marker.where, payload)
        else:  # nothing left: locally the chunk folder goes, on an object store its marker
            (marker.where.parent if folder.where.is_local else marker.where).delete()
    return partial
