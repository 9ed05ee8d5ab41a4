"""`mixture-ray export` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from mixture_ray.config import option
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri

ExportFormat = Literal["qupath", "anndata", "h5", "heatmaps"]
EmbeddingColumn = Literal["features", "head"]


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """`mixture-ray export`: QuPath GeoJSON, AnnData .h5ad and TRIDENT/CLAM .h5 from a run's stores.

    qupath: one GeoJSON per slide, a ``tile`` object per tile classified by its finding (or
    cluster), with probabilities, confidence and cluster ids as measurements, and with ``explain``
    the mean NMF class weight over the tile (``nmf_k<K>_class<j>``). anndata: one .h5ad of
    the embeddings with tile identity, clusters and findings in ``obs`` and level-0 coordinates in
    ``obsm["spatial"]``. h5: per slide and magnification, coordinates (and features) in TRIDENT's
    layout, with CLAM's legacy attributes. heatmaps: per slide and finding, a pyramidal OME-TIFF of
    the finding's probability in slide geometry (one pixel per tile step), and per NMF class of an
    ``explain apply`` its weight (one pixel per grid cell).
    """

    out_dir: Path = option("export folder: qupath/, anndata/, h5/, heatmaps/ are written under it")
    formats: tuple[ExportFormat, ...] = option(
        "formats to write: qupath, anndata, h5, heatmaps; [] = every format whose inputs are given", [])
    predictions: Path | Uri | None = option(
        "prediction store (folder or URI) of `classify` (findings per tile)", None)
    clusters: Path | None = option("clusterings folder of `cluster` (every mag-*/k-* in it)", None)
    embeddings: Path | Uri | None = option(
        "embedding store (folder or URI) of `embed` (anndata X; h5 features)", None)
    tiles: Path | Uri | None = option(
        "tile store (folder or URI) of `tile` (h5 coordinates; slide files for geometry)", None)
    explain: Path | None = option(
        "explain folder holding a complete apply/ (NMF class heatmaps; NMF class weights per qupath tile)",
        None)
    embedding: EmbeddingColumn = option("embedding column exported: features (pooled) or head", "features")
    qupath_k: int = option("k whose cluster classifies tiles when there are no predictions; 0 = smallest",
                           0)

    def chosen_formats(self) -> tuple[ExportFormat, ...]:
        """``formats``, or every format whose inputs are given."""
        if self.formats:
            return self.formats
        possible: dict[ExportFormat, bool] = {
            "qupath": self.predictions is not None or (self.clusters is not None and self.tiles is not None),
            "anndata": self.embeddings is not None,
            "h5": self.tiles is not None,
            "heatmaps": (self.predictions is not None and self.tiles is not None) or self.explain is not None,
        }
        return tuple(name for name, ok in possible.items() if ok)

    def validate(self) -> None:
        """Each chosen format has its input."""
        if not self.chosen_formats():
            raise ConfigError("formats: no input; give predictions, clusters, embeddings, tiles or explain")
        missing = []
        no_geometry = self.clusters is None or self.tiles is None
        if "qupath" in self.formats and self.predictions is None and no_geometry:
            missing.append("qupath needs predictions, or clusters with tiles (the tile geometry)")
        if "anndata" in self.formats and self.embeddings is None:
            missing.append("anndata needs embeddings")
        if "h5" in self.formats and self.tiles is None:
            missing.append("h5 needs tiles")
        findings = self.predictions is not None and self.tiles is not None
        if "heatmaps" in self.formats and not findings and self.explain is None:
            missing.append("heatmaps need predictions and tiles (findings) or explain (NMF classes)")
        if missing:
            raise ConfigError(f"formats: {'; '.join(missing)} (give the store, or leave the format out)")
        if self.qupath_k < 0:
            raise ConfigError(f"qupath_k: must be >= 0 (got {self.qupath_k})")
