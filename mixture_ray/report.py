"""The one face of every stage's outcome: ``complete``, ``failures`` and ``summary()``.

Every stage's ``run(cfg)`` returns a dataclass that derives from :class:`Report`; the CLI prints
``report.summary()`` and exits 0 when the report is complete, 3 when some items failed.
"""

from __future__ import annotations

import dataclasses

# Run time: the report dataclasses derive from Report, so typing.get_type_hints on them resolves
# Report's own annotations in this module.
from collections.abc import Sequence  # noqa: TC003
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Failure:
    """One item (slide, image, case) that failed, with a message a person can act on."""

    item_id: str
    source: str
    error: str


class Report:
    """Base of every stage report; subclasses are dataclasses with these two fields."""

    complete: bool
    failures: Sequence[Failure]

    def summary(self) -> str:
        """What the run produced, in a few plain lines for a person."""
        raise NotImplementedError

    def failure_lines(self, limit: int = 20) -> list[str]:
        """``item: reason`` for the first ``limit`` failures."""
        lines = [f"  {f.item_id}: {f.error}" for f in list(self.failures)[:limit]]
        if len(self.failures) > limit:
            lines.append(f"  ... and {len(self.failures) - limit} more (see _failures.csv)")
        return lines


@dataclasses.dataclass(frozen=True)
class LinesReport(Report):
    """A report that is a heading and a few lines (explain actions, export)."""

    heading: str
    out_dir: Path
    lines: tuple[str, ...]
    failures: list[Failure]
    complete: bool

    def summary(self) -> str:
        """The heading, then one line per item written."""
        return "\n".join([self.heading, *self.lines])
