"""`mixture-ray review`: montage PNGs and one review page per (magnification, k).

Layout::

    out_dir/review-<mag>-k<k>.html                 self-contained page (montages embedded)
    out_dir/montages/<mag>/k<k>/cluster-<id>.png   up to ``per_cluster`` random tiles each
    out_dir/mapping-oracle-<mag>-k<k>.yaml         only with ``oracle_cohort`` (simulation)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from mixture_ray.paths import recorded_path
from mixture_ray.report import Failure, Report
from mixture_ray.review.mapping import dump_mapping
from mixture_ray.review.montage import fetch_images, montage_png, sample_per_cluster
from mixture_ray.review.page import ClusterCard, render_review_page
from mixture_ray.store.folder import committed_files
from mixture_ray.store.schemas import TILE_KEY
from mixture_ray.synth.oracle import ORACLE_SOURCE, oracle_clusters, tile_truth

if TYPE_CHECKING:
    import pandas as pd

    from mixture_ray.review.config import ReviewConfig


@dataclasses.dataclass(frozen=True)
class ReviewReport(Report):
    """Pages and oracle mappings written."""

    pages: list[Path]
    oracle_mappings: list[Path]
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """The pages to open and the oracle mappings written."""
        lines = [f"review page: {page}" for page in self.pages]
        lines += [f"oracle mapping (simulated pathologist): {m}" for m in self.oracle_mappings]
        return "\n".join(lines)


def clustering_folders(root: Path, ks: tuple[int, ...]) -> list[Path]:
    """Every ``mag-*/k-*`` (and per-case) folder of a clustering output, filtered by k."""
    folders = sorted(p.parent for p in root.glob("mag-*/*k-*/metrics.json"))
    if ks:
        folders = [f for f in folders if int(f.name.rsplit("-", 1)[1]) in ks]
    return folders


def run(cfg: ReviewConfig) -> ReviewReport:
    """Write montages and pages (and oracle mappings when asked) for each clustering.

    Args:
        cfg: the clusterings, the tile store, the finding names and the montage settings.

    Returns:
        The review pages and the oracle mappings written.
    """
    tile_files = [str(p) for p in committed_files(cfg.tiles)]
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    pages, oracles = [], []
    for folder in clustering_folders(cfg.clusters, cfg.ks):
        metrics = json.loads((folder / "metrics.json").read_text())
        assignments = pq.read_table(folder / "assignments.parquet").to_pandas()
        mag = folder.parent.name.removeprefix("mag-")
        label = f"{mag}-{folder.name.replace('-', '')}"
        sample = sample_per_cluster(assignments, cfg.per_cluster, cfg.seed)
        images = fetch_images(tile_files, sample[[*TILE_KEY, "cluster"]])
        sizes = assignments["cluster"].value_counts()
        montage_dir = cfg.out_dir / "montages" / mag / folder.name.replace("-", "")
        montage_dir.mkdir(parents=True, exist_ok=True)
        cards = []
        for cluster, rows in images.groupby("cluster", sort=True):
            cid = int(str(cluster))
            png = montage_png([b for b in rows["image"] if isinstance(b, bytes)], thumb=cfg.thumb_px)
            (montage_dir / f"cluster-{cid}.png").write_bytes(png)
            slides = sorted(set(rows["slide_id"]))[:8]
            cards.append(ClusterCard(cid, int(sizes[cid]), png, slides))
        page = render_review_page(
            cards=cards,
            findings=cfg.findings,
            clustering=recorded_path(folder),
            magnification=metrics["magnification"],
            k=int(metrics["k"]),
        )
        path = cfg.out_dir / f"review-{label}.html"
        path.write_text(page)
        pages.append(path)
        if cfg.oracle_cohort is not None:
            oracles.append(write_oracle(cfg, folder, assignments, metrics, label, tile_files))
    return ReviewReport(pages, oracles)


def write_oracle(
    cfg: ReviewConfig,
    folder: Path,
    assignments: pd.DataFrame,
    metrics: dict[str, object],
    label: str,
    tile_files: list[str],
) -> Path:
    """Oracle mapping of one clustering from the synthetic ground truth (a simulation)."""
    assert cfg.oracle_cohort is not None
    sizes = pq.read_table(
        tile_files, columns=[*TILE_KEY, "size_level0"]
    ).to_pandas()
    keyed = assignments.merge(sizes, on=list(TILE_KEY), how="left")
    truth = tile_truth(cfg.oracle_cohort, keyed)
    path = cfg.out_dir / f"mapping-oracle-{label}.yaml"
    dump_mapping(
        path,
        clustering=str(folder),
        magnification=metrics["magnification"],  # type: ignore[arg-type]
        k=int(str(metrics["k"])),
        clusters=oracle_clusters(keyed, truth, cfg.oracle_purity),
        source=ORACLE_SOURCE,
    )
    return path
