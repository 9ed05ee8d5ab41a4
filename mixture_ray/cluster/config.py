"""`mixture-ray cluster` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from mixture_ray.config import option
from mixture_ray.errors import ConfigError

KMeansEngineName = Literal["auto", "sklearn", "sklearn-lloyd", "cuml"]


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """`mixture-ray cluster`: k-means of the embeddings per magnification for a list of k."""

    embeddings: Path = option("embedding store folder written by `mixture-ray embed`")
    out_dir: Path = option("clustering output folder")
    ks: tuple[int, ...] = option("numbers of clusters", [5, 8, 10, 30, 50, 80, 100, 120])
    feature: Literal["features", "head"] = option(
        "embedding column: 512-d features or 128-d head", "features"
    )
    standardize: bool = option("z-score each dimension before clustering", False)
    engine: KMeansEngineName = option(
        "auto (cuML on GPU, else sklearn), sklearn, sklearn-lloyd, cuml", "auto"
    )
    per_case: bool = option("cluster each case separately (supplemental set) and merge the ids", False)
    silhouette_sample: int = option("rows sampled for the silhouette score; 0 = skip", 5000)
    seed: int = option("random seed", 0)

    def validate(self) -> None:
        """Check ks holds cluster counts >= 2 and silhouette_sample >= 0."""
        if not self.ks or any(k < 2 for k in self.ks):
            raise ConfigError(f"ks: give numbers of clusters >= 2 (got {list(self.ks)})")
        if self.silhouette_sample < 0:
            raise ConfigError(f"silhouette_sample: must be >= 0 (got {self.silhouette_sample})")
