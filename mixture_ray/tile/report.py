"""What a tiling or image-import run produced."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.locations import Uri
from mixture_ray.report import Failure, Report

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mixture_ray.store.folder import StageFolder


@dataclasses.dataclass(frozen=True)
class TilingReport(Report):
    """Outcome of a tiling run."""

    out_dir: Path | Uri
    slides_requested: int
    slides_skipped: int
    slides_committed: int
    tiles_written: int
    failures: list[Failure]
    complete: bool
    excluded_by_qc: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def finish(cls, store: StageFolder, *, requested: Sequence[str], skipped: int,
               failures: list[Failure], config: Any, excluded: dict[str, str] | None = None) -> TilingReport:
        """Write the store's completion marker and failures table; the report of the run.

        Args:
            store: the tile store.
            requested: items this run was asked for (slides excluded by QC are not).
            skipped: items already committed before the run.
            failures: items that failed.
            config: the run's settings (recorded in the marker).
            excluded: slides left out because they failed QC, with the reason.

        Returns:
            The report.
        """
        excluded = dict(excluded or {})
        complete = store.finish(requested=list(requested), failures=failures,
                                extra={"config": dataclasses.asdict(config), "excluded_by_qc": excluded})
        committed = store.committed_items()
        return cls(out_dir=store.address, slides_requested=len(requested), slides_skipped=skipped,
                   slides_committed=len(committed), tiles_written=sum(committed.values()),
                   failures=failures, complete=complete, excluded_by_qc=excluded)

    def summary(self) -> str:
        """Tiles written, items skipped as already done, slides excluded by QC."""
        lines = [f"tile store {self.out_dir}: {self.tiles_written} tiles from {self.slides_committed} items "
                 f"({self.slides_skipped} already done before this run)"]
        if self.excluded_by_qc:
            lines.append(f"{len(self.excluded_by_qc)} slide(s) left out because they failed QC: "
                         + "; ".join(f"{s} ({r})" for s, r in list(self.excluded_by_qc.items())[:10]))
        return "\n".join(lines)
