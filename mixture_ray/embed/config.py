"""`mixture-ray embed` and `evaluate-embeddings` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from mixture_ray.config import ActorPool, TileInput, option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri
from mixture_ray.models.backbone import check_arch
from mixture_ray.models.presets import is_preset, require_weights

EmbeddingColumn = Literal["features", "head"]


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
    """`mixture-ray embed`: 128-d head and pooled backbone features of every tile (Ray Data actors)."""

    tiles: Path | Uri = option("tile store folder or URI written by `mixture-ray tile`")
    out_dir: Path | Uri = option("embedding store folder or object-store URI (reruns skip committed slides)")
    model: str = option(
        "ResNet checkpoint: a pretrain run folder, a Ray checkpoint folder or a .pt file; "
        "'random' = randomly initialised network (baseline)",
        path_unless=("random",),
    )
    arch: str = option("architecture when model=random: a torchvision ResNet or timm:<name>", "resnet18")
    dim: int = option("head output dimension when model=random", 128)
    mlp: bool = option("MLP head when model=random", True)
    magnification: float | None = option("embed tiles of this magnification only; null = all", None)
    crop_fraction: float = option("centre crop edge / tile edge before the network", 1.0)
    pool: ActorPool = option("model actors (one model each): pool.workers, pool.batch_size, pool.gpus, ...",
                             ActorPool())
    input: TileInput = option("where ready tiles come from: input.pixels (store or slides), input.decode, "
                              "input.cpus, ...", TileInput())
    torch_threads: int = option("torch intra-op threads per actor on CPU; 0 = the actor's CPUs", 0)
    seed: int = option("seed of the random initialisation when model=random", 0)

    def validate(self) -> None:
        """Check dim > 0, crop_fraction in (0, 1], torch_threads >= 0 and that a model is given."""
        require_positive(self, "dim")
        check_arch(self.arch)
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(f"crop_fraction: must be in (0, 1] (got {self.crop_fraction})")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads: must be >= 0 (got {self.torch_threads})")
        if not self.model:
            raise ConfigError("model: give a checkpoint path or 'random'")
        if is_preset(self.arch):
            require_weights(self.arch, self.model)  # refused here, not inside a Ray actor


@dataclasses.dataclass(frozen=True)
class EvaluateEmbeddingsConfig:
    """`mixture-ray evaluate-embeddings`: NMI/ARI of k-means on embeddings vs synthetic truth."""

    embeddings: Path | Uri = option("embedding store (folder or URI) of the trained extractor (MoCo)")
    baseline: Path | Uri = option("embedding store (folder or URI) of the baseline (e.g. model=random)")
    masks: Path = option("folder of ground-truth masks <slide_id>.png (synthetic cohort masks/)")
    tiles: Path | Uri = option(
        "tile store (folder or URI) the embeddings came from (gives each tile's level-0 size)")
    mask_downsample: int = option("level-0 pixels per mask pixel", 16)
    magnification: float | None = option("evaluate tiles of this magnification only; null = all", None)
    min_purity: float = option("keep tiles whose majority finding covers at least this fraction", 0.8)
    column: EmbeddingColumn = option("embedding clustered: features (backbone) or head", "features")
    k: int = option("k-means clusters; 0 = number of ground-truth findings present", 0)
    include_background: bool = option("keep tiles whose majority finding is background", False)
    out: Path | None = option("also write the result as JSON here", None)
    seed: int = option("k-means seed", 0)

    def validate(self) -> None:
        """Check mask_downsample > 0, min_purity in [0, 1] and k is 0 (auto) or >= 2."""
        require_positive(self, "mask_downsample")
        if not 0.0 <= self.min_purity <= 1.0:
            raise ConfigError(f"min_purity: must be in [0, 1] (got {self.min_purity})")
        if self.k < 0 or self.k == 1:
            raise ConfigError(f"k: must be 0 (auto) or >= 2 (got {self.k})")
