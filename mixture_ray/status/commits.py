"""What a run in progress has committed, and when: from its commit markers, never its data files.

A chunked store (tile, embed, classify) counts a slide once its markers' rows add up to its total
(:mod:`mixture_ray.store.store_index`); a store whose items are folders of their own (explain grids)
counts an item once its folder holds ``_SUCCESS``. A commit's time is its marker's modification time.

The ETA of a running run needs the number of items it was asked for: the lease's ``planned_items``
when it records one. The rate is the items this run committed (since its lease started) over the
time from that start to its last commit; the ETA counts from the last commit, so a run that has gone
quiet shows a shrinking ETA rather than a stale one.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mixture_ray.locations import Location
from mixture_ray.store.folder import SUCCESS
from mixture_ray.store.store_index import Marker, StoreIndex, list_markers

if TYPE_CHECKING:
    from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Commits:
    """Items committed so far, their rows (None for item folders) and each commit's time (epoch s)."""

    done: int
    rows: int | None
    times: tuple[float, ...]
    #: Items already committed when the current run started (see ``since`` of :func:`read_commits`).
    done_before: int = 0

    @property
    def last(self) -> float | None:
        """The time of the latest commit, or None when nothing is committed."""
        return max(self.times) if self.times else None


def read_commits(folder: Path, items: list[Path], *, since: float | None = None) -> Commits:
    """The commits of a stage folder without an end marker.

    Args:
        folder: the stage folder.
        items: its item folders (each with ``_SUCCESS``), for a store without chunks.
        since: also count the items committed before this time (a run's start), for its rate.

    Returns:
        Items committed, rows, commit times, and (with ``since``) the items committed before it.
    """
    if items:
        times = tuple((item / SUCCESS).stat().st_mtime for item in items)
        before = sum(t < since for t in times) if since is not None else 0
        return Commits(len(items), None, times, before)
    where = Location.of(folder)
    markers = list_markers(where)
    parsed = [Marker.read(m, where) for m in markers]
    times = tuple(m.mtime_ns() / 1e9 for m in markers)
    committed = StoreIndex.from_markers(parsed).committed()
    before = 0
    if since is not None:
        earlier = [m for m, t in zip(parsed, times, strict=True) if t < since]
        before = len(StoreIndex.from_markers(earlier).committed())
    return Commits(len(committed), sum(committed.values()), times, before)


def eta_seconds(commits: Commits, *, planned: int | None, started: float, now: float) -> float | None:
    """Seconds until a running run has committed ``planned`` items; None when it cannot be told.

    Args:
        commits: the folder's commits, read with ``since=started``.
        planned: the items the run was asked for (None: not recorded, so no ETA).
        started: when the run took its lease (epoch seconds).
        now: the current time (epoch seconds).

    Returns:
        The seconds left (0 once every planned item is committed), or None without a total or a commit
        of this run.
    """
    last = commits.last
    if planned is None or last is None:
        return None
    left = planned - commits.done
    if left <= 0:
        return 0.0
    this_run = commits.done - commits.done_before
    spent = last - started
    if this_run <= 0 or spent <= 0:
        return None
    return max(0.0, left * spent / this_run - (now - last))
