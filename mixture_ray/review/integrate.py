"""`mixture-ray integrate`: cluster assignments + mapping file(s) -> a labelled tile set.

Mappings apply in order (a principal clustering, then e.g. per-case supplemental ones): each
tile takes the finding its cluster maps to, later mappings override earlier ones for the tiles
they cover, ``exclude`` drops the tile, ``other`` stays a class. A corrections CSV (slide_id, x,
y, magnification, finding) overrides single tiles last. Everything is validated first and every
problem is reported at once; nothing is written when anything is invalid. A fold-nested clustering
(``cluster.fit_split``: a ``fitted`` column) labels only the tiles of its training cases.

Output: ``out_dir/labels.parquet`` (slide_id, case_id, x, y, magnification, finding, source)
and ``out_dir/_SUCCESS`` with the class counts.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mixture_ray.report import Failure, Report
from mixture_ray.review.mapping import SPECIAL, Mapping, MappingError, load_mapping
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.schemas import EXCLUDE, TILE_ID_COLUMNS, TILE_KEY

if TYPE_CHECKING:
    from mixture_ray.review.config import IntegrateConfig

KEY = list(TILE_KEY)


@dataclasses.dataclass(frozen=True)
class IntegrateReport(Report):
    """Where the labels went and how many tiles each class has."""

    path: Path
    counts: dict[str, int]
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """Where the labels went and the tiles per finding."""
        counts = ", ".join(f"{name} {n}" for name, n in self.counts.items())
        return f"labelled tiles: {self.path} ({counts})"


def _load_all(cfg: IntegrateConfig) -> tuple[list[Mapping], list[str]]:
    mappings, problems = [], []
    for path in cfg.mappings:
        try:
            mappings.append(load_mapping(path, cfg.findings))
        except MappingError as exc:
            problems.append(str(exc))
    return mappings, problems


def _corrections(
    path: Path, findings: tuple[str, ...], tiles: pd.DataFrame, problems: list[str]
) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = [c for c in [*KEY, "finding"] if c not in frame.columns]
    if missing:
        problems.append(f"corrections {path}: missing column(s) {', '.join(missing)}")
        return frame.iloc[:0]
    known = set(findings) | set(SPECIAL)
    bad = frame.index[~frame["finding"].isin(known)]
    if len(bad):
        problems.append(
            f"corrections {path}: unknown finding in row(s) {', '.join(str(i + 2) for i in bad[:20])}"
        )
    frame["magnification"] = frame["magnification"].astype(float)
    found = frame.merge(tiles[KEY].drop_duplicates(), on=KEY, how="left", indicator=True)
    absent = found.index[found["_merge"] == "left_only"]
    if len(absent):
        problems.append(
            f"corrections {path}: row(s) {', '.join(str(i + 2) for i in absent[:20])} name tiles "
            "that are in no clustering"
        )
    return frame


def run_integrate(cfg: IntegrateConfig) -> IntegrateReport:
    """Validate everything, then write the labelled tile set.

    Args:
        cfg: the mapping files (and optional corrections) and the output folder.

    Returns:
        The labels file and the tile count per finding.
    """
    mappings, problems = _load_all(cfg)
    labelled = []
    for order, mapping in enumerate(mappings):
        rows = pq.read_table(mapping.clustering / "assignments.parquet").to_pandas()
        if "fitted" in rows.columns:  # a fold-nested clustering: test-case tiles never become labels
            rows = rows[rows["fitted"]]
        rows["finding"] = rows["cluster"].map(mapping.clusters)
        rows["source"] = f"{mapping.path.name}: cluster " + rows["cluster"].astype(str)
        rows["order"] = order
        labelled.append(rows)
    tiles = pd.concat(labelled, ignore_index=True) if labelled else pd.DataFrame(columns=[*KEY, "finding"])
    tiles["magnification"] = tiles["magnification"].astype(float)
    corrections = _corrections(cfg.corrections, cfg.findings, tiles, problems) if cfg.corrections else None
    if problems:
        raise MappingError("integration refused, nothing written:\n  " + "\n  ".join(problems))
    tiles = tiles.sort_values("order").drop_duplicates(KEY, keep="last")
    if cfg.corrections is not None and corrections is not None and len(corrections):
        fixes = corrections[[*KEY, "finding"]].rename(columns={"finding": "corrected"})
        tiles = tiles.merge(fixes.drop_duplicates(KEY, keep="last"), on=KEY, how="left")
        hit = tiles["corrected"].notna()
        tiles["finding"] = tiles["finding"].where(~hit, tiles["corrected"])
        tiles["source"] = tiles["source"].where(~hit, f"corrections: {cfg.corrections.name}")
    tiles = tiles[tiles["finding"] != EXCLUDE]
    out = tiles[[*TILE_ID_COLUMNS, "finding", "source"]].reset_index(
        drop=True
    )
    folder = StageFolder(cfg.out_dir, stage="integrate", item_column=None,
                         inputs=[m.clustering for m in mappings])
    folder.start()
    tmp = cfg.out_dir / ".labels.parquet.tmp"
    pq.write_table(pa.Table.from_pandas(out, preserve_index=False), tmp)
    os.replace(tmp, cfg.out_dir / "labels.parquet")
    counts = {str(k): int(v) for k, v in out["finding"].value_counts().items()}
    folder.finish(requested=[], failures=[],
                  extra={"tiles": len(out), "counts": counts, "mappings": [str(m.path) for m in mappings]})
    return IntegrateReport(cfg.out_dir / "labels.parquet", counts)
