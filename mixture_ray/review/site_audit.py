"""Batch-effect audit: how far each cluster's site mix departs from the cohort's, and NMI(cluster, site).

A cluster made of one site's tiles is often a scanner or staining signature rather than a finding.
For each cluster, with ``p`` its site distribution and ``q`` the cohort's (both over the tiles of
the clustering whose site is known), the audit reports:

- **purity**: the largest single-site share of the cluster, ``max_s p_s``. Easy to read but not
  comparable: when one site holds 90 % of the cohort, every cluster looks about 90 % "pure".
- **enrichment** of a site: ``p_s / q_s`` (1 = the cohort's share; 3 = three times it).
- **site score** (the headline): ``max_s (p_s - q_s) / (1 - q_s)``, clipped at 0. It is the
  chance-corrected share of the cluster's most over-represented site, the form of Cohen's kappa:
  how far that share has moved from what a cluster independent of site would hold (``q_s``)
  toward "only this site" (1). Both ends mean the same in every cohort, whatever the number of
  sites and however unequal they are: 0 = no site is over-represented (the cluster mirrors the
  cohort), 1 = every tile comes from one site. The alternatives are not: the total-variation
  distance to the cohort reaches only ``1 - q_s`` for a one-site cluster (2/3 with three equal
  sites, 1/10 for a site with 90 % of the tiles), and an entropy ratio ignores *which* sites a
  cluster holds (a cluster 10/80/10 over a cohort 80/10/10 would score 0). A score of at least
  0.5 always names the cluster's majority site.

A cluster is flagged **one site** when its score is at least the review setting ``site_flag``.
Per clustering the audit also gives the normalised mutual information (scikit-learn, arithmetic
mean) between cluster and site, a batch-effect index: 0 = clusters independent of site, 1 = the
clusters are the sites. Like any NMI it grows a little by chance with many small clusters.
Tiles whose site is not known are left out of every figure (and counted).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from mixture_ray.locations import Location
from mixture_ray.store.folder import write_json_atomic

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

#: Columns of ``site_audit.csv``, one row per clustering and cluster.
CSV_COLUMNS = (
    "clustering", "magnification", "k", "cluster", "tiles", "tiles_with_site", "n_sites", "site",
    "share", "cohort_share", "enrichment", "purity", "site_score", "one_site",
)
#: The score's definition, recorded in ``site_audit.json``.
SCORE_TEXT = (
    "site_score = max over sites s of (p_s - q_s) / (1 - q_s), clipped at 0; p = the cluster's site "
    "shares, q = the clustering's (tiles with a known site): 0 = mirrors the cohort, 1 = one site only"
)


@dataclasses.dataclass(frozen=True)
class ClusterSites:
    """One cluster's site audit.

    Attributes:
        cluster: cluster id.
        tiles: tiles in the cluster.
        with_site: of which have a known site (the figures below count only these).
        n_sites: distinct known sites among them.
        site: the most over-represented site (highest score; "" when no tile has a site).
        share: that site's share of the cluster.
        cohort_share: that site's share of the clustering's tiles.
        purity: the largest single-site share of the cluster (any site).
        score: the site score in [0, 1] (NaN when no tile has a site).
        flagged: score >= the ``site_flag`` threshold.
    """

    cluster: int
    tiles: int
    with_site: int
    n_sites: int
    site: str
    share: float
    cohort_share: float
    purity: float
    score: float
    flagged: bool

    @property
    def enrichment(self) -> float:
        """``share / cohort_share``: how many times its cohort share the site holds (NaN if unknown)."""
        return self.share / self.cohort_share if self.cohort_share > 0 else math.nan


@dataclasses.dataclass(frozen=True)
class SiteAudit:
    """The site audit of one clustering (a magnification and k).

    Attributes:
        label: the clustering's page label, ``<mag>-k<k>``.
        magnification: its magnification (None when unknown).
        k: its k.
        threshold: the ``site_flag`` setting a cluster's score must reach to be flagged.
        skipped: why there is no audit (no site known, one site only); None when there is one.
        nmi: normalised mutual information between cluster and site (None when skipped).
        sites: each site's share of the tiles with a known site.
        with_site: tiles with a known site.
        without_site: tiles left out because their site is not known.
        clusters: one entry per cluster, in cluster order (empty when skipped).
    """

    label: str
    magnification: float | None
    k: int
    threshold: float
    skipped: str | None = None
    nmi: float | None = None
    sites: dict[str, float] = dataclasses.field(default_factory=dict)
    with_site: int = 0
    without_site: int = 0
    clusters: tuple[ClusterSites, ...] = ()

    @property
    def flagged(self) -> tuple[ClusterSites, ...]:
        """The clusters flagged as one site."""
        return tuple(c for c in self.clusters if c.flagged)

    def get(self, cluster: int) -> ClusterSites | None:
        """The audit of one cluster, or None when it has none."""
        return next((c for c in self.clusters if c.cluster == cluster), None)


def site_score(cluster: Mapping[str, float], cohort: Mapping[str, float]) -> tuple[str, float]:
    """The most over-represented site of a cluster and its chance-corrected share (the site score).

    Args:
        cluster: site -> share of the cluster's tiles (sums to 1).
        cohort: site -> share of the cohort's tiles (sums to 1, at least two sites, a superset of
            ``cluster``'s sites).

    Returns:
        The site with the highest ``(p - q) / (1 - q)`` (ties: by name) and that value clipped to
        [0, 1]: 0 when the cluster mirrors the cohort, 1 when all its tiles come from one site.
    """
    scored = sorted((s, (p - cohort[s]) / (1.0 - cohort[s])) for s, p in cluster.items() if p > 0)
    site, best = max(scored, key=lambda item: item[1])  # the first best: ties go to the first name
    return site, min(1.0, max(0.0, best))


def site_nmi(clusters: Sequence[Any] | pd.Series, sites: Sequence[Any] | pd.Series) -> float:
    """Normalised mutual information between cluster and site (scikit-learn, arithmetic mean).

    Args:
        clusters: the cluster of each tile.
        sites: the site of each tile, aligned with ``clusters``.

    Returns:
        0 when the clusters are independent of site, 1 when clusters and sites coincide.
    """
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(pd.factorize(pd.Series(sites))[0],
                                              pd.factorize(pd.Series(clusters))[0]))


def audit_clustering(
    clusters: pd.Series, sites: pd.Series | None, *, label: str, magnification: float | None, k: int,
    threshold: float,
) -> SiteAudit:
    """The site audit of one clustering.

    Args:
        clusters: the cluster of each tile (the assignments' ``cluster`` column).
        sites: the site of each tile, aligned with ``clusters``, None where unknown
            (:func:`mixture_ray.review.mix.tile_sites`); None when no site is known at all.
        label: the clustering's page label.
        magnification: its magnification (None when unknown).
        k: its k.
        threshold: the score at or above which a cluster is flagged as one site.

    Returns:
        The audit, or one with ``skipped`` set when fewer than two sites are known.
    """
    base = SiteAudit(label, magnification, k, threshold)
    if sites is None:
        return dataclasses.replace(base, skipped="no site known: no site column in the assignments, "
                                   "the manifest or the tile store")
    frame = pd.DataFrame({"cluster": clusters.astype("int64").to_numpy(), "site": sites.to_numpy()})
    known = frame[frame["site"].notna()]
    cohort = known["site"].value_counts(normalize=True).sort_index()
    base = dataclasses.replace(base, with_site=len(known), without_site=len(frame) - len(known))
    if len(cohort) < 2:
        why = f"every tile with a site is from {cohort.index[0]}" if len(cohort) else "no tile has a site"
        return dataclasses.replace(base, skipped=f"{why}: nothing to compare")
    counts = known.groupby(["cluster", "site"]).size()
    sizes = frame["cluster"].value_counts()
    audits, with_site = [], set(counts.index.get_level_values("cluster"))
    for cid in sorted(int(c) for c in sizes.index):
        found = counts.xs(cid, level="cluster") if cid in with_site else counts.iloc[:0]
        audits.append(_cluster(cid, int(sizes[cid]), found, cohort, threshold))
    return dataclasses.replace(
        base, nmi=site_nmi(known["cluster"], known["site"]),
        sites={str(s): float(v) for s, v in cohort.items()}, clusters=tuple(audits),
    )


def _cluster(cid: int, tiles: int, counts: pd.Series, cohort: pd.Series, threshold: float) -> ClusterSites:
    total = int(counts.sum())
    if total == 0:
        return ClusterSites(cid, tiles, 0, 0, "", math.nan, math.nan, math.nan, math.nan, False)
    shares = {str(s): int(n) / total for s, n in counts.items()}
    site, score = site_score(shares, {str(s): float(v) for s, v in cohort.items()})
    return ClusterSites(
        cid, tiles, total, len(shares), site, shares[site], float(cohort[site]),
        max(shares.values()), score, score >= threshold,
    )


def audit_rows(audits: Sequence[SiteAudit]) -> pd.DataFrame:
    """``site_audit.csv``: one row per cluster of every audited clustering (columns :data:`CSV_COLUMNS`)."""
    rows = [
        {
            "clustering": a.label, "magnification": a.magnification, "k": a.k, "cluster": c.cluster,
            "tiles": c.tiles, "tiles_with_site": c.with_site, "n_sites": c.n_sites, "site": c.site,
            "share": c.share, "cohort_share": c.cohort_share, "enrichment": c.enrichment,
            "purity": c.purity, "site_score": c.score, "one_site": c.flagged,
        }
        for a in audits
        for c in a.clusters
    ]
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def audit_summary(audits: Sequence[SiteAudit], threshold: float) -> dict[str, Any]:
    """``site_audit.json``: per clustering the NMI, the site shares and the flagged clusters.

    Args:
        audits: one per clustering reviewed.
        threshold: the ``site_flag`` setting.

    Returns:
        A JSON-ready dict: ``score`` (its definition), ``site_flag`` and ``clusterings``
        (label -> magnification, k, nmi, sites, tile counts, flagged clusters, skipped reason).
    """
    return {
        "score": SCORE_TEXT,
        "site_flag": threshold,
        "clusterings": {
            a.label: {
                "magnification": a.magnification,
                "k": a.k,
                "nmi_cluster_site": a.nmi,
                "skipped": a.skipped,
                "sites": a.sites,
                "tiles_with_site": a.with_site,
                "tiles_without_site": a.without_site,
                "clusters": len(a.clusters),
                "flagged": [
                    {"cluster": c.cluster, "tiles": c.tiles, "site": c.site, "share": c.share,
                     "cohort_share": c.cohort_share, "site_score": c.score}
                    for c in a.flagged
                ],
            }
            for a in audits
        },
    }


def audit_line(audit: SiteAudit) -> str:
    """One plain line for the stage summary: NMI and flagged clusters, or why it was skipped."""
    if audit.skipped is not None:
        return f"site audit {audit.label}: skipped ({audit.skipped})"
    flagged = ", ".join(str(c.cluster) for c in audit.flagged) or "none"
    return (
        f"site audit {audit.label}: NMI(cluster, site) {audit.nmi:.2f}; "
        f"{len(audit.flagged)} of {len(audit.clusters)} clusters one site "
        f"(score >= {audit.threshold:g}): {flagged}"
    )


#: The audit's files, written beside the review pages.
CSV_NAME, JSON_NAME = "site_audit.csv", "site_audit.json"


def write_site_audit(out_dir: Path, audits: Sequence[SiteAudit], threshold: float) -> list[Path]:
    """Write ``site_audit.csv`` and ``site_audit.json`` atomically, or remove stale ones.

    Args:
        out_dir: the review folder (beside the pages).
        audits: one per clustering reviewed.
        threshold: the ``site_flag`` setting.

    Returns:
        The two files, or an empty list (and any earlier audit files removed, so none is left
        from another cohort) when no clustering could be audited.
    """
    paths = [out_dir / CSV_NAME, out_dir / JSON_NAME]
    if all(a.skipped is not None for a in audits):
        for path in paths:
            path.unlink(missing_ok=True)
        return []
    Location.of(paths[0]).write_text(audit_rows(audits).to_csv(index=False))
    write_json_atomic(paths[1], audit_summary(audits, threshold))
    return paths
