"""`mixture-ray maps` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import GpuRequest, check_gpus, option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri, is_uri
from mixture_ray.slides.factory import Backend


@dataclasses.dataclass(frozen=True)
class MapsConfig:
    """`mixture-ray maps`: one map per slide (Ray task per slide), PNG with a legend.

    The maps show either the findings of prediction stores (``predictions``) or the raw k-means
    clusters of one clustering (``clusters`` + ``k`` + ``magnification``, the non-integrated
    baseline). With several prediction stores (one per magnification) each slide's PNG is a
    composite: the slide, then its finding map at each magnification, side by side.
    """

    manifest: Path = option("the slides' manifest (CSV/Parquet: slide_id, case_id, path[, mpp]) or folder")
    out_dir: Path = option("folder for <slide_id>.png maps, legend.json, agreement.csv and failures")
    predictions: tuple[Path | Uri, ...] = option(
        "prediction store(s) (folders or URIs) written by `mixture-ray classify`; several (one per "
        "magnification, e.g. 2.5x, 5x, 20x) draw a composite per slide: the slide, then each magnification's "
        "map", [])
    clusters: Path | None = option(
        "instead of predictions: the folder written by `mixture-ray cluster`; maps its raw cluster "
        "labels (non-integrated baseline) for the clustering chosen by k and magnification", None)
    k: int | None = option("with clusters: the number of clusters of the clustering to map", None)
    magnification: float | None = option("with clusters: the magnification of the clustering to map", None)
    thumbnail_px: int = option("longest edge of the map in pixels", 1024)
    alpha: float = option("opacity of the finding colours over the thumbnail", 0.45)
    truth_cohort: Path | None = option(
        "synthetic cohort folder (masks/, findings.json, truth.json): adds per-slide agreement "
        "of the predictions with the planted ground truth", None
    )
    backend: Backend = option("slide reader: auto, openslide, tiffslide, cucim", "auto")
    gpus: GpuRequest = option(
        "GPUs each per-slide task requests: a number (requested even when no GPU node is up yet), or "
        "auto = 1 with backend=cucim on a cluster that has a GPU, else 0", "auto")

    def __post_init__(self) -> None:
        """A single store given from Python (``predictions=Path(...)``) becomes a one-store tuple."""
        if isinstance(self.predictions, str | Path):
            store = self.predictions
            object.__setattr__(self, "predictions", (Uri(store) if is_uri(store) else Path(store),))

    def validate(self) -> None:
        """Check one of predictions and clusters (k, magnification with it), thumbnail_px, alpha."""
        if bool(self.predictions) == (self.clusters is not None):
            given = "both were given" if self.predictions else "neither was given"
            raise ConfigError(
                "predictions, clusters: give exactly one: predictions (prediction stores of "
                f"`mixture-ray classify`) or clusters (the folder of `mixture-ray cluster`); {given}")
        if self.clusters is not None:
            self._validate_clusters()
        elif self.k is not None or self.magnification is not None:
            raise ConfigError("k, magnification: they choose the clustering of clusters; "
                              "remove them when mapping predictions")
        if len(set(self.predictions)) != len(self.predictions):
            stores = ", ".join(map(str, self.predictions))
            raise ConfigError(f"predictions: give each store once (got {stores})")
        require_positive(self, "thumbnail_px")
        check_gpus("gpus", self.gpus)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha: must be in [0, 1] (got {self.alpha})")

    def _validate_clusters(self) -> None:
        if self.k is None or self.magnification is None:
            missing = [name for name in ("k", "magnification") if getattr(self, name) is None]
            raise ConfigError(f"{', '.join(missing)}: required with clusters (which clustering of "
                              f"{self.clusters} to map, e.g. k=8 magnification=20)")
        if self.k < 2:
            raise ConfigError(f"k: must be >= 2, as in `mixture-ray cluster` (got {self.k})")
        if self.truth_cohort is not None:
            raise ConfigError("truth_cohort: agreement with the truth needs finding names; "
                              "cluster maps carry cluster ids (remove truth_cohort or map predictions)")
