"""`mixture-ray report`: one self-contained HTML page of a run folder's outputs.

Reads only files the other stages wrote (tile store metadata, markers, failures tables, PNGs, CSV and
JSON tables); never imports another stage. A section whose inputs are missing, or cannot be read,
says so on the page instead of failing the report.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from mixture_ray.errors import ConfigError
from mixture_ray.report import Failure, Report
from mixture_ray.run_report import cohort, galleries, provenance, statistics
from mixture_ray.run_report.locate import find_layout
from mixture_ray.run_report.markup import Section, page

if TYPE_CHECKING:
    from collections.abc import Callable

    from mixture_ray.run_report.config import RunReportConfig


@dataclasses.dataclass(frozen=True)
class RunReport(Report):
    """The page written, the sections it shows and those whose inputs were missing."""

    out: Path
    shown: tuple[str, ...]
    missing: tuple[str, ...]
    size_bytes: int
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """The page's path and size, then the sections shown and those missing."""
        lines = [f"run report: {self.out} ({self.size_bytes / 1024:.0f} KiB, self-contained)",
                 f"  sections: {', '.join(self.shown) or 'none'}"]
        if self.missing:
            lines.append(f"  missing (the page says what each needs): {', '.join(self.missing)}")
        return "\n".join(lines)


def _guarded(key: str, heading: str, build: Callable[[], Section]) -> Section:
    """``build()``, or a section that names the error when its inputs cannot be read."""
    try:
        return build()
    except Exception as exc:  # a report of a broken run still shows everything else
        return Section(key, heading, missing=f"could not be read: {type(exc).__name__}: {exc}")


def run(cfg: RunReportConfig) -> RunReport:
    """Write the run report of ``cfg.run_dir``.

    Args:
        cfg: the run folder, the output file and the thumbnail and table limits.

    Returns:
        The page written (``cfg.out`` or ``run_dir/report.html``) with the sections shown and missing.
    """
    if not cfg.run_dir.is_dir():
        raise ConfigError(f"run_dir: {cfg.run_dir} is not a folder")
    out = cfg.target()
    layout = find_layout(cfg.run_dir, cfg.search_depth)
    thumbs = galleries.Thumbs(out, cfg.thumb_px, cfg.max_images, cfg.max_rows)
    builders: list[tuple[str, str, Callable[[], Section]]] = [
        ("cohort", "Cohort summary", lambda: cohort.cohort_section(layout, cfg.max_rows)),
        ("qc", "Quality control", lambda: cohort.qc_section(layout, cfg.max_rows)),
        ("failures", "Stages and failures", lambda: cohort.failures_section(layout, cfg.max_rows)),
        ("montages", "Cluster montages", lambda: galleries.montages_section(layout, thumbs)),
        ("maps", "Finding maps", lambda: galleries.maps_section(layout, thumbs)),
        ("roc", "Diagnosis: ROC curves and AUC", lambda: statistics.roc_section(layout, thumbs)),
        ("comparison", "Integrated vs non-integrated", lambda: statistics.comparison_section(layout, thumbs)),
        ("survival", "Survival", lambda: statistics.survival_section(layout, thumbs)),
        ("explain", "Activation clustering", lambda: galleries.explain_section(layout, thumbs)),
        ("settings", "Settings and versions", lambda: provenance.provenance_section(layout, cfg.max_rows)),
    ]
    sections = [_guarded(key, heading, build) for key, heading, build in builders]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = page(cfg.title, [f"Run folder: {cfg.run_dir}", f"Written {stamp}."], sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    shown = tuple(s.key for s in sections if s.body)
    missing = tuple(s.key for s in sections if not s.body)
    return RunReport(out, shown, missing, len(text.encode("utf-8")))
