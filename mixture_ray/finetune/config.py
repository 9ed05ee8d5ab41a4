"""`mixture-ray finetune` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import RayTrainRun, option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.models.backbone import check_arch, require_resnet


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """`mixture-ray finetune`: ElEx backbone + a linear layer over the findings, all layers trained.

    Labelled tiles (`mixture-ray integrate` output) are located in the tile store (small columns
    only), split into train/validation by case (seeded), and streamed to the Ray Train workers as
    a Ray Data dataset (pixels read and decoded by CPU tasks, shuffled each epoch; the balanced
    sampler's draws are applied to the stream); trained with cross-entropy and Adam; the best
    epoch by validation balanced accuracy (validation streamed by the rank-0 worker) is exported
    as out_dir/name/classifier.pt.
    """

    labels: Path = option("integrate output folder (labels.parquet + _SUCCESS) or its labels.parquet")
    tiles: Path = option("tile store the labelled tiles come from (for the pixels)")
    out_dir: Path = option("Ray Train storage folder; the run lives in out_dir/name")
    model: str = option(
        "ElEx checkpoint (pretrain run folder, Ray checkpoint folder or .pt) or 'random' (baseline)",
        path_unless=("random",),
    )
    name: str = option(
        "run name; rerunning with the same name resumes from its last checkpoint", "classifier"
    )
    arch: str = option("architecture when model=random", "resnet18")
    findings: tuple[str, ...] = option("class order; empty = the findings in the labels, sorted", [])
    magnification: float | None = option("train on tiles of this magnification only; null = all", None)
    splits: tuple[str, ...] = option("use only tiles whose tile-store split is one of these; empty = all", [])
    val_fraction: float = option("share of cases held out for validation (no case in both)", 0.2)
    image_size: int = option("tiles are resized to this edge in pixels; 0 = as stored", 0)
    epochs: int = option("passes over the training tiles (a resumed run continues to this)", 10)
    batch_size: int = option("tiles per worker per step", 32)
    lr: float = option("Adam learning rate", 1e-4)
    balanced: bool = option("class-balanced sampling (each class equally likely per draw)", True)
    flips: bool = option("random horizontal/vertical flips", True)
    rotation: float = option("random rotation within +/- this many degrees; 0 = off", 0.0)
    train: RayTrainRun = option("Ray Train run settings: train.workers, train.checkpoint_every, ...",
                                RayTrainRun())
    seed: int = option("random seed (split, weights, sampling, augmentation)", 0)

    def validate(self) -> None:
        """Check positive sizes, a model, the split and augmentation ranges, and distinct findings."""
        require_positive(self, "epochs", "batch_size", "lr")
        check_arch(self.arch)
        require_resnet(self.arch, "finetune")
        if not self.model:
            raise ConfigError("model: give an ElEx checkpoint path or 'random'")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must be in (0, 1) (got {self.val_fraction})")
        if self.image_size < 0:
            raise ConfigError(f"image_size: must be >= 0 (got {self.image_size})")
        if not 0.0 <= self.rotation <= 180.0:
            raise ConfigError(f"rotation: must be in [0, 180] (got {self.rotation})")
        if len(set(self.findings)) != len(self.findings):
            raise ConfigError(f"findings: names repeat ({list(self.findings)})")
