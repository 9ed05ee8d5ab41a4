"""Errors of the stats stage: bad input tables, with the file, rows and case ids named."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mixture_ray.errors import MixtureRayError

if TYPE_CHECKING:
    from collections.abc import Sequence


class StatsInputError(MixtureRayError):
    """An input table of the stats stage cannot be used; the message names the file and what to do."""


class ClinicalTableError(StatsInputError):
    """The clinical table has problems; ``problems`` lists every one (file, rows, case ids, fix)."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"clinical table {self.path} has {len(self.problems)} problem(s) (rows are 1-based data "
            f"rows: row 1 is the first line after the header):\n{lines}"
        )


def rows_text(rows: Sequence[int], case_ids: Sequence[str], limit: int = 50) -> str:
    """``row 3 (case 'c3')`` / ``rows 3, 7 (cases 'c3', 'c7')``, at most ``limit`` listed."""
    shown = list(zip(rows, case_ids, strict=True))[:limit]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    noun = "row" if len(rows) == 1 else "rows"
    ids = ", ".join(repr(c) for _, c in shown)
    return f"{noun} {', '.join(str(r) for r, _ in shown)}{more} (case{'s' if len(rows) > 1 else ''} {ids})"
