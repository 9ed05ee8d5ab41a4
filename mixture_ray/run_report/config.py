"""`mixture-ray report` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import option, require_positive


@dataclasses.dataclass(frozen=True)
class RunReportConfig:
    """`mixture-ray report`: one self-contained HTML page summarising a run folder.

    The page holds the cohort summary (slides, cases, tiles per magnification, failures of every
    stage, QC decisions), cluster montages, finding maps, ROC/AUC, integrated vs non-integrated,
    survival, NMF class heatmaps, and each stage's settings with the package versions. A section
    whose inputs are absent says what is missing. Images are embedded as small thumbnails (data
    URIs) that link to the full-size files by relative path; no script, nothing fetched.
    """

    run_dir: Path = option("run folder (what `mixture-ray demo` or a pipeline writes: tiles/, maps/, ...)")
    out: Path | None = option("HTML file to write; null = <run_dir>/report.html", None)
    title: str = option("page title", "mixture-ray run report")
    thumb_px: int = option("longest edge of an embedded thumbnail in pixels", 240)
    max_images: int = option("at most this many thumbnails per gallery (the rest are counted)", 200)
    max_rows: int = option("at most this many rows per table", 100)
    search_depth: int = option("folder levels below run_dir searched for stage outputs", 4)

    def validate(self) -> None:
        """Check positive sizes and limits."""
        require_positive(self, "thumb_px", "max_images", "max_rows", "search_depth")

    def target(self) -> Path:
        """The HTML file written: ``out``, or ``run_dir/report.html``."""
        return self.out if self.out is not None else self.run_dir / "report.html"
