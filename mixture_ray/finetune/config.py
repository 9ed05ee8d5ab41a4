"""`mixture-ray finetune` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import RayTrainRun, option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri
from mixture_ray.models.backbone import check_arch
from mixture_ray.models.presets import is_preset, require_weights


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """`mixture-ray finetune`: ElEx backbone + a linear layer over the findings, all layers trained.

    The backbone may also be a timm model (``arch: timm:<name>``, random or its weight file) or a
    foundation-model preset (``arch: preset:<name>``, its local weight file); tiles are then fed at
    the model's own input size and normalisation, which classifier.pt records for classify.

    Labelled tiles (`mixture-ray integrate` output) are located in the tile store (small columns
    only), split into train/validation by case (seeded), and streamed to the Ray Train workers:
    each epoch, every worker reads its share of the tile parts in a seeded order, only the tiles
    the epoch's (balanced) draws pick, shuffled by key before any pixel is read and decoded by CPU
    tasks, then mixed in a bounded, seeded buffer; trained with cross-entropy and Adam; the best
    epoch by validation balanced accuracy (validation streamed by the rank-0 worker) is exported
    as out_dir/name/classifier.pt. The same seed, labels, tiles and ``train.workers`` give the same
    classifier on CPU whatever the machine load; another number of workers gives another result
    (each worker reads another share of the parts).
    """

    labels: Path = option("integrate output folder (labels.parquet + _SUCCESS) or its labels.parquet")
    tiles: Path | Uri = option("tile store (folder or URI) the labelled tiles come from (for the pixels)")
    out_dir: Path = option("Ray Train storage folder; the run lives in out_dir/name")
    model: str = option(
        "ElEx checkpoint (pretrain run folder, Ray checkpoint folder or .pt), 'random' (baseline), or the "
        "local weight file of arch timm:<name> (optional) or preset:<name> (required; never downloaded)",
        path_unless=("random",),
    )
    name: str = option(
        "run name; rerunning with the same name resumes from its last checkpoint", "classifier"
    )
    arch: str = option(
        "backbone when model is random or a weight file: a torchvision ResNet, timm:<name> or preset:<name> "
        "(the classifier keeps the model's own input size and normalisation)", "resnet18")
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
        """Check sizes, the arch, a model (a preset's weight file), split and augment ranges, findings."""
        require_positive(self, "epochs", "batch_size", "lr")
        check_arch(self.arch)
        if not self.model:
            raise ConfigError("model: give an ElEx checkpoint path or 'random'")
        if is_preset(self.arch):
            require_weights(self.arch, self.model)  # refused here, not inside a Ray Train worker
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction: must be in (0, 1) (got {self.val_fraction})")
        if self.image_size < 0:
            raise ConfigError(f"image_size: must be >= 0 (got {self.image_size})")
        if not 0.0 <= self.rotation <= 180.0:
            raise ConfigError(f"rotation: must be in [0, 180] (got {self.rotation})")
        if len(set(self.findings)) != len(self.findings):
            raise ConfigError(f"findings: names repeat ({list(self.findings)})")
