"""`mixture-ray cluster` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from mixture_ray.config import option
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri

KMeansEngineName = Literal["auto", "sklearn", "sklearn-lloyd", "cuml", "torch", "distributed"]


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """`mixture-ray cluster`: k-means of the embeddings per magnification for a list of k."""

    embeddings: Path | Uri = option("embedding store (folder or URI) written by `mixture-ray embed`")
    out_dir: Path = option("clustering output folder")
    ks: tuple[int, ...] = option("numbers of clusters", [5, 8, 10, 30, 50, 80, 100, 120])
    feature: Literal["features", "head"] = option(
        "embedding column: 512-d features or 128-d head", "features"
    )
    standardize: bool = option("z-score each dimension before clustering", False)
    engine: KMeansEngineName = option(
        "auto (cuML with a GPU on the driver; distributed when joined to a Ray cluster via RAY_ADDRESS; "
        "else sklearn), sklearn, sklearn-lloyd, cuml, torch (driver, CUDA if available), "
        "distributed (torch Lloyd steps in Ray tasks over the store's Parquet files)",
        "auto",
    )
    num_gpus: Literal["auto"] | float = option(
        "distributed engine: GPUs per block task; auto = 1 when the cluster has or can autoscale to "
        "GPUs, else 0; a number is a request even when no GPU node is up yet",
        "auto",
    )
    task_cpus: float = option("distributed engine: CPUs per block task", 1.0)
    driver_memory_gb: float = option(
        "driver engines (sklearn, sklearn-lloyd, torch, cuml): most memory a load of the store may take, "
        "estimated from the index as rows x dims x 4 bytes x 3 copies; past it auto picks distributed "
        "and a driver engine is refused", 8.0
    )
    block_rows: int = option(
        "distributed engine: most rows per block (consecutive store parts read by one task and kept in "
        "its node's object store: rows x dims x 4 bytes); at least two blocks per task slot", 250_000
    )
    max_iter: int = option("most Lloyd iterations (torch and distributed engines)", 300)
    per_case: bool = option(
        "cluster each case separately (supplemental set) and merge the ids; engine distributed: one "
        "torch k-means task per case, reading only the parts that hold the case's slides", False
    )
    fit_split: Path | None = option(
        "case split CSV (`mixture-ray split`): k-means is fitted on the tiles of its training cases only "
        "and every tile (test cases too) is assigned to its nearest centroid, for a fold-nested run; "
        "null = fitted on every tile", None
    )
    silhouette_sample: int = option("rows sampled for the silhouette score; 0 = skip", 5000)
    seed: int = option("random seed", 0)

    def validate(self) -> None:
        """Check ks >= 2, silhouette_sample >= 0, the distributed settings, and fit_split without per_case."""
        if not self.ks or any(k < 2 for k in self.ks):
            raise ConfigError(f"ks: give numbers of clusters >= 2 (got {list(self.ks)})")
        if self.silhouette_sample < 0:
            raise ConfigError(f"silhouette_sample: must be >= 0 (got {self.silhouette_sample})")
        if self.num_gpus != "auto" and self.num_gpus < 0:
            raise ConfigError(f"num_gpus: give auto or a number >= 0 (got {self.num_gpus})")
        positive = {"task_cpus": self.task_cpus, "max_iter": self.max_iter, "block_rows": self.block_rows,
                    "driver_memory_gb": self.driver_memory_gb}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key}: must be > 0 (got {value})")
        if self.fit_split is not None and self.per_case:
            raise ConfigError("fit_split: fitting on the training cases works without per_case (a "
                              "per-case clustering fits each case on its own tiles)")
