"""One streaming Ray Data execution per stage run, committed slide by slide as results stream out.

The last stage of a pipeline is a :class:`SlidePartWriter`: it runs the stage's own batch class
(pixel reader, embedder, classifier), writes each slide's output rows of the batch as one Parquet
part file in a hidden staging folder, and returns only a few counts per slide. The driver
(:func:`stream_slides`) reads those counts, and when every input row of a slide has been
processed it commits the slide: its staged folder is renamed into the store with its marker
(:meth:`StageFolder.commit`). So a slide is committed on its own, soon after its last batch, a
rerun skips it, and a slide never looks complete while half-written. Pixels and embeddings never
pass through the driver.

The number of input rows of a slide is known up front for stores (the driver counts them) or
travels with the rows (``_slide_rows``, set by the tiling stage's coordinate tasks).
A retried task writes the same part file names (a hash of the rows' keys), so a batch written by
a killed worker and then again by its retry is stored once.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixture_ray.faults import crash_once
from mixture_ray.locations import Location
from mixture_ray.report import Failure

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import ray.data

    from mixture_ray.progress import ProgressLine
    from mixture_ray.store.folder import StageFolder

#: Column with the number of input rows of the row's slide, where the driver cannot know it.
SLIDE_ROWS = "_slide_rows"
#: Columns of the counts a writer returns to the driver.
COUNT_SCHEMA = pa.schema([("slide_id", pa.string()), ("consumed", pa.int64()),
                          ("expected", pa.int64()), ("written", pa.int64())])


def slide_folder_name(slide_id: str) -> str:
    """A file-system-safe, unique folder name for a slide id."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", slide_id)[:60].lstrip(".")
    return f"{readable}-{hashlib.sha1(slide_id.encode()).hexdigest()[:10]}"


def _column(batch: pa.Table | Mapping[str, Any], name: str) -> list[Any]:
    if isinstance(batch, pa.Table):
        return batch[name].to_pylist() if name in batch.column_names else []
    values = batch.get(name)
    return [] if values is None else list(np.asarray(values).tolist())


def _rows_hash(part: pa.Table, key_columns: Sequence[str]) -> str:
    digest = hashlib.sha1()
    for name in key_columns:
        if name in part.column_names:
            digest.update(repr(part[name].to_pylist()).encode())
    return digest.hexdigest()[:20]


def write_slide_parts(table: pa.Table, staging: Location, key_columns: Sequence[str]) -> Counter[str]:
    """Write each slide's rows of ``table`` to ``staging/<slide>/part-<hash>.parquet``; rows per slide.

    The file appears under its final name only when complete (written aside and renamed on a
    local store, one PUT on an object store).
    """
    written: Counter[str] = Counter()
    if table.num_rows == 0:
        return written
    for slide in pc.unique(table["slide_id"]).to_pylist():
        part = table.filter(pc.equal(table["slide_id"], slide))
        folder = staging / slide_folder_name(slide)
        (folder / f"part-{_rows_hash(part, key_columns)}.parquet").write_parquet(part)
        written[slide] += part.num_rows
    return written


class SlidePartWriter:
    """``map_batches`` class: run a stage's batch class, write its rows per slide, return counts.

    Args:
        inner: the stage's batch class (constructed once per actor).
        inner_kwargs: its constructor arguments.
        staging: the run's staging folder (on storage every worker can reach: a shared path or an
            object-store URI).
        key_columns: columns that identify an output row (they name the part files).

    Returns (per call):
        A small table: slide_id, input rows consumed, rows expected (``_slide_rows``, or -1),
        rows written.
    """

    def __init__(self, *, inner: type, inner_kwargs: Mapping[str, Any], staging: str,
                 key_columns: Sequence[str] = ("magnification", "x", "y")) -> None:
        self.inner = inner(**inner_kwargs)
        self.staging = Location.of(staging)
        self.key_columns = tuple(key_columns)

    def __call__(self, batch: pa.Table | dict[str, Any]) -> pa.Table:
        """Process one batch; its output rows are on disk when this returns."""
        slides = _column(batch, "slide_id")
        totals = _column(batch, SLIDE_ROWS)
        consumed = Counter(slides)
        expected = dict(zip(slides, totals, strict=True)) if totals else {}
        output = self.inner(batch)
        written = write_slide_parts(output, self.staging, self.key_columns)
        names = sorted(consumed)
        return pa.table(
            {"slide_id": names, "consumed": [consumed[s] for s in names],
             "expected": [int(expected.get(s, -1)) for s in names], "written": [written[s] for s in names]},
            schema=COUNT_SCHEMA,
        )


def first_line(exc: BaseException, limit: int = 500) -> str:
    """A short one-line description of an exception (Ray wraps errors in long tracebacks)."""
    text = str(exc).strip().splitlines()
    lines = [line for line in text if line.strip()]
    message = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {message}"[:limit]


def stream_slides(
    dataset: ray.data.Dataset, *, store: StageFolder, staging: Location, sources: Mapping[str, str],
    progress: ProgressLine, expected: Mapping[str, int] | None = None,
) -> list[Failure]:
    """Execute ``dataset`` (ending in a :class:`SlidePartWriter`) and commit each slide when done.

    Args:
        dataset: the lazy pipeline; its output rows are the writers' counts.
        store: the stage folder the slides are committed to.
        staging: the staging folder the writers write into (:meth:`StageFolder.new_staging`;
            removed at the end where it is a local one, which is renamed into the store per slide).
        sources: slide id -> its source (slide path or tile chunk), for every slide of the run.
        progress: the progress line to update.
        expected: input rows per slide when known up front (else from ``_slide_rows``).

    Returns:
        The failures: slides with error rows or no rows (from the commit), and slides the
        pipeline never finished (with the error that stopped it).
    """
    wanted: dict[str, int] = dict(expected or {})
    seen: Counter[str] = Counter()
    done: set[str] = set()
    failures: list[Failure] = []
    rows = 0
    stopped: str | None = None
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            counts = cast("pa.Table", batch)
            for slide, consumed, total in zip(counts["slide_id"].to_pylist(), counts["consumed"].to_pylist(),
                                              counts["expected"].to_pylist(), strict=True):
                seen[slide] += consumed
                rows += consumed
                if total >= 0:
                    wanted.setdefault(slide, total)
                if slide not in done and slide in wanted and seen[slide] >= wanted[slide]:
                    done.add(slide)
                    source = sources.get(slide, "")
                    try:
                        result = store.commit(staging / slide_folder_name(slide), {slide: source})
                    except Exception as exc:  # this slide only: the others still commit
                        failures.append(Failure(slide, source, f"commit failed: {first_line(exc)}"))
                        continue
                    failures.extend(result.failures)
                    crash_once(f"{store.stage}.driver-after-commit")  # fault injection (tests)
            progress.update(items_done=len(done), rows_done=rows)
    except Exception as exc:  # a stage that failed for good: keep what is committed, record the rest
        stopped = first_line(exc)
    progress.close()
    if stopped is None and staging.is_local:  # else tasks may still be writing: the next run's
        shutil.rmtree(staging.path, ignore_errors=True)  # prepare() removes what no commit lists
    why = f"the run stopped before the slide was finished: {stopped}" if stopped else (
        "the run ended before every row of the slide was processed")
    failures.extend(Failure(s, sources[s], why) for s in sources if s not in done)
    return failures
