"""What a tiling or image-import run produced."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.report import Failure, Report


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

    def summary(self) -> str:
        """Tiles written, items skipped as already done, and failures."""
        lines = [f"tile store {self.out_dir}: {self.tiles_written} tiles from {self.slides_committed} items "
                 f"({self.slides_skipped} already done before this run)"]
        return "\n".join(lines)
