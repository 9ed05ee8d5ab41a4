"""Where an export's slides are: per store, the parts and rows of each slide, and groups of slides.

The export never reads a store on the driver. The store's index (:mod:`mixture_ray.store.store_index`)
names, per slide, its rows, its rows per magnification and the parts that hold it, so the driver
plans groups of slides from it alone: slides are ordered by the first part that holds them, then
cut into groups of about :data:`GROUP_ROWS` rows, so that a group's task reads one or two parts
and each part is read by few tasks. The group's other stores are read where they hold its slides
(few parts when they were written in a similar slide order). A task reads only the parts of its
slides, with a filter on ``slide_id`` pushed down to Parquet (:func:`read_slide_rows`). A store
whose index lists no parts or counts (written before the index did) is counted once, a Ray task
per part.

:func:`ordered_map` runs the tasks: at most ``in_flight`` submitted and not collected, results
yielded in the order of the calls, so the driver holds a bounded number of results whatever the
cohort size, and one input gives the same output every run.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mixture_ray.locations import Location
from mixture_ray.store.folder import committed_locations
from mixture_ray.store.store_index import read_index

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator, Sequence

#: Rows of the store a group of slides is planned to hold (a part holds about 50,000).
GROUP_ROWS = 50_000
#: Tasks submitted and not yet collected, at most, for tasks that return small results.
TASKS_IN_FLIGHT = 32
#: The index's key of rows of unknown magnification (imported images).
UNKNOWN = "unknown"
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SlideEntry:
    """One slide of a store: its rows, rows per magnification key, positions of the parts holding it."""

    rows: int
    magnifications: dict[str, int]
    parts: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class StoreSlides:
    """The committed parts of a store and, per slide, its rows and parts (from the index, no data read).

    Attributes:
        files: the committed parts, in the store's order (local paths or objects of one store).
        slides: slide id -> its entry, in slide-id order.
    """

    files: tuple[Location, ...]
    slides: dict[str, SlideEntry]

    @classmethod
    def open(cls, store: str | os.PathLike[str] | Location) -> StoreSlides:
        """The slides of a finished store (a folder or a URI).

        Raises:
            StageIncompleteError: the store has no ``_SUCCESS`` marker.
        """
        where = Location.of(store)
        files = tuple(committed_locations(where))
        position = {f.path: i for i, f in enumerate(files)}
        index = read_index(where)
        slides: dict[str, SlideEntry] = {}
        for slide, entry in sorted(index.slides.items()):
            found = [position.get((where / name).path) for name in dict.fromkeys(entry.files)]
            if not entry.rows:
                continue
            if not found or None in found or not entry.magnifications:
                return cls.counted(files)  # an index without parts or counts: count the rows once
            slides[slide] = SlideEntry(entry.rows, dict(entry.magnifications),
                                       tuple(sorted(int(p) for p in found if p is not None)))
        if not slides and files:
            return cls.counted(files)
        return cls(files, slides)

    @classmethod
    def counted(cls, files: Sequence[Location]) -> StoreSlides:
        """The slides of ``files`` counted from their ``slide_id`` and ``magnification`` (a task per part)."""
        rows: dict[str, collections.Counter[str]] = {}
        parts: dict[str, list[int]] = {}
        calls = [(str(f),) for f in files]
        for position, counts in enumerate(ordered_map(_count_part, calls, TASKS_IN_FLIGHT)):
            for (slide, key), n in counts.items():
                rows.setdefault(slide, collections.Counter())[key] += n
                if not parts.setdefault(slide, []) or parts[slide][-1] != position:
                    parts[slide].append(position)
        slides = {s: SlideEntry(sum(rows[s].values()), dict(rows[s]), tuple(parts[s])) for s in sorted(rows)}
        return cls(tuple(files), slides)

    def mag_keys(self) -> set[str]:
        """The magnification keys (:func:`mag_key`) of the store's rows."""
        return {key for entry in self.slides.values() for key in entry.magnifications}

    def groups(self, budget: int | None = None, mag: str | None = None) -> list[tuple[str, ...]]:
        """The slides in groups of about ``budget`` rows (of the magnification key ``mag`` when given).

        Slides are ordered by the first part that holds them, then by id, so a group's slides share
        few parts; a group closes when the next slide would take it over ``budget`` rows (default
        :data:`GROUP_ROWS`). A slide is never split.
        """
        budget = budget or GROUP_ROWS

        def rows(entry: SlideEntry) -> int:
            return entry.rows if mag is None else entry.magnifications.get(mag, 0)

        ordered = sorted((e.parts[0] if e.parts else -1, s) for s, e in self.slides.items() if rows(e))
        groups: list[tuple[str, ...]] = []
        current: list[str] = []
        total = 0
        for _, slide in ordered:
            n = rows(self.slides[slide])
            if current and total + n > budget:
                groups.append(tuple(current))
                current, total = [], 0
            current.append(slide)
            total += n
        if current:
            groups.append(tuple(current))
        return groups

    def holding(self, slides: Sequence[str]) -> list[str]:
        """Addresses of the parts that hold any of ``slides``, in store order."""
        wanted = sorted({p for s in slides if s in self.slides for p in self.slides[s].parts})
        return [str(self.files[p]) for p in wanted]


def read_slide_rows(files: Sequence[str], slides: Sequence[str], columns: Sequence[str], schema: pa.Schema,
                    magnification: str | None = None) -> pa.Table:
    """``columns`` of the rows of ``slides`` (of one magnification when given), in file order.

    A filter on ``slide_id`` (and magnification) is pushed down to Parquet, so row groups without a
    wanted slide are skipped and only the wanted rows are kept.

    Args:
        files: Parquet files (local paths or URIs on one store); none gives no rows.
        slides: the slide ids wanted.
        columns: the columns to read (``slide_id`` and ``magnification`` are read for the filter).
        schema: the store's schema (the columns of an empty result).
        magnification: an index magnification key (:func:`mag_key`), or None for all.

    Returns:
        The rows, in the order of ``files`` and of the rows in each.
    """
    if not files:
        return schema.empty_table().select(list(columns))
    locations = [Location.of(f) for f in files]
    dataset = ds.dataset([f.path for f in locations], format="parquet", filesystem=locations[0].fs)
    missing = sorted(set(columns) - set(dataset.schema.names))
    if missing:
        raise ValueError(f"{locations[0]}: no column {missing} (found {dataset.schema.names})")
    expression = pc.field("slide_id").isin(pa.array(list(slides), pa.string()))
    table = dataset.to_table(columns=list(dict.fromkeys([*columns, "magnification"])), filter=expression)
    if magnification is not None:
        mags = pc.cast(table["magnification"], pa.float64())
        if magnification == UNKNOWN:
            keep = pc.or_(pc.is_null(mags), pc.is_nan(mags)).fill_null(True)
        else:
            keep = pc.equal(mags, float(magnification)).fill_null(False)
        table = table.filter(keep)
    return table.select(list(columns))


def mag_key(magnification: float | None) -> str:
    """How the index names a magnification: ``repr(float(m))`` (exact), ``unknown`` for null or NaN."""
    if magnification is None or math.isnan(magnification):
        return UNKNOWN
    return repr(float(magnification))


def key_value(key: str) -> float | None:
    """The magnification an index key names (None for ``unknown``)."""
    return None if key == UNKNOWN else float(key)


def _count_part(address: str) -> dict[tuple[str, str], int]:
    """Task body: rows per (slide, magnification key) of one part."""
    where = Location.of(address)
    table = ds.dataset(where.path, format="parquet", filesystem=where.fs).to_table(
        columns=["slide_id", "magnification"])
    counts = table.group_by(["slide_id", "magnification"], use_threads=False).aggregate([([], "count_all")])
    return {(str(s), mag_key(None if m is None else float(m))): int(n)
            for s, m, n in zip(counts["slide_id"].to_pylist(), counts["magnification"].to_pylist(),
                               counts["count_all"].to_pylist(), strict=True)}


def ordered_map(task: Callable[..., T], calls: Sequence[tuple[Any, ...]], in_flight: int) -> Iterator[T]:
    """``task(*args)`` for each of ``calls`` as Ray tasks, yielded in the order of ``calls``.

    Ray is started (embedded, local) when it is not running. At most ``in_flight`` tasks are
    submitted and not yet yielded, so the caller holds at most that many results at once.
    """
    if not calls:
        return
    import ray

    from mixture_ray.ray_runtime import ensure_ray

    ensure_ray()
    remote = ray.remote(task).options(num_cpus=1)
    pending: collections.deque[Any] = collections.deque()
    queue = iter(calls)
    for args in queue:
        pending.append(remote.remote(*args))
        if len(pending) >= in_flight:
            break
    while pending:
        result: T = ray.get(pending.popleft())
        for args in queue:
            pending.append(remote.remote(*args))
            break
        yield result
