"""`mixture-ray explain` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from mixture_ray.config import option, require_positive
from mixture_ray.errors import ConfigError

ExplainAction = Literal["fit", "apply", "analyse"]


@dataclasses.dataclass(frozen=True)
class ExplainConfig:
    """`mixture-ray explain fit|apply|analyse`: NMF classes of a CNN layer's activations on slides.

    fit: activation grids of the manifest's slides + NMF per K (H saved); apply: grids + W with H
    fixed, heatmaps and class overlays per slide; analyse: correlations, logistic regression to
    the model's prediction, GradCAM IoU/correlation (and IoU with masks_dir when given), plots.
    """

    action: ExplainAction = option("fit, apply or analyse (the word after `explain`)")
    out_dir: Path = option("explain folder: grids/, nmf/, apply/, analysis/ live under it")
    manifest: Path | None = option("CSV/Parquet manifest or slide folder (fit, apply)", None)
    nmf_dir: Path | None = option("folder of a fitted NMF (apply); default out_dir/nmf", None)
    arch: str = option("torchvision model name (weights=None), e.g. resnet18", "resnet18")
    checkpoint: Path | None = option("state_dict file loaded with weights_only=True", None)
    num_classes: int = option("output classes of the model head", 2)
    positive_class: int = option("output index that means 'yes' (prediction and GradCAM)", 1)
    layer: str = option("module name whose output is clustered, e.g. layer4 or layer3", "layer4")
    non_negative: Literal["error", "relu"] = option(
        "a layer output with negative values: error, or pass it through ReLU", "error"
    )
    mpp: float = option("microns per pixel the tiles are read at (0.5 = 20x)", 0.5)
    tile_size: int = option("tile edge in pixels at mpp", 512)
    stride: int = option("step between tiles in pixels at mpp (overlap = tile_size - stride)", 256)
    border: int = option("feature-map pixels dropped at each tile edge", 2)
    background_threshold: int = option("a pixel is background when all of R, G, B exceed this", 220)
    max_background: float = option("tiles with a larger background fraction are skipped", 0.9)
    n_classes: tuple[int, ...] = option("NMF class counts K fitted (fit) / applied", [4, 6, 8])
    sample_vectors: int = option("feature vectors sampled from the grids for the NMF fit", 100000)
    max_iter: int = option("NMF iterations at most", 400)
    tol: float = option("NMF relative error decrease per 10 iterations to stop", 1e-4)
    device: str = option("torch device: auto, cpu, cuda", "auto")
    batch_size: int = option("tiles per forward pass", 16)
    gradcam: bool = option("compute GradCAM of positive_class on the same layer", True)
    memmap_mb: int = option("grids larger than this many MiB are memory-mapped files", 256)
    task_cpus: float = option("CPUs each per-slide Ray task reserves", 1.0)
    thumbnail_px: int = option("longest side of overlay/heatmap images", 1024)
    masks_dir: Path | None = option("ground-truth masks/<slide_id>.png (analyse, synthetic)", None)
    mask_downsample: int = option("level-0 pixels per mask pixel", 16)
    weight_threshold: float = option("class region: weight > this fraction of its maximum", 0.1)
    cam_threshold: float = option("GradCAM region: value > this fraction of the tile maximum", 0.1)
    seed: int = option("random seed (vector sampling, NMF init, logistic split)", 0)

    def validate(self) -> None:
        """Check positive sizes and counts, a manifest for fit/apply, class counts, border and thresholds."""
        require_positive(self, "mpp", "tile_size", "stride", "sample_vectors", "max_iter", "tol")
        require_positive(self, "batch_size", "memmap_mb", "task_cpus", "thumbnail_px", "num_classes")
        require_positive(self, "mask_downsample")
        if self.action in ("fit", "apply") and self.manifest is None:
            raise ConfigError(f"manifest: required for explain {self.action}")
        if not self.n_classes or min(self.n_classes) < 1:
            raise ConfigError(f"n_classes: give class counts >= 1 (got {self.n_classes})")
        if self.border < 0 or 2 * self.border >= self.tile_size:
            raise ConfigError(f"border: must be >= 0 and leave part of the tile (got {self.border})")
        if not 0 <= self.positive_class < self.num_classes:
            raise ConfigError(f"positive_class: must be in 0..{self.num_classes - 1}")
        if not 0.0 <= self.max_background <= 1.0:
            raise ConfigError(f"max_background: must be in [0, 1] (got {self.max_background})")
        for name in ("weight_threshold", "cam_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: must be in [0, 1)")
