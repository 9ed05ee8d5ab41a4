"""One stage output folder that never lies: the contract every stage writes through.

Layout::

    out_dir/
      chunk-<id>/*.parquet         committed parts: each holds many slides' rows, sized by rows
      chunk-<id>/_COMMITTED.json   rows per slide per part and slide totals (a slide may span parts:
                                   it is committed when its parts' rows add up to its total)
      _index.json                  the merged markers, written when a run finishes
      _settings.json               settings the data were made with (a rerun must match)
      _failures.csv                items that failed in the latest run, with the reason
      _SUCCESS                     written only when every requested item is done (with the run's id
                                   and its lineage: store/lineage.py)
      _INCOMPLETE.json             written instead when some failed
      _LEASE.json                  the running run's lease (one writer per folder: store/folder_lease.py)

Every name but the committed chunks starts with ``_``, and nothing else in the folder is Parquet,
so pandas, pyarrow, DuckDB (``out_dir/**/*.parquet``) and ``ray.data.read_parquet`` pointed at
the folder read exactly the committed rows. A chunk is written in a hidden folder beside
``out_dir`` (``.<name>.tmp-<id>``; inside it, ``.tmp-<id>``, when ``out_dir`` is a mount point,
which DuckDB's ``**`` glob would then see during a run) and renamed into place with its marker
already inside; a killed run leaves only such a hidden folder, which the next run removes.
Stages whose items are files of their own (maps, explain grids) use the same class without chunks
(``item_column=None``).
Folders written before this layout (``settings.json``, ``failures.parquet``) are renamed on the
next run and read as they are.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import os
import shutil
import uuid
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixture_ray.errors import ConfigError, StageIncompleteError
from mixture_ray.locations import Location, Uri
from mixture_ray.report import Failure
from mixture_ray.store.folder_lease import FolderLease
from mixture_ray.store.lineage import lineage_fields
from mixture_ray.store.part_commits import drop_partial_slides
from mixture_ray.store.schemas import FAILURE_COLUMNS
from mixture_ray.store.store_index import INDEX, StoreIndex, is_marker, read_index

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

COMMITTED = "_COMMITTED.json"
SUCCESS = "_SUCCESS"
INCOMPLETE = "_INCOMPLETE.json"
SETTINGS = "_settings.json"
FAILURES = "_failures.csv"
#: Names of earlier versions: settings are renamed on the next run, a failures table is rewritten.
OLD_SETTINGS, OLD_FAILURES = "settings.json", "failures.parquet"


def write_json_atomic(path: Path | Location, payload: Any) -> None:
    """Write JSON so that no reader sees half of it (a renamed temporary file, or one PUT)."""
    Location.of(path).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))


@dataclasses.dataclass(frozen=True)
class CommitResult:
    """What one chunk commit kept and what it rejected."""

    rows: dict[str, int]
    failures: list[Failure]


class StageFolder:
    """The output folder of one stage: settings check, chunk commits, failures, completion marker.

    Args:
        root: the folder (created by :meth:`prepare`): a local path, or an object-store URI for
            the stages that stream Parquet chunks (tile, embed, classify).
        stage: the stage's name, recorded in the failures table and the markers.
        item_column: the column that names an item in committed chunks (``slide_id``); None for
            a stage that writes its items as files of its own and commits no chunks.
        inputs: paths this run reads that its settings do not name; with the settings, the
            upstream whose run ids :meth:`finish` records (:mod:`mixture_ray.store.lineage`).

    On an object store a commit renames nothing: the chunk's files are written straight into
    ``chunk-<id>/...`` and the chunk counts once its ``_COMMITTED.json`` is written (one PUT).
    Until then a glob reader would see its files, so read such a store through its markers
    (:meth:`data_files`, :func:`committed_files`) or after ``_SUCCESS``; the next run removes
    files that no marker lists.

    Example:
        >>> folder = StageFolder(Path("tiles"), stage="tile", item_column="slide_id")
        >>> folder.prepare({"tile_size": 224})
        >>> folder.finish(requested=["s1"], failures=[], extra={})
    """

    def __init__(self, root: Path | str | Location, *, stage: str, item_column: str | None = "slide_id",
                 inputs: Iterable[Any] = ()) -> None:
        self.where = Location.of(root)
        self.stage = stage
        self.item_column = item_column
        self.lease: FolderLease | None = None
        self._inputs: list[Any] = [[str(i) for i in inputs]]  # upstream folders, with the settings

    @property
    def root(self) -> Path:
        """The folder as a local path (a store on object storage has none: see :attr:`address`)."""
        return self.where.local_path()

    @property
    def address(self) -> Path | Uri:
        """The folder as given: a local path or the object-store URI."""
        return self.where.address()

    # ------------------------------------------------------------------ run lifecycle
    def prepare(self, settings: Mapping[str, Any]) -> None:
        """Create the folder, check settings match earlier output, drop uncommitted leftovers.

        A folder with committed chunks (or, without chunks, any earlier settings) made with
        other settings is refused, naming each changed key. The run takes the folder's lease first:
        a folder another live run holds is refused (:class:`~mixture_ray.errors.FolderBusyError`).
        """
        self._inputs.append(dict(settings))
        self.where.mkdir()
        if self.lease is None:
            self.lease = FolderLease(self.where, self.stage or "stage")
            self.lease.acquire()
            weakref.finalize(self, self.lease.release)
        settings_path = self.where / SETTINGS
        old_settings = self.where / OLD_SETTINGS
        if old_settings.exists() and not settings_path.exists():
            settings_path.write_bytes(old_settings.read_bytes())
            old_settings.delete()
        (self.where / OLD_FAILURES).delete()
        wanted = json.loads(json.dumps(dict(settings), default=str))
        if settings_path.exists():
            previous = json.loads(settings_path.read_text())
            changed = sorted(k for k in set(previous) | set(wanted) if previous.get(k) != wanted.get(k))
            holds_output = self.item_column is None or bool(self.committed_items())
            if changed and holds_output:
                detail = "; ".join(f"{k}: {previous.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
                raise ConfigError(
                    f"{self.where} holds {self.stage} output made with other settings ({detail}); "
                    "use a new output folder or the same settings"
                )
        write_json_atomic(settings_path, wanted)
        self.start()
        if self.where.is_local:
            self._drop_local_leftovers()
        else:
            self._drop_unlisted_objects()
        if self.item_column is not None:
            drop_partial_slides(self)

    def plan(self, items: int) -> None:
        """Record in the lease how many items (slides) this run was asked for (``mixture-ray status``)."""
        if self.lease is not None:
            self.lease.plan(items)

    def _drop_local_leftovers(self) -> None:
        root = self.root
        stale = [*root.parent.glob(f".{glob.escape(root.name)}.tmp-*"), *root.glob(".tmp-*")]
        stale += [c for c in root.glob("chunk-*") if not any(c.glob("_COMMITTED*.json"))]  # older versions
        for child in stale:
            if child.is_dir():
                shutil.rmtree(child)

    def _drop_unlisted_objects(self) -> None:
        """Delete data objects that no commit marker lists (a killed run's, or a failed commit's)."""
        files = self.where.files_below()
        listed: set[str] = set()
        for marker in (f for f in files if is_marker(f.name)):
            listed.add(marker.path)
            listed.update((marker.parent / name).path for name in json.loads(marker.read_text())["files"])
        for file in files:
            top_level_marker = file.parent.path == self.where.path and file.name.startswith("_")
            if not top_level_marker and file.path not in listed:
                file.delete()

    def start(self) -> None:
        """Clear the completion markers: from now on the folder reads as not complete."""
        self.where.mkdir()
        for marker in (SUCCESS, INCOMPLETE, INDEX):
            (self.where / marker).delete()

    def new_tmp_dir(self) -> Path:
        """A fresh hidden folder for one chunk's writes (renamed into the store when committed).

        Beside the store where the rename works (same file system, writable parent), else inside
        it (a store that is a mount point). Local stores only: see :meth:`new_staging`.
        """
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        parent = root.parent
        beside = os.access(parent, os.W_OK) and os.stat(parent).st_dev == os.stat(root).st_dev
        if beside:
            return parent / f".{root.name}.tmp-{uuid.uuid4().hex}"
        return root / f".tmp-{uuid.uuid4().hex}"

    def new_staging(self) -> Location:
        """Where a run's writers put each item's files before its commit.

        A hidden folder renamed into place per item on a local store (:meth:`new_tmp_dir`); on an
        object store the chunk folder itself (``chunk-<id>``), since nothing can be renamed there.
        """
        if self.where.is_local:
            return Location.of(self.new_tmp_dir())
        return self.where / f"chunk-{uuid.uuid4().hex}"

    def commit(self, tmp: Path | Location, expected: Mapping[str, str]) -> CommitResult:
        """Commit a chunk written to ``tmp``; items with error rows are removed and reported.

        Only for a folder with an ``item_column``.

        ``expected`` maps each item id of the chunk to its source; an item with no rows at
        all is reported as failed with ``no rows`` so nothing disappears silently.
        """
        if self.item_column is None:
            raise TypeError(f"{self.stage}: this stage folder commits no chunks (item_column=None)")
        self.ensure_lease()
        tmp = Location.of(tmp)
        present = tmp.children()
        for stray in present:  # a killed writer's unfinished file (local stores)
            if stray.name.endswith(".tmp"):
                stray.delete()
        files = [f for f in present if f.name.endswith(".parquet")]
        rows: Counter[str] = Counter()
        errors: dict[str, tuple[int, str]] = {}
        for file in files:
            table = pq.read_table(file.path, columns=[self.item_column, "error"], filesystem=file.fs)
            for item, error in zip(
                table[self.item_column].to_pylist(), table["error"].to_pylist(), strict=True
            ):
                if error is None:
                    rows[item] += 1
                else:
                    count, first = errors.get(item, (0, error))
                    errors[item] = (count + 1, first)
        failures = []
        for item, (count, first) in errors.items():
            total = count + rows.pop(item, 0)
            more = f" ({count} of {total} rows failed)" if total > 1 else ""
            failures.append(Failure(item, expected.get(item, ""), first + more))
        for item, source in expected.items():
            if item not in rows and item not in errors:
                failures.append(Failure(item, source, f"no {self.stage} rows were produced"))
        kept = self._drop_items(files, set(errors)) if errors else files
        if not rows:
            tmp.delete()
            return CommitResult({}, failures)
        write_json_atomic(tmp / COMMITTED, {"items": dict(rows), "files": sorted(f.name for f in kept)})
        if tmp.is_local:  # the commit: all or nothing
            os.replace(tmp.path, (self.where / f"chunk-{uuid.uuid4().hex}").path)
        return CommitResult(dict(rows), failures)

    def _drop_items(self, files: Iterable[Location], items: set[str]) -> list[Location]:
        """Rewrite ``files`` without the rows of ``items``; the files that still hold rows."""
        assert self.item_column is not None
        values = pa.array(sorted(items), pa.string())
        kept_files = []
        for file in files:
            table = pq.read_table(file.path, filesystem=file.fs)
            mask = pc.invert(pc.is_in(table[self.item_column], value_set=values))
            kept = table.filter(mask)
            if kept.num_rows == 0:
                file.delete()
                continue
            if kept.num_rows != table.num_rows:
                file.write_parquet(kept)
            kept_files.append(file)
        return kept_files

    def finish(self, *, requested: Iterable[str], failures: list[Failure], extra: Mapping[str, Any]) -> bool:
        """Write the failures table, then _SUCCESS (every requested item done) or _INCOMPLETE.json.

        Args:
            requested: the items this run was asked for.
            failures: the items that failed, with their reasons.
            extra: more fields for the marker (counts, settings a reader needs).

        Returns:
            True when complete. With chunks, an item is done when committed; without, when it
            is not among the failures.
        """
        table = pd.DataFrame([(self.stage, f.item_id, f.source, f.error) for f in failures],
                             columns=list(FAILURE_COLUMNS), dtype=object)
        try:  # a marker that cannot be written (a full disk) ends the run too: the lease goes back
            (self.where / FAILURES).write_text(table.to_csv(index=False))
            requested = list(requested)
            if self.item_column is None:
                missing = sorted({f.item_id for f in failures})
                summary: dict[str, Any] = {"stage": self.stage, "items": len(requested)}
            else:
                index = read_index(self.where, prefer_index=False)
                committed = index.committed()
                missing = sorted(set(requested) - set(committed))
                summary = {"stage": self.stage, "items_committed": len(committed),
                           "rows": sum(committed.values())}
            summary = {**summary, "items_failed": len(missing), **lineage_fields(None, self._inputs), **extra}
            if self.item_column is not None:
                write_json_atomic(self.where / INDEX, index.to_json())
            if missing:
                write_json_atomic(self.where / INCOMPLETE, {**summary, "failed_items": missing[:1000]})
                return False
            write_json_atomic(self.where / SUCCESS, summary)
            return True
        finally:
            self.release()

    def ensure_lease(self) -> None:
        """Raise before a commit if another run took this run's lease over (no-op when not leased)."""
        if self.lease is not None:
            self.lease.ensure_held()

    def release(self) -> None:
        """Give the folder's lease back (finish does; a run that stops early may)."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    # ------------------------------------------------------------------ reading
    def index(self) -> StoreIndex:
        """What the folder holds, from ``_index.json`` (a finished run) or the commit markers."""
        return read_index(self.where)

    def committed_items(self) -> dict[str, int]:
        """Item id -> committed row count, for items whose every row is committed."""
        return self.index().committed()

    def data_locations(self) -> list[Location]:
        """Parquet files of committed parts only."""
        return [self.where / name for name in self.index().files]

    def data_files(self) -> list[Path]:
        """Parquet files of committed chunks only, as local paths (see :meth:`data_locations`)."""
        return [f.local_path() for f in self.data_locations()]


def committed_locations(root: Path | str | Location, *, require_complete: bool = True) -> list[Location]:
    """Data files of a stage folder, local or on object storage; refuses a partial stage.

    Args:
        root: the stage folder (a path or a URI).
        require_complete: refuse a folder without ``_SUCCESS`` (else read what is committed).

    Returns:
        The committed Parquet files.
    """
    where = Location.of(root)
    if require_complete:
        require_finished(where)
    return StageFolder(where, stage="").data_locations()


def require_finished(where: Location) -> None:
    """Refuse a stage folder without ``_SUCCESS``, saying whether it failed or never finished."""
    if not (where / SUCCESS).exists():
        why = (f"finished with failures (see {FAILURES})" if (where / INCOMPLETE).exists()
               else "has no _SUCCESS marker (not run, still running, or interrupted)")
        raise StageIncompleteError(f"{where}: output is not complete: it {why}; "
                                   "rerun the stage or allow partial input")


def committed_files(root: Path | str, *, require_complete: bool = True) -> list[Path]:
    """Data files of a local stage folder; refuses a partial stage unless ``require_complete=False``."""
    return [f.local_path() for f in committed_locations(root, require_complete=require_complete)]


def read_settings(root: Path | str) -> dict[str, Any]:
    """The settings a stage folder was made with (this layout's ``_settings.json`` or an older one)."""
    where = Location.of(root)
    for name in (SETTINGS, OLD_SETTINGS):
        if (where / name).exists():
            settings: dict[str, Any] = json.loads((where / name).read_text())
            return settings
    raise StageIncompleteError(f"{where}: no {SETTINGS}; not a stage output folder, or the stage never ran")


def read_failures(root: Path | str) -> pd.DataFrame:
    """The failures table of a stage folder's latest run (stage, item_id, source, error)."""
    where = Location.of(root) / FAILURES
    if not where.exists():
        return pd.DataFrame(columns=list(FAILURE_COLUMNS))
    return pd.read_csv(io.BytesIO(where.read_bytes()), dtype=str, keep_default_na=False)


def require_complete(root: Path | str, what: str) -> None:
    """Raise StageIncompleteError unless ``root`` carries _SUCCESS; ``what`` names the stage."""
    where = Location.of(root)
    if not (where / SUCCESS).exists():
        raise StageIncompleteError(f"{where}: {what} is not complete (no _SUCCESS); run it first")
