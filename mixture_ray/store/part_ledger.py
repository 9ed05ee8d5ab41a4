"""The driver's bookkeeping of one streaming run: per-slide counts in, part commits out.

Writer tasks report, for every part they write, each slide's input rows consumed, output rows
produced by the stage, rows written and rows that failed (with the first error). The ledger adds
these up, O(slides) memory and no file read, and decides:

- a slide is *finished* when all its input rows are consumed and every row the stage produced
  for it is accounted for in a reported part (parts may finish out of order);
- a part is *committable* when every slide with rows in it is finished; committable parts are
  committed together under one marker, with the rows of failed slides removed.

A slide is committed when its last part is. At the end of a run, slides that never finished are
failed with the reason, and the parts they held up are committed without their rows.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from mixture_ray.faults import crash_once, hold_once
from mixture_ray.report import Failure
from mixture_ray.store.part_commits import StagedPart, commit_parts

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pyarrow as pa

    from mixture_ray.locations import Location
    from mixture_ray.store.folder import StageFolder


@dataclasses.dataclass
class SlideTally:
    """What the writers reported for one slide so far."""

    consumed: int = 0
    produced: int = 0
    written: int = 0
    errors: int = 0
    first_error: str | None = None
    expected: int = -1
    parts: set[str] = dataclasses.field(default_factory=set)


class PartLedger:
    """Counts per slide and per part for one run of a stage; commits parts as they become whole.

    Args:
        store: the stage folder.
        sources: slide id -> its source, for every slide of the run (failures name it).
        expected: input rows per slide when known up front (else from the rows' ``_slide_rows``).
    """

    def __init__(self, store: StageFolder, *, sources: Mapping[str, str],
                 expected: Mapping[str, int] | None = None) -> None:
        self.store = store
        self.sources = dict(sources)
        self.slides: dict[str, SlideTally] = {}
        for slide, rows in (expected or {}).items():
            self.slides[slide] = SlideTally(expected=int(rows))
        self.parts: dict[str, StagedPart] = {}
        self.finished: set[str] = set()
        self.committed: set[str] = set()
        self.failures: list[Failure] = []
        self.failed: set[str] = set()
        self.rows_consumed = 0

    def add(self, part: Location, counts: pa.Table) -> None:
        """Take one written part's counts (see :func:`slide_stream.write_part`) and commit what is whole."""
        rows: dict[str, int] = {}
        mags: dict[str, dict[str, int]] = {}
        cases: dict[str, str] = {}
        touched = []
        for row in counts.to_pylist():
            slide = str(row["slide_id"])
            tally = self.slides.setdefault(slide, SlideTally())
            tally.consumed += int(row["consumed"])
            tally.produced += int(row["produced"])
            tally.written += int(row["written"])
            tally.errors += int(row["errors"])
            if tally.first_error is None and row["first_error"] is not None:
                tally.first_error = str(row["first_error"])
            if tally.expected < 0 and int(row["expected"]) >= 0:
                tally.expected = int(row["expected"])
            tally.parts.add(part.name)
            self.rows_consumed += int(row["consumed"])
            rows[slide] = int(row["written"])
            mags[slide] = {str(k): int(v) for k, v in json.loads(row["magnifications"]).items()}
            if row.get("case_id"):
                cases[slide] = str(row["case_id"])
            touched.append(slide)
        self.parts[part.name] = StagedPart(part, rows, mags, cases)
        for slide in touched:
            self._check_finished(slide)
        self._commit_ready()

    def _check_finished(self, slide: str) -> None:
        tally = self.slides[slide]
        if slide in self.finished or tally.expected < 0 or tally.consumed < tally.expected:
            return
        if tally.written + tally.errors < tally.produced:
            return  # a part with some of its rows is still being written
        self.finished.add(slide)
        if tally.errors:
            total = tally.errors + tally.written
            more = f" ({tally.errors} of {total} rows failed)" if total > 1 else ""
            self._fail(slide, f"{tally.first_error}{more}")
        elif tally.written == 0:
            self._fail(slide, f"no {self.store.stage} rows were produced")

    def _fail(self, slide: str, why: str) -> None:
        self.failed.add(slide)
        self.failures.append(Failure(slide, self.sources.get(slide, ""), why))

    def _commit_ready(self) -> None:
        ready = [p for p in self.parts.values() if all(s in self.finished for s in p.rows)]
        if ready:
            self._commit(ready)

    def _commit(self, parts: list[StagedPart]) -> None:
        for part in parts:
            del self.parts[part.location.name]
        slides = {s for p in parts for s in p.rows}
        totals = {s: self.slides[s].written for s in slides}
        try:
            commit_parts(self.store, parts, totals=totals, drop=self.failed)
        except Exception as exc:  # these slides only: the others still commit
            from mixture_ray.store.slide_stream import first_line

            for slide in sorted(slides - self.failed):
                self._fail(slide, f"commit failed: {first_line(exc)}")
            return
        for slide in slides - self.failed:
            self.slides[slide].parts -= {p.location.name for p in parts}
            if not self.slides[slide].parts:
                self.committed.add(slide)
        crash_once(f"{self.store.stage}.driver-after-commit")  # fault injection (tests)
        hold_once(f"{self.store.stage}.driver-hold")  # fault injection: a run outlasting its wall time

    def close(self, stopped: str | None) -> list[Failure]:
        """End the run: fail the slides that never finished, commit the parts they held up.

        Args:
            stopped: the error that stopped the run, if any.

        Returns:
            Every failure of the run (failed rows, no rows, unfinished slides, failed commits).
        """
        why = (f"the run stopped before the slide was finished: {stopped}" if stopped
               else "the run ended before every row of the slide was processed")
        for slide in sorted(set(self.sources) | set(self.slides)):
            if slide not in self.finished:
                self.finished.add(slide)
                self._fail(slide, why)
        if self.parts:
            self._commit(list(self.parts.values()))
        return self.failures
