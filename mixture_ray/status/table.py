"""The status rows as an aligned plain-text table (people) or JSON (machines)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from mixture_ray.progress import format_seconds
from mixture_ray.run_report.locate import MARKERS
from mixture_ray.status.read import utc_text

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from mixture_ray.status.read import StageStatus

HEADER = ("folder", "stage", "state", "done", "failed", "last commit (UTC)", "ETA", "settings")
#: Columns aligned to the right (numbers).
RIGHT = frozenset({"done", "failed"})


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _eta(row: StageStatus) -> str:
    if not row.running:
        return "-"
    return "unknown" if row.eta_s is None else format_seconds(row.eta_s)


def cells(row: StageStatus) -> tuple[str, ...]:
    """One row's cells, in the order of :data:`HEADER`."""
    last = "-" if row.last is None else utc_text(row.last)
    return (row.folder, row.stage, row.label, _count(row.done), _count(row.failed), last, _eta(row),
            row.settings or "-")


def format_table(root: Path, rows: Sequence[StageStatus], *, now: float) -> str:
    """The run folder, one aligned line per stage folder, then who holds each running folder.

    Args:
        root: the run folder.
        rows: its stage folders.
        now: when they were read (epoch seconds).

    Returns:
        The text to print (no trailing newline).
    """
    title = f"run folder {root} (read {utc_text(now)} UTC)"
    if not rows:
        return (f"{title}\nno stage folder found: none below it holds {', '.join(MARKERS)} "
                "(not a run folder, or no stage has run yet)")
    table = [HEADER, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = [title]
    for line in table:
        padded = [c.rjust(w) if h in RIGHT else c.ljust(w)
                  for c, w, h in zip(line, widths, HEADER, strict=True)]
        lines.append("  ".join(padded).rstrip())
    lines += [f"{r.folder}: written now by {r.holder}" for r in rows if r.running and r.holder]
    stopped = [r.folder for r in rows if r.state == "partial" and not r.running]
    if stopped:
        lines.append(f"stopped before the end (rerun the stage to resume): {', '.join(stopped)}")
    return "\n".join(lines)


def format_json(root: Path, rows: Sequence[StageStatus], *, now: float) -> str:
    """The same rows as one JSON object: ``run_dir``, ``read_utc`` and ``stages`` (one object per row)."""
    payload = {"run_dir": str(root), "read_utc": utc_text(now, iso=True),
               "stages": [r.to_json() for r in rows]}
    return json.dumps(payload, indent=2)
