"""One row per stage folder of a run folder, read from its markers and records, never its data files.

States of a folder:

- ``complete``: ``_SUCCESS`` is there (every requested item done).
- ``failed``: ``_INCOMPLETE.json`` is there (the run finished; some items failed).
- ``partial``: no end marker, but commits, or a lease (a run started): ``running`` while the lease is
  live (its holder is named), ``stopped`` when it is stale or gone (rerun the stage to resume).
- ``empty``: settings only; nothing was committed and no run holds the folder.

Stage folders are found by their markers (:mod:`mixture_ray.status.find`); an item folder of a stage
(``explain/grids/<slide>/_SUCCESS``) counts as an item of its stage while its run is unfinished (a
finished run's record counts them).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from pathlib import Path
from typing import Any, Literal

from mixture_ray.errors import ConfigError
from mixture_ray.run_report.locate import stage_of
from mixture_ray.status.commits import eta_seconds, read_commits
from mixture_ray.status.find import item_folders, stage_folders
from mixture_ray.status.settings import folder_settings, short_settings
from mixture_ray.store.folder import INCOMPLETE, SUCCESS
from mixture_ray.store.folder_lease import LEASE, Holder, stale_after_from_env

State = Literal["complete", "failed", "partial", "empty"]
#: The lease field a run may record with the number of items it was asked for (gives the ETA).
PLANNED = "planned_items"


@dataclasses.dataclass(frozen=True)
class StageStatus:
    """The state of one stage folder.

    Attributes:
        folder: the folder relative to the run folder (``.`` for the run folder itself).
        stage: the stage that wrote it (from its records or lease; ``?`` when none says).
        state: complete, failed, partial or empty (see the module's docstring).
        done: items committed (slides; cases for ``cases``); None when the stage has no items.
        failed: items that failed in the latest finished run; None when not recorded.
        rows: rows committed (tiles), when counted.
        last: when the folder last changed state: its end marker, else its latest commit (epoch s).
        settings: the key settings it was made with, short.
        running: a live lease holds the folder (a run is writing it now).
        holder: who holds the lease, when it is live.
        eta_s: seconds left of a running run, None when unknown.
    """

    folder: str
    stage: str
    state: State
    done: int | None
    failed: int | None
    rows: int | None
    last: float | None
    settings: str
    running: bool = False
    holder: str | None = None
    eta_s: float | None = None

    @property
    def label(self) -> str:
        """The state as shown: ``partial`` says whether a run is at work (``running``) or not."""
        if self.state != "partial":
            return self.state
        return "partial, running" if self.running else "partial, stopped"

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-ready fields; ``last_utc`` is the time in ISO 8601, UTC."""
        fields = dataclasses.asdict(self)
        fields["label"] = self.label
        fields["last_utc"] = utc_text(self.last, iso=True) if self.last is not None else None
        return fields


def utc_text(stamp: float, *, iso: bool = False) -> str:
    """An epoch time as ``2026-12-07 16:29:05`` (or ISO 8601 with ``iso``), in UTC."""
    moment = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    return moment.isoformat(timespec="seconds") if iso else moment.strftime("%Y-%m-%d %H:%M:%S")


def _record(path: Path) -> dict[str, Any] | None:
    """A JSON record's fields ({} for an empty or unreadable one); None when the file is absent."""
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _guess_stage(folder: Path, record: dict[str, Any]) -> str:
    """The stage of a folder whose records do not name it: a synthetic cohort, or k-means clusterings."""
    if (folder / "manifest.csv").is_file() and (folder / "findings.json").is_file():
        return "synth"
    return "cluster" if "clusterings" in record else ""


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _finished_counts(record: dict[str, Any]) -> tuple[int | None, int | None]:
    """(done, failed) from an end record: items committed, or items asked less those failed."""
    failed = _int(record.get("items_failed"))
    committed = _int(record.get("items_committed"))
    if committed is not None:
        return committed, failed
    items = _int(record.get("items"))
    if items:
        return items - (failed or 0), failed
    return None, failed


def _lease(folder: Path) -> tuple[Holder | None, int | None, bool]:
    """The lease's holder, its planned items and whether a lease file is there at all."""
    raw = _record(folder / LEASE)
    if raw is None:
        return None, None, False
    holder = Holder.parse(json.dumps(raw))
    return holder, _int(raw.get(PLANNED)), True


def stage_status(folder: Path, *, label: str, stage: str, now: float) -> StageStatus:
    """The state of one stage folder (see the module's docstring).

    Args:
        folder: the stage folder.
        label: its name as shown (relative to the run folder).
        stage: the stage recorded in its end marker or failures table ("" when none).
        now: the current time (epoch seconds), for the ETA.

    Returns:
        The folder's row.
    """
    holder, planned, leased = _lease(folder)
    live = holder is not None and not holder.is_stale(stale_after_from_env())
    stage = stage or (holder.stage if holder is not None else "")
    ends: tuple[tuple[str, State], ...] = ((SUCCESS, "complete"), (INCOMPLETE, "failed"))
    for marker, state in ends:
        record = _record(folder / marker)
        if record is not None:
            done, failed = _finished_counts(record)
            stage = stage or _guess_stage(folder, record) or "?"
            return StageStatus(label, stage, state, done, failed,
                               _int(record.get("rows")), (folder / marker).stat().st_mtime,
                               short_settings(folder_settings(folder, record)), live,
                               holder.describe() if live and holder is not None else None)
    stage = stage or "?"
    started = holder.started if live and holder is not None else None
    commits = read_commits(folder, item_folders(folder), since=started)
    settings = short_settings(folder_settings(folder, {}))
    if not commits.times and not leased:
        return StageStatus(label, stage, "empty", 0, None, None, None, settings)
    eta = eta_seconds(commits, planned=planned, started=started, now=now) if started is not None else None
    return StageStatus(label, stage, "partial", commits.done, None, commits.rows, commits.last, settings,
                       live, holder.describe() if live and holder is not None else None, eta)


def read_status(root: Path, *, depth: int = 4, now: float | None = None) -> list[StageStatus]:
    """Every stage folder of a run folder with its state, counts, time, ETA and settings.

    Args:
        root: the run folder (or one stage folder).
        depth: how many folder levels below ``root`` are searched.
        now: the current time (epoch seconds; default: now), for the ETA.

    Returns:
        One row per stage folder, sorted by folder; empty when ``root`` holds none.

    Raises:
        ConfigError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        why = "does not exist" if not root.exists() else "is not a folder"
        raise ConfigError(f"{root} {why}: give the run folder (the out_dir of a demo or pipeline run)")
    clock = time.time() if now is None else now
    return [stage_status(folder, label=folder.relative_to(root).as_posix() or ".", stage=stage_of(folder),
                         now=clock)
            for folder in stage_folders(root, depth)]
