"""`mixture-ray review`: montage PNGs and one review page per (magnification, k).

Layout (the page loads its montages from the folder beside it: move ``out_dir`` as a whole)::

    out_dir/review-<mag>-k<k>.html                 the page (small: montages are linked, lazily loaded)
    out_dir/montages/<mag>/k<k>/cluster-<id>.png   up to ``per_cluster`` random tiles each
    out_dir/mapping-oracle-<mag>-k<k>.yaml         only with ``oracle_cohort`` (simulation)
    out_dir/site_audit.csv, site_audit.json        the batch-effect audit (only when sites are known;
                                                   see :mod:`mixture_ray.review.site_audit`)

The tile store is a local folder or an object-store URI. Its index names the parts of each slide,
so the montages read only the parts that hold the sampled tiles' slides, one Ray task per part
(:mod:`mixture_ray.review.tile_parts`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pyarrow.parquet as pq

from mixture_ray.locations import read_parquet_files
from mixture_ray.paths import recorded_path
from mixture_ray.report import Failure, Report
from mixture_ray.review.mapping import dump_mapping
from mixture_ray.review.mix import cluster_mixes, read_sites, tile_sites
from mixture_ray.review.montage import montage_png, montage_size, sample_per_cluster
from mixture_ray.review.page import ClusterCard, render_review_page
from mixture_ray.review.site_audit import SiteAudit, audit_clustering, audit_line, write_site_audit
from mixture_ray.review.tile_parts import TileParts, fetch_images
from mixture_ray.store.schemas import TILE_KEY
from mixture_ray.synth.oracle import ORACLE_SOURCE, oracle_clusters, tile_truth

if TYPE_CHECKING:
    import pandas as pd

    from mixture_ray.review.config import ReviewConfig


@dataclasses.dataclass(frozen=True)
class ReviewReport(Report):
    """Pages, oracle mappings and site-audit files written, with a line per clustering's audit."""

    pages: list[Path]
    oracle_mappings: list[Path]
    complete: bool = True
    failures: tuple[Failure, ...] = ()
    site_audit: list[Path] = dataclasses.field(default_factory=list)
    site_audit_lines: tuple[str, ...] = ()

    def summary(self) -> str:
        """The pages to open, the oracle mappings written and the site audit (or why it was skipped)."""
        lines = [f"review page: {page}" for page in self.pages]
        lines += [f"oracle mapping (simulated pathologist): {m}" for m in self.oracle_mappings]
        lines += [f"site audit: {path}" for path in self.site_audit]
        lines += list(self.site_audit_lines)
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
    tile_parts = TileParts.open(cfg.tiles)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    sites = read_sites(cfg.manifest, tile_parts)
    pages, oracles, audits = [], [], []
    for folder in clustering_folders(cfg.clusters, cfg.ks):
        metrics = json.loads((folder / "metrics.json").read_text())
        assignments = pq.read_table(folder / "assignments.parquet").to_pandas()
        if "fitted" in assignments.columns:  # fold-nested: pages and oracle see training cases only
            assignments = assignments[assignments["fitted"]].reset_index(drop=True)
        mag = folder.parent.name.removeprefix("mag-")
        label = f"{mag}-{folder.name.replace('-', '')}"
        path = cfg.out_dir / f"review-{label}.html"
        montage_dir = cfg.out_dir / "montages" / mag / folder.name.replace("-", "")
        cards = write_montages(cfg, assignments, tile_parts, montage_dir, path.parent)
        mixes = cluster_mixes(assignments, sites=sites, top=cfg.mix_top)
        audit = site_audit(cfg, assignments, sites, label, metrics)
        audits.append(audit)
        page = render_review_page(
            cards=[
                dataclasses.replace(card, mix=mixes.get(card.cluster, ()), sites=audit.get(card.cluster))
                for card in cards
            ],
            findings=cfg.findings,
            clustering=recorded_path(folder),
            magnification=metrics["magnification"],
            k=int(metrics["k"]),
            site_audit=audit,
        )
        path.write_text(page, encoding="utf-8")
        pages.append(path)
        if cfg.oracle_cohort is not None:
            oracles.append(write_oracle(cfg, folder, assignments, metrics, label, tile_parts))
    written = write_site_audit(cfg.out_dir, audits, cfg.site_flag)
    return ReviewReport(pages, oracles, site_audit=written, site_audit_lines=tuple(map(audit_line, audits)))


def site_audit(
    cfg: ReviewConfig, assignments: pd.DataFrame, sites: dict[str, str] | None, label: str,
    metrics: dict[str, object],
) -> SiteAudit:
    """The batch-effect audit of one clustering (sites from its assignments, else ``sites``)."""
    magnification = metrics.get("magnification")
    mag = float(str(magnification)) if magnification is not None else None
    return audit_clustering(
        assignments["cluster"], tile_sites(assignments, sites), label=label,
        magnification=None if mag is None or math.isnan(mag) else mag, k=int(str(metrics["k"])),
        threshold=cfg.site_flag,
    )


def write_montages(
    cfg: ReviewConfig, assignments: pd.DataFrame, tile_parts: TileParts, montage_dir: Path, page_dir: Path
) -> list[ClusterCard]:
    """Draw each cluster's montage into ``montage_dir`` and describe it for the page.

    Args:
        cfg: montage settings (``per_cluster``, ``thumb_px``, ``seed``).
        assignments: the clustering's tiles (key columns and ``cluster``).
        tile_parts: the tile store holding the pixels (only the sampled slides' parts are read).
        montage_dir: where ``cluster-<id>.png`` files go.
        page_dir: the page's folder; the cards link the montages relative to it.

    Returns:
        One card per cluster, in cluster order, without its slide/case mix.
    """
    sample = sample_per_cluster(assignments, cfg.per_cluster, cfg.seed)
    images = fetch_images(tile_parts, sample[[*TILE_KEY, "cluster"]])
    sizes = assignments["cluster"].value_counts()
    montage_dir.mkdir(parents=True, exist_ok=True)
    cards = []
    for cluster, rows in images.groupby("cluster", sort=True):
        cid = int(str(cluster))
        stored = [b for b in rows["image"] if isinstance(b, bytes)]
        file = montage_dir / f"cluster-{cid}.png"
        file.write_bytes(montage_png(stored, thumb=cfg.thumb_px))
        url = quote(file.relative_to(page_dir).as_posix())
        size = montage_size(len(stored), cfg.thumb_px)
        cards.append(ClusterCard(cid, int(sizes[cid]), len(stored), url, size))
    return cards


def write_oracle(
    cfg: ReviewConfig,
    folder: Path,
    assignments: pd.DataFrame,
    metrics: dict[str, object],
    label: str,
    tile_parts: TileParts,
) -> Path:
    """Oracle mapping of one clustering from the synthetic ground truth (a simulation).

    The tiles' level-0 sizes are read from the parts that hold the clustering's slides (two key
    columns and one size column; a simulation's store is small).
    """
    assert cfg.oracle_cohort is not None
    parts = tile_parts.holding(assignments["slide_id"].astype(str).unique())
    if parts:
        sizes = read_parquet_files(parts, columns=[*TILE_KEY, "size_level0"]).to_pandas()
        keyed = assignments.merge(sizes, on=list(TILE_KEY), how="left")
    else:
        keyed = assignments.assign(size_level0=float("nan"))
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
