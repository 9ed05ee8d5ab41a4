"""What a tiling or image-import run produced."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.report import Failure, Report

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mixture_ray.store.folder import StageFolder


@dataclasses.dataclass(frozen=True)
class TilingReport(Report):
    """Outcome of a tiling run."""

    out_dir: Path
    slides_requested: int
    slides_skipped: int
    slides_committed: int
    tiles_written: int
    failures: list[Failure]
    complete: bool

    @classmethod
    def finish(cls, store: StageFolder, *, requested: Sequence[str], skipped: int,
               failures: list[Failure], config: Any) -> TilingReport:
        """Write the store's completion marker and failures table; the report of the run."""
        complete = store.finish(requested=list(requested), failures=failures,
                                extra={"config": dataclasses.asdict(config)})
        committed = store.committed_items()
        return cls(out_dir=store.root, slides_requested=len(requested), slides_skipped=skipped,
                   slides_committed=len(committed), tiles_written=sum(committed.values()),
                   failures=failures, complete=complete)

    def summary(self) -> str:
        """Tiles written, items skipped as already done, and failures."""
        lines = [f"tile store {self.out_dir}: {self.tiles_written} tiles from {self.slides_committed} items "
                 f"({self.slides_skipped} already done before this run)"]
        return "\n".join(lines)
