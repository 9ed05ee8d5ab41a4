"""`mixture-ray review` and `integrate` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri

FINDINGS_20X = (
    "dense_fibrosis",
    "elastosis",
    "fibroblastic_foci",
    "fat",
    "mucin",
    "bronchiolar_epithelium",
    "lymphocyte_aggregation",
)


@dataclasses.dataclass(frozen=True)
class ReviewConfig:
    """`mixture-ray review`: montages and a review page (no server needed) per magnification and k."""

    clusters: Path = option("clustering folder written by `mixture-ray cluster`")
    tiles: Path | Uri = option("tile store (folder or URI) the embeddings came from (for the montage pixels)")
    out_dir: Path = option("folder for pages, montages and (optionally) oracle mappings")
    findings: tuple[str, ...] = option(
        "finding names offered for each cluster (plus other, exclude)", list(FINDINGS_20X)
    )
    ks: tuple[int, ...] = option("only these k (empty = every clustering found)", [])
    per_cluster: int = option("tiles per montage, drawn at random with the seed", 120)
    thumb_px: int = option("montage cell edge in pixels", 96)
    seed: int = option("random seed of the montage sampling", 0)
    manifest: Path | None = option(
        "slide manifest (CSV/Parquet) whose optional site column adds each cluster's site mix "
        "(else a site column of the tile store is used; with neither, sites are left out)",
        None,
    )
    mix_top: int = option("slides, cases and sites named per cluster, with their share of its tiles", 3)
    site_flag: float = option(
        "site audit: a cluster is flagged 'one site' when its site score reaches this (0 = its site "
        "mix is the cohort's, 1 = all its tiles from one site; see mixture_ray.review.site_audit)",
        0.75,
    )
    oracle_cohort: Path | None = option(
        "synthetic cohort folder: also write an oracle mapping from its ground truth (a simulation "
        "of the pathologist for tests and the demo, not a feature of real use)",
        None,
    )
    oracle_purity: float = option(
        "oracle: clusters whose majority finding is below this share are excluded", 0.6
    )

    def validate(self) -> None:
        """Check sizes > 0, unreserved findings, site_flag in [0, 1] and oracle_purity in (0, 1]."""
        require_positive(self, "per_cluster", "thumb_px", "mix_top")
        if not self.findings:
            raise ConfigError("findings: give at least one finding name")
        bad = [f for f in self.findings if f in ("other", "exclude") or not f.strip()]
        if bad:
            raise ConfigError(f"findings: {bad} are reserved or empty names")
        if not 0.0 <= self.site_flag <= 1.0:
            raise ConfigError(f"site_flag: must be in [0, 1] (got {self.site_flag})")
        if not 0.0 < self.oracle_purity <= 1.0:
            raise ConfigError(f"oracle_purity: must be in (0, 1] (got {self.oracle_purity})")


@dataclasses.dataclass(frozen=True)
class IntegrateConfig:
    """`mixture-ray integrate`: mapping file(s) + assignments -> a labelled tile set."""

    mappings: tuple[Path, ...] = option("mapping files, applied in order (later ones override)")
    out_dir: Path = option("labelled tile set folder")
    findings: tuple[str, ...] = option("finding names the mappings may use", list(FINDINGS_20X))
    corrections: Path | None = option(
        "CSV of tile-level corrections: slide_id, x, y, magnification, finding", None
    )

    def validate(self) -> None:
        """Check at least one mapping file is given."""
        if not self.mappings:
            raise ConfigError("mappings: give at least one mapping file")
