"""One stage output folder that never lies: the contract every stage writes through.

Layout::

    out_dir/
      chunk-<id>/*.parquet         data of committed items (stages that commit items in chunks)
      chunk-<id>/_COMMITTED.json   its items and row counts; the folder appears only when complete
      _settings.json               settings the data were made with (a rerun must match)
      _failures.csv                items that failed in the latest run, with the reason
      _SUCCESS                     written only when every requested item is done
      _INCOMPLETE.json             written instead when some failed

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
import json
import os
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixture_ray.errors import ConfigError, StageIncompleteError
from mixture_ray.report import Failure
from mixture_ray.store.schemas import FAILURE_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

COMMITTED = "_COMMITTED.json"
SUCCESS = "_SUCCESS"
INCOMPLETE = "_INCOMPLETE.json"
SETTINGS = "_settings.json"
FAILURES = "_failures.csv"
#: Names of earlier versions: settings are renamed on the next run, a failures table is rewritten.
OLD_SETTINGS, OLD_FAILURES = "settings.json", "failures.parquet"


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary name, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclasses.dataclass(frozen=True)
class CommitResult:
    """What one chunk commit kept and what it rejected."""

    rows: dict[str, int]
    failures: list[Failure]


class StageFolder:
    """The output folder of one stage: settings check, chunk commits, failures, completion marker.

    Args:
        root: the folder (created by :meth:`prepare`).
        stage: the stage's name, recorded in the failures table and the markers.
        item_column: the column that names an item in committed chunks (``slide_id``); None for
            a stage that writes its items as files of its own and commits no chunks.

    Example:
        >>> folder = StageFolder(Path("tiles"), stage="tile", item_column="slide_id")
        >>> folder.prepare({"tile_size": 224})
        >>> folder.finish(requested=["s1"], failures=[], extra={})
    """

    def __init__(self, root: Path, *, stage: str, item_column: str | None = "slide_id") -> None:
        self.root = Path(root)
        self.stage = stage
        self.item_column = item_column

    # ------------------------------------------------------------------ run lifecycle
    def prepare(self, settings: Mapping[str, Any]) -> None:
        """Create the folder, check settings match earlier output, drop uncommitted leftovers.

        A folder with committed chunks (or, without chunks, any earlier settings) made with
        other settings is refused, naming each changed key.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        settings_path = self.root / SETTINGS
        if (self.root / OLD_SETTINGS).exists() and not settings_path.exists():
            os.replace(self.root / OLD_SETTINGS, settings_path)
        (self.root / OLD_FAILURES).unlink(missing_ok=True)
        wanted = json.loads(json.dumps(dict(settings), default=str))
        if settings_path.exists():
            previous = json.loads(settings_path.read_text())
            changed = sorted(k for k in set(previous) | set(wanted) if previous.get(k) != wanted.get(k))
            holds_output = self.item_column is None or bool(self.committed_items())
            if changed and holds_output:
                detail = "; ".join(f"{k}: {previous.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
                raise ConfigError(
                    f"{self.root} holds {self.stage} output made with other settings ({detail}); "
                    "use a new output folder or the same settings"
                )
        write_json_atomic(settings_path, wanted)
        self.start()
        stale = [*self.root.parent.glob(f".{glob.escape(self.root.name)}.tmp-*"), *self.root.glob(".tmp-*")]
        stale += [c for c in self.root.glob("chunk-*") if not (c / COMMITTED).exists()]  # older versions
        for child in stale:
            if child.is_dir():
                shutil.rmtree(child)

    def start(self) -> None:
        """Clear the completion markers: from now on the folder reads as not complete."""
        self.root.mkdir(parents=True, exist_ok=True)
        for marker in (SUCCESS, INCOMPLETE):
            (self.root / marker).unlink(missing_ok=True)

    def new_tmp_dir(self) -> Path:
        """A fresh hidden folder for one chunk's writes (renamed into the store when committed).

        Beside the store where the rename works (same file system, writable parent), else inside
        it (a store that is a mount point).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        parent = self.root.parent
        beside = os.access(parent, os.W_OK) and os.stat(parent).st_dev == os.stat(self.root).st_dev
        if beside:
            return parent / f".{self.root.name}.tmp-{uuid.uuid4().hex}"
        return self.root / f".tmp-{uuid.uuid4().hex}"

    def commit(self, tmp: Path, expected: Mapping[str, str]) -> CommitResult:
        """Commit a chunk written to ``tmp``; items with error rows are removed and reported.

        Only for a folder with an ``item_column``.

        ``expected`` maps each item id of the chunk to its source; an item with no rows at
        all is reported as failed with ``no rows`` so nothing disappears silently.
        """
        if self.item_column is None:
            raise TypeError(f"{self.stage}: this stage folder commits no chunks (item_column=None)")
        for stray in tmp.glob(".*.tmp") if tmp.exists() else []:  # a killed writer's unfinished file
            stray.unlink(missing_ok=True)
        files = sorted(tmp.glob("*.parquet")) if tmp.exists() else []
        rows: Counter[str] = Counter()
        errors: dict[str, tuple[int, str]] = {}
        for file in files:
            table = pq.read_table(file, columns=[self.item_column, "error"])
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
        if errors:
            self._drop_items(files, set(errors))
        if not rows:
            shutil.rmtree(tmp, ignore_errors=True)
            return CommitResult({}, failures)
        kept = sorted(p.name for p in tmp.glob("*.parquet"))
        write_json_atomic(tmp / COMMITTED, {"items": dict(rows), "files": kept})
        os.replace(tmp, self.root / f"chunk-{uuid.uuid4().hex}")  # the commit: all or nothing
        return CommitResult(dict(rows), failures)

    def _drop_items(self, files: Iterable[Path], items: set[str]) -> None:
        assert self.item_column is not None
        values = pa.array(sorted(items), pa.string())
        for file in files:
            table = pq.read_table(file)
            mask = pc.invert(pc.is_in(table[self.item_column], value_set=values))
            kept = table.filter(mask)
            if kept.num_rows == table.num_rows:
                continue
            if kept.num_rows == 0:
                file.unlink()
            else:
                tmp = file.with_name(f".{file.name}.tmp")
                pq.write_table(kept, tmp)
                os.replace(tmp, file)

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
        table = pd.DataFrame({"stage": [self.stage] * len(failures),
                              "item_id": [f.item_id for f in failures],
                              "source": [f.source for f in failures],
                              "error": [f.error for f in failures]}, columns=list(FAILURE_COLUMNS))
        tmp = self.root / f".{FAILURES}.tmp"
        table.to_csv(tmp, index=False)
        os.replace(tmp, self.root / FAILURES)
        requested = list(requested)
        if self.item_column is None:
            missing = sorted({f.item_id for f in failures})
            summary: dict[str, Any] = {"stage": self.stage, "items": len(requested)}
        else:
            committed = self.committed_items()
            missing = sorted(set(requested) - set(committed))
            summary = {"stage": self.stage, "items_committed": len(committed),
                       "rows": sum(committed.values())}
        summary = {**summary, "items_failed": len(missing), **extra}
        if missing:
            write_json_atomic(self.root / INCOMPLETE, {**summary, "failed_items": missing[:1000]})
            return False
        write_json_atomic(self.root / SUCCESS, summary)
        return True

    # ------------------------------------------------------------------ reading
    def committed_items(self) -> dict[str, int]:
        """Item id -> committed row count, over every committed chunk."""
        items: dict[str, int] = {}
        for marker in sorted(self.root.glob(f"chunk-*/{COMMITTED}")):
            items.update(json.loads(marker.read_text())["items"])
        return items

    def data_files(self) -> list[Path]:
        """Parquet files of committed chunks only."""
        files: list[Path] = []
        for marker in sorted(self.root.glob(f"chunk-*/{COMMITTED}")):
            names = json.loads(marker.read_text())["files"]
            files.extend(marker.parent / name for name in names)
        return files


def committed_files(root: Path, *, require_complete: bool = True) -> list[Path]:
    """Data files of a stage folder; refuses a partial stage unless ``require_complete=False``."""
    root = Path(root)
    if require_complete and not (root / SUCCESS).exists():
        why = (
            f"it finished with failures (see {FAILURES})"
            if (root / INCOMPLETE).exists()
            else ("it has no _SUCCESS marker (not run, still running, or interrupted)")
        )
        raise StageIncompleteError(
            f"{root}: output is not complete: {why}; rerun the stage or allow partial input"
        )
    return StageFolder(root, stage="").data_files()


def read_settings(root: Path) -> dict[str, Any]:
    """The settings a stage folder was made with (this layout's ``_settings.json`` or an older one)."""
    root = Path(root)
    for name in (SETTINGS, OLD_SETTINGS):
        if (root / name).exists():
            settings: dict[str, Any] = json.loads((root / name).read_text())
            return settings
    raise StageIncompleteError(f"{root}: no {SETTINGS}; not a stage output folder, or the stage never ran")


def read_failures(root: Path) -> pd.DataFrame:
    """The failures table of a stage folder's latest run (stage, item_id, source, error)."""
    path = Path(root) / FAILURES
    if not path.exists():
        return pd.DataFrame(columns=list(FAILURE_COLUMNS))
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def require_complete(root: Path, what: str) -> None:
    """Raise StageIncompleteError unless ``root`` carries _SUCCESS; ``what`` names the stage."""
    if not (Path(root) / SUCCESS).exists():
        raise StageIncompleteError(f"{root}: {what} is not complete (no _SUCCESS); run it first")
