"""Cohort sections: slides, cases and tiles per magnification; failures of every stage; QC decisions."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from mixture_ray.run_report.markup import Section, esc, table
from mixture_ray.store.folder import INCOMPLETE, SUCCESS, StageFolder, read_failures
from mixture_ray.store.schemas import magnification_label

if TYPE_CHECKING:
    from pathlib import Path

    from mixture_ray.run_report.locate import RunLayout
    from mixture_ray.store.store_index import SlideEntry

QC_COLUMNS = ("slide_id", "decision", "reason")


def status(folder: Path) -> str:
    """``complete``, ``incomplete`` (some items failed) or ``no marker`` (not finished)."""
    if (folder / SUCCESS).is_file():
        return "complete"
    return "incomplete" if (folder / INCOMPLETE).is_file() else "no marker (running, interrupted or not run)"


def tile_counts(store: Path) -> pd.DataFrame:
    """Per magnification of a tile store's committed rows: tiles, slides, cases.

    From the store's index (rows per slide and magnification, each slide's case): no data file is
    opened. Stores whose markers predate those counts are read, three metadata columns a file.
    """
    entries = {s: e for s, e in StageFolder(store, stage="").index().slides.items() if e.complete and e.rows}
    if entries and all(e.case is not None and e.magnifications for e in entries.values()):
        return _counts_table(*_index_counts(entries))
    return _counts_table(*_file_counts(store))


Counts = tuple[dict[str, int], dict[str, set[str]], dict[str, set[str]]]


def _index_counts(entries: dict[str, SlideEntry]) -> Counts:
    tiles: dict[str, int] = defaultdict(int)
    slides: dict[str, set[str]] = defaultdict(set)
    cases: dict[str, set[str]] = defaultdict(set)
    for slide, entry in entries.items():
        for mag, n in entry.magnifications.items():
            label = magnification_label(None if mag == "unknown" else float(mag))
            for key in (label, "all"):
                tiles[key] += n
                slides[key].add(slide)
                cases[key].add(str(entry.case))
    return tiles, slides, cases


def _file_counts(store: Path) -> Counts:
    tiles: dict[str, int] = defaultdict(int)
    slides: dict[str, set[str]] = defaultdict(set)
    cases: dict[str, set[str]] = defaultdict(set)
    for file in StageFolder(store, stage="").data_files():
        rows = pq.read_table(file, columns=["slide_id", "case_id", "magnification"]).to_pandas()
        rows["label"] = [magnification_label(None if pd.isna(m) else float(m)) for m in rows["magnification"]]
        for label, group in rows.groupby("label"):
            for key in (str(label), "all"):
                tiles[key] += len(group)
                slides[key].update(group["slide_id"].astype(str))
                cases[key].update(group["case_id"].astype(str))
    return tiles, slides, cases


def _counts_table(tiles: dict[str, int], slides: dict[str, set[str]],
                  cases: dict[str, set[str]]) -> pd.DataFrame:
    order = sorted((k for k in tiles if k != "all"), key=_magnification_order) + (["all"] if tiles else [])
    return pd.DataFrame({"magnification": order, "tiles": [tiles[k] for k in order],
                         "slides": [len(slides[k]) for k in order], "cases": [len(cases[k]) for k in order]})


def _magnification_order(label: str) -> float:
    return float(label.removesuffix("x")) if label.endswith("x") else float("inf")


def cohort_section(layout: RunLayout, max_rows: int) -> Section:
    """Slides, cases and tiles per magnification of every tile store in the run."""
    heading = "Cohort summary"
    if not layout.tiles:
        return Section("cohort", heading, missing=(
            "No tile store found (a folder written by `mixture-ray tile` or `import-images`, e.g. tiles/): "
            "no slide, case or tile counts."))
    parts = []
    for store in layout.tiles:
        counts = tile_counts(store)
        caption = f"Tile store {layout.label(store)} ({status(store)})"
        parts.append(table(counts, caption, max_rows))
    return Section("cohort", heading, "".join(parts))


def failures_section(layout: RunLayout, max_rows: int) -> Section:
    """Each stage folder's state and failure count, then every failure row (item and reason)."""
    heading = "Stages and failures"
    if not layout.stage_dirs:
        return Section("failures", heading, missing=(
            "No stage folder found (none holds _settings.json, _SUCCESS, _INCOMPLETE.json or "
            "_failures.csv)."))
    summary, rows = [], []
    for folder, stage in layout.stage_dirs.items():
        failed = read_failures(folder)
        summary.append({"folder": layout.label(folder), "stage": stage or "?", "state": status(folder),
                        "failures": len(failed)})
        rows += [{"folder": layout.label(folder), "stage": r.stage, "item": r.item_id, "error": r.error}
                 for r in failed.itertuples()]
    body = table(pd.DataFrame(summary), "Stage folders", max_rows)
    body += table(pd.DataFrame(rows, columns=["folder", "stage", "item", "error"]),
                  "Failed items (from each _failures.csv)", max_rows)
    return Section("failures", heading, body)


def qc_section(layout: RunLayout, max_rows: int) -> Section:
    """Decision counts and rows of each qc.parquet (slide_id, decision, reason: those present)."""
    heading = "Quality control"
    if not layout.qc:
        return Section("qc", heading, missing="No QC output found (a qc/ folder holding qc.parquet).")
    parts = []
    for folder in layout.qc:
        names = pq.read_schema(folder / "qc.parquet").names
        present = [c for c in QC_COLUMNS if c in names]
        lacking = [c for c in QC_COLUMNS if c not in names]
        if lacking:
            parts.append(f'<p class="missing">{esc(layout.label(folder))}/qc.parquet has no column(s) '
                         f"{esc(', '.join(lacking))}.</p>")
        if not present:
            continue
        frame = pd.read_parquet(folder / "qc.parquet", columns=present)
        if "decision" in frame:
            decisions = frame["decision"].astype(str).value_counts().rename_axis("decision")
            counts = decisions.reset_index(name="slides")
            parts.append(table(counts, f"QC decisions ({layout.label(folder)})", max_rows))
        parts.append(table(frame, f"QC per slide ({layout.label(folder)})", max_rows))
    return Section("qc", heading, "".join(parts))
