"""One streaming Ray Data execution per stage run, written in row-sized parts and committed per slide.

The last operator of a pipeline is a :class:`SlideBatchRunner`: it runs the stage's own batch
class (pixel reader, embedder, classifier) and appends to its output one *tally row* per slide of
the batch: input rows consumed, output rows produced, and the slide's input total where the rows
carry it (``_slide_rows``, set by the tiling stage's coordinate tasks). The driver
(:func:`stream_slides`) takes the output as block references (no data passes through it), and
once they hold ``part_rows`` rows starts one writer task (:func:`write_part`) that writes them as
one Parquet part, sorted by slide, and returns per-slide counts. So a part holds many slides'
rows, a slide's rows may span parts, and the number of files grows with rows, not with slides or
batches. The :class:`~mixture_ray.store.part_ledger.PartLedger` commits parts from those counts,
reading nothing back. A writer task that is retried writes the same part name.

The number of input rows of a slide is known up front for stores (the plan counts them in the
tile store's index) or travels with the rows (``_slide_rows``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixture_ray.locations import Location
from mixture_ray.store.part_ledger import PartLedger

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import ray.data

    from mixture_ray.progress import ProgressLine
    from mixture_ray.report import Failure
    from mixture_ray.store.folder import StageFolder

#: Column with the number of input rows of the row's slide, where the driver cannot know it.
SLIDE_ROWS = "_slide_rows"
#: Columns a :class:`SlideBatchRunner` adds: tally row flag, rows consumed, produced, expected.
TALLY, CONSUMED, PRODUCED, EXPECTED = "_tally", "_consumed", "_produced", "_expected"
#: Rows per part unless a stage says otherwise (``pool.part_rows``).
PART_ROWS = 20_000
#: Writer tasks running at once (each holds one part's rows).
WRITERS_IN_FLIGHT = 2
#: Columns of the counts a writer returns to the driver.
COUNT_SCHEMA = pa.schema([("slide_id", pa.string()), ("consumed", pa.int64()), ("produced", pa.int64()),
                          ("expected", pa.int64()), ("written", pa.int64()), ("errors", pa.int64()),
                          ("first_error", pa.string()), ("magnifications", pa.string()),
                          ("case_id", pa.string())])


def _column(batch: pa.Table | Mapping[str, Any], name: str) -> list[Any]:
    if isinstance(batch, pa.Table):
        return batch[name].to_pylist() if name in batch.column_names else []
    values = batch.get(name)
    return [] if values is None else list(np.asarray(values).tolist())


def with_tally(output: pa.Table, *, consumed: Counter[str], expected: Mapping[str, int],
               cases: Mapping[str, str]) -> pa.Table:
    """``output`` plus one tally row per slide (consumed, produced, expected); data columns null there."""
    produced = Counter(output["slide_id"].to_pylist()) if output.num_rows else Counter[str]()
    slides = sorted(set(consumed) | set(produced))
    n = len(slides)
    columns: dict[str, pa.Array] = {}
    for field in output.schema:
        if field.name == "slide_id":
            columns[field.name] = pa.array(slides, field.type)
        elif field.name == "case_id":
            columns[field.name] = pa.array([cases.get(s, "") for s in slides], field.type)
        else:
            columns[field.name] = pa.nulls(n, field.type)
    tally = pa.table(columns, schema=output.schema)
    flags = {TALLY: (False, True), CONSUMED: (0, [consumed[s] for s in slides]),
             PRODUCED: (0, [produced[s] for s in slides]),
             EXPECTED: (-1, [int(expected.get(s, -1)) for s in slides])}
    for name, (data_value, tally_values) in flags.items():
        kind = pa.bool_() if name == TALLY else pa.int64()
        output = output.append_column(name, pa.array([data_value] * output.num_rows, kind))
        tally = tally.append_column(name, pa.array(tally_values if name != TALLY else [True] * n, kind))
    return pa.concat_tables([output, tally])


class SlideBatchRunner:
    """``map_batches`` class: run a stage's batch class, append each slide's tally row.

    Args:
        inner: the stage's batch class (constructed once per actor); it returns a ``pa.Table``.
        inner_kwargs: its constructor arguments.
    """

    def __init__(self, *, inner: type, inner_kwargs: Mapping[str, Any]) -> None:
        self.inner = inner(**inner_kwargs)

    def __call__(self, batch: pa.Table | dict[str, Any]) -> pa.Table:
        """Process one batch; returns its output rows and one tally row per slide."""
        slides = _column(batch, "slide_id")
        totals = _column(batch, SLIDE_ROWS)
        cases = dict(zip(slides, _column(batch, "case_id"), strict=True)) if _column(batch, "case_id") else {}
        expected = dict(zip(slides, totals, strict=True)) if totals else {}
        output = self.inner(batch)
        return with_tally(output, consumed=Counter(slides), expected=expected, cases=cases)


def _magnification_counts(table: pa.Table) -> dict[str, dict[str, int]]:
    if "magnification" not in table.column_names or not table.num_rows:
        return {}
    grouped = table.group_by(["slide_id", "magnification"]).aggregate([("slide_id", "count")]).to_pylist()
    counts: dict[str, dict[str, int]] = {}
    for row in grouped:
        mag = row["magnification"]
        key = "unknown" if mag is None or mag != mag else repr(float(mag))  # exact: float(key) == mag
        counts.setdefault(row["slide_id"], {})[key] = int(row["slide_id_count"])
    return counts


def _slide_cases(table: pa.Table) -> dict[str, str]:
    """Each slide's case id (one group-by; no per-row Python), empty when the rows carry none."""
    if "case_id" not in table.column_names:
        return {}
    pairs = table.select(["slide_id", "case_id"]).group_by(["slide_id", "case_id"]).aggregate([])
    return {slide: case for slide, case in zip(pairs["slide_id"].to_pylist(), pairs["case_id"].to_pylist(),
                                              strict=True) if case}


def write_part(staging: str, name: str, key_columns: Sequence[str],
               slices: Sequence[tuple[int, int] | None], *blocks: pa.Table) -> pa.Table:
    """Writer task: one part of good rows from ``blocks`` (sorted by slide); per-slide counts.

    Error rows are counted (with the first error of each slide) and not written; tally rows are
    summed into the counts.
    """
    tables = [b if s is None else b.slice(s[0], s[1] - s[0]) for b, s in zip(blocks, slices, strict=True)]
    table = pa.concat_tables([t for t in tables if t.num_rows] or tables[:1], promote_options="default")
    is_tally = table[TALLY]
    tally = table.filter(is_tally)
    helpers = [c for c in (TALLY, CONSUMED, PRODUCED, EXPECTED, SLIDE_ROWS) if c in table.column_names]
    data = table.filter(pc.invert(is_tally)).drop_columns(helpers)
    failed = pc.is_valid(data["error"])
    good = data.filter(pc.invert(failed))
    bad = data.filter(failed)
    order = [("slide_id", "ascending"), *((k, "ascending") for k in key_columns if k in good.column_names)]
    good = good.sort_by(order)
    if good.num_rows:
        (Location.of(staging) / name).write_parquet(good)
    stats: dict[str, dict[str, Any]] = {}
    for row in tally.select(["slide_id", CONSUMED, PRODUCED, EXPECTED]).to_pylist():
        entry = stats.setdefault(row["slide_id"], {"consumed": 0, "produced": 0, "expected": -1})
        entry["consumed"] += row[CONSUMED]
        entry["produced"] += row[PRODUCED]
        entry["expected"] = max(entry["expected"], row[EXPECTED])
    written = Counter(good["slide_id"].to_pylist())
    errors = Counter(bad["slide_id"].to_pylist())
    first: dict[str, str] = {}
    for slide, error in zip(bad["slide_id"].to_pylist(), bad["error"].to_pylist(), strict=True):
        first.setdefault(slide, error)
    mags = _magnification_counts(good)
    cases = _slide_cases(good)
    names = sorted(set(stats) | set(written) | set(errors))
    empty = {"consumed": 0, "produced": 0, "expected": -1}
    return pa.table({
        "slide_id": names,
        "consumed": [stats.get(s, empty)["consumed"] for s in names],
        "produced": [stats.get(s, empty)["produced"] for s in names],
        "expected": [stats.get(s, empty)["expected"] for s in names],
        "written": [written[s] for s in names], "errors": [errors[s] for s in names],
        "first_error": [first.get(s) for s in names],
        "magnifications": [json.dumps(mags.get(s, {}), sort_keys=True) for s in names],
        "case_id": [cases.get(s) for s in names],
    }, schema=COUNT_SCHEMA)


def first_line(exc: BaseException, limit: int = 500) -> str:
    """A short one-line description of an exception (Ray wraps errors in long tracebacks)."""
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        exc = exc.cause  # the task's own error: "NoSpaceError: ...", not "RayTaskError(NoSpaceError): ..."
    text = str(exc).strip().splitlines()
    lines = [line for line in text if line.strip()]
    message = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {message}"[:limit]


class _PartLauncher:
    """Groups output block references into parts of ``part_rows`` rows and runs their writer tasks."""

    def __init__(self, ledger: PartLedger, staging: Location, key_columns: Sequence[str],
                 part_rows: int) -> None:
        import ray

        self.ray = ray
        self.writer = ray.remote(num_cpus=0)(write_part)
        self.ledger, self.staging, self.key_columns, self.part_rows = ledger, staging, key_columns, part_rows
        self.run = uuid.uuid4().hex[:10]
        self.seq = 0
        self.refs: list[Any] = []
        self.slices: list[tuple[int, int] | None] = []
        self.rows = 0
        self.seen_rows = 0
        self.in_flight: dict[Any, str] = {}

    def take(self, bundle: Any) -> None:
        """Add one output bundle; start a writer once a part's worth of rows is waiting."""
        slices = getattr(bundle, "slices", None) or (None,) * len(bundle.blocks)
        for entry, piece in zip(bundle.blocks, slices, strict=True):
            self.refs.append(entry.ref)
            if piece is None:
                self.slices.append(None)
                self.rows += int(entry.metadata.num_rows or 0)
            else:
                self.slices.append((int(piece.start_offset), int(piece.end_offset)))
                self.rows += int(piece.end_offset) - int(piece.start_offset)
        self.seen_rows += int(bundle.num_rows() or 0)
        if self.rows >= self.part_rows:
            self.launch()
        self.harvest(block=False)

    def launch(self) -> None:
        """Start the writer of the waiting rows (waits while too many writers run)."""
        if not self.refs:
            return
        while len(self.in_flight) >= WRITERS_IN_FLIGHT:
            self.harvest(block=True)
        name = f"part-{self.run}-{self.seq:06d}.parquet"
        self.seq += 1
        ref = self.writer.remote(str(self.staging), name, list(self.key_columns), list(self.slices),
                                 *self.refs)
        self.in_flight[ref] = name
        self.refs, self.slices, self.rows = [], [], 0

    def harvest(self, *, block: bool) -> None:
        """Take the counts of finished writers into the ledger (one at least when ``block``)."""
        while self.in_flight:
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=None if block else 0)
            if not ready:
                return
            name = self.in_flight.pop(ready[0])
            self.ledger.add(self.staging / name, self.ray.get(ready[0]))
            if block:
                return

    def drain(self) -> None:
        """Write what is waiting and wait for every writer."""
        self.launch()
        while self.in_flight:
            self.harvest(block=True)


def stream_slides(
    dataset: ray.data.Dataset, *, store: StageFolder, staging: Location, sources: Mapping[str, str],
    progress: ProgressLine, expected: Mapping[str, int] | None = None,
    key_columns: Sequence[str] = ("magnification", "x", "y"), part_rows: int = PART_ROWS,
) -> list[Failure]:
    """Execute ``dataset`` (ending in a :class:`SlideBatchRunner`), write parts, commit slides.

    Args:
        dataset: the lazy pipeline; its output rows are stage rows plus tally rows.
        store: the stage folder the slides are committed to.
        staging: where writers put parts (:meth:`StageFolder.new_staging`; a local one is
            removed at the end, its parts having moved into the store).
        sources: slide id -> its source (slide path or tile chunk), for every slide of the run.
        progress: the progress line to update.
        expected: input rows per slide when known up front (else from ``_slide_rows``).
        key_columns: columns that order a slide's rows within a part.
        part_rows: rows per part.

    Returns:
        The failures: slides with error rows or no rows, and slides the pipeline never finished
        (with the error that stopped it).
    """
    ledger = PartLedger(store, sources=sources, expected=expected)
    launcher = _PartLauncher(ledger, staging, key_columns, part_rows)
    stopped: str | None = None
    try:
        for bundle in dataset.iter_internal_ref_bundles():
            launcher.take(bundle)
            progress.update(items_done=len(ledger.finished),
                            rows_done=max(ledger.rows_consumed, launcher.seen_rows))
        launcher.drain()
    except Exception as exc:  # a stage that failed for good: keep what is committed, record the rest
        stopped = first_line(exc)
    progress.update(items_done=len(ledger.finished), rows_done=ledger.rows_consumed)
    progress.close()
    failures = ledger.close(stopped)
    if stopped is None and staging.is_local:  # else tasks may still be writing: the next run's
        shutil.rmtree(staging.path, ignore_errors=True)  # prepare() removes what no commit lists
    return failures
