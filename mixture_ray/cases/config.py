"""`mixture-ray cases` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import option
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri


@dataclasses.dataclass(frozen=True)
class CasesConfig:
    """`mixture-ray cases`: per-case finding counts and frequencies (magnifications side by side).

    Counts are summed over all slides of a case; listed findings are dropped before normalising.
    With ``clusters`` and ``embeddings`` it also writes the non-integrated baseline: per-case
    frequencies of the nearest k-means centroid for each k.
    """

    predictions: tuple[Path | Uri, ...] = option(
        "prediction stores (folders or URIs; one per magnification) from `classify`")
    out_dir: Path = option("folder for counts/frequencies tables (CSV + Parquet) and baseline/k<k>.*")
    exclude: tuple[str, ...] = option(
        "'<mag>x/<finding>' dropped before normalising", ["5x/complete_normal"]
    )
    embeddings: tuple[Path | Uri, ...] = option(
        "embedding stores (folders or URIs) of the cohort tiles (for the non-integrated baseline)", []
    )
    clusters: Path | None = option("clustering folder (`mixture-ray cluster`) whose centroids are used", None)
    baseline_ks: tuple[int, ...] = option("k of the non-integrated baseline", [4, 8, 10, 20, 30, 50, 80])

    def validate(self) -> None:
        """Require predictions, ``<mag>x/<finding>`` excludes, embeddings with clusters, baseline_ks >= 2."""
        if not self.predictions:
            raise ConfigError("predictions: give at least one prediction store")
        bad = [e for e in self.exclude if "/" not in e or not e.split("/", 1)[0].endswith("x")]
        if bad:
            raise ConfigError(f"exclude: {bad} are not '<mag>x/<finding>' (e.g. 5x/complete_normal)")
        if bool(self.embeddings) != (self.clusters is not None):
            raise ConfigError("embeddings / clusters: give both (baseline) or neither")
        if any(k < 2 for k in self.baseline_ks):
            raise ConfigError(f"baseline_ks: must be >= 2 (got {list(self.baseline_ks)})")
