"""`mixture-ray qc`: one Ray task per slide measures it and decides pass, flag or fail.

Output folder::

    out_dir/qc.parquet, qc.csv     one row per slide: every metric, decision and reason
    out_dir/thumbnails/<slide>.png the slide with pen (magenta), folds (orange), sampled tiles
                                   (green; blurry ones red) drawn
    out_dir/masks/<slide>.png      flagged regions (white) for tile to leave out; its level-0
                                   downsample is the table's ``mask_downsample``
    out_dir/index.html             self-contained summary page
    out_dir/_failures.csv, and _SUCCESS (every slide read) or _INCOMPLETE.json
"""

from __future__ import annotations

import dataclasses
import math
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow.parquet as pq

from mixture_ray.qc.decide import DECISIONS, FAIL
from mixture_ray.qc.page import render_page
from mixture_ray.qc.slide import MASKS, THUMBNAILS, qc_slide
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.manifest import read_manifest
from mixture_ray.store.qc_table import CSV, TABLE, to_table

if TYPE_CHECKING:
    from mixture_ray.qc.config import QcConfig

PAGE = "index.html"


@dataclasses.dataclass(frozen=True)
class QcReport(Report):
    """The QC table, its page, and slides that could not be read."""

    out_dir: Path
    table: pd.DataFrame
    page: Path
    failures: list[Failure]
    complete: bool

    def summary(self) -> str:
        """Counts per decision, where the table and page are, and unreadable slides."""
        counts = ", ".join(f"{int((self.table.decision == d).sum())} {d}" for d in DECISIONS)
        lines = [f"qc {self.out_dir}: {len(self.table)} slides: {counts}",
                 f"  table: {self.out_dir / TABLE} (and {CSV}); page: {self.page}"]
        if self.failures:
            lines += ["  slides that could not be read:", *self.failure_lines()]
        return "\n".join(lines)


def _safe_qc(cfg: QcConfig, slide_id: str, case_id: str, path: str, mpp: float | None) -> dict[str, Any]:
    try:
        return qc_slide(cfg, slide_id, case_id, path, mpp)
    except Exception as exc:  # one slide's failure is recorded, the others go on
        return {"slide_id": slide_id, "error": f"{type(exc).__name__}: {exc}"}


def run(cfg: QcConfig) -> QcReport:
    """QC every slide of the manifest, one Ray task each, then write the table and the page.

    Args:
        cfg: the manifest, the output folder and the thresholds.

    Returns:
        The QC table, the page, and the slides that could not be read (also in the table, as
        ``fail`` with the reason, so that tile skips them).
    """
    import ray

    from mixture_ray.ray_runtime import ensure_ray, slide_reader_gpus

    manifest = read_manifest(cfg.manifest)
    out_dir = Path(cfg.out_dir)
    folder = StageFolder(out_dir, stage="qc", item_column=None)
    folder.prepare(_settings(cfg))
    for sub in (THUMBNAILS, MASKS):
        (out_dir / sub).mkdir(exist_ok=True)
        for stale in (out_dir / sub).glob("*.png"):
            stale.unlink()
    ensure_ray()
    task = ray.remote(_safe_qc).options(num_cpus=1, num_gpus=slide_reader_gpus(cfg.gpus, cfg.backend))
    slides = list(manifest.itertuples(index=False))
    mpps = [None if math.isnan(m) else m for m in manifest["mpp"].astype(float).tolist()]
    refs = [task.remote(cfg, str(s.slide_id), str(s.case_id), str(s.path), m)
            for s, m in zip(slides, mpps, strict=True)]
    results = ray.get(refs)
    sources = {str(s.slide_id): (str(s.case_id), str(s.path)) for s in slides}
    errors = [r for r in results if "error" in r]
    failures = [Failure(r["slide_id"], sources[r["slide_id"]][1], r["error"]) for r in errors]
    rows = [r if "error" not in r else _unreadable(r, *sources[r["slide_id"]]) for r in results]
    table = to_table(rows)
    _write_atomic(out_dir / TABLE, lambda p: pq.write_table(table, p))
    frame = table.to_pandas()
    _write_atomic(out_dir / CSV, lambda p: frame.to_csv(p, index=False))
    page = out_dir / PAGE
    html = render_page(frame, out_dir, thumbnail_px=cfg.page_thumbnail_px)
    _write_atomic(page, lambda p: p.write_text(html, encoding="utf-8"))
    counts = {d: int((frame.decision == d).sum()) for d in DECISIONS}
    complete = folder.finish(requested=list(sources), failures=failures, extra={"decisions": counts})
    return QcReport(out_dir, frame, page, failures, complete)


def _write_atomic(target: Path, write: Any) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    write(tmp)
    os.replace(tmp, target)


def _settings(cfg: QcConfig) -> dict[str, Any]:
    fields = dataclasses.asdict(cfg)
    display_only = ("manifest", "out_dir", "backend", "gpus", "page_thumbnail_px")
    return {k: v for k, v in fields.items() if k not in display_only}


def _unreadable(result: dict[str, Any], case_id: str, path: str) -> dict[str, Any]:
    """The table row of a slide that could not be read: ``fail`` with the reason."""
    return {"slide_id": result["slide_id"], "case_id": case_id, "path": path, "decision": FAIL,
            "reason": f"unreadable: {result['error']}"}
