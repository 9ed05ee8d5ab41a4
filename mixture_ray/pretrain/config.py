"""`mixture-ray pretrain` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import RayTrainRun, option, require_positive
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri
from mixture_ray.models.backbone import check_arch, require_resnet


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """`mixture-ray pretrain`: MoCo v2 self-supervised ResNet (an ElEx) on a tile store (Ray Train).

    Tiles stream from the store: each epoch, the store's parts are put in a seeded order and
    shared among the workers, their rows are shuffled (seeded) as they are read, and each worker
    draws batches from a bounded, seeded local shuffle buffer, so a batch mixes slides and every
    epoch has its own order. The tile count comes from the store's index; nothing is decoded
    before the first step. The same seed, store and ``train.workers`` give the same weights on
    CPU whatever the machine load; another number of workers gives another result (each worker
    reads another share of the parts). A resumed run starts a new epoch at its checkpoint.
    """

    tiles: Path | Uri = option("tile store (folder or URI) written by `mixture-ray tile`")
    out_dir: Path = option("Ray Train storage folder; the run lives in out_dir/name")
    name: str = option("run name; rerunning with the same name resumes from its last checkpoint", "elex")
    magnification: float | None = option("train on tiles of this magnification only; null = all", None)
    arch: str = option("torchvision ResNet, e.g. resnet18, resnet50 (weights=None)", "resnet18")
    dim: int = option("MoCo output dimension", 128)
    mlp: bool = option("use a 2-layer MLP projection head (MoCo v2) instead of one linear layer", True)
    queue_size: int = option("MoCo queue length K (negative keys)", 4096)
    momentum: float = option("key-encoder momentum m", 0.99)
    temperature: float = option("softmax temperature T", 0.1)
    lr: float = option("Adam learning rate", 1e-4)
    batch_size: int = option("tiles per worker per step", 64)
    max_steps: int = option("total optimiser steps of the run (a resumed run continues to this)", 1000)
    crop_fraction: float = option("centre crop edge / tile edge after rotation (224/280 = 0.8)", 0.8)
    rotation: float = option("random rotation within +/- this many degrees", 20.0)
    color_jitter: float = option("colour jitter strength (brightness/contrast/saturation); 0 = off", 0.0)
    split_bn: int = option("split batch norm groups emulating shuffle-BN with one worker", 8)
    cache_tiles: bool = option(
        "keep the decoded tiles in Ray's object store (refused when they would fill more than half of it); "
        "false = stream them from the store each epoch", False)
    shuffle_buffer: int = option(
        "tiles in each worker's local shuffle buffer (a batch is drawn from it, so it mixes slides; "
        "memory = this many decoded tiles)", 2048)
    feed_memory_mb: int = option("object-store MiB the feed of each worker may hold (Ray Data limit)", 1024)
    train: RayTrainRun = option("Ray Train run settings: train.workers, train.checkpoint_every, ...",
                                RayTrainRun())
    seed: int = option("random seed (weights, queue, augmentation)", 0)

    def validate(self) -> None:
        """Check positive sizes and rates, the arch, augmentation ranges and split_bn."""
        require_positive(self, "dim", "queue_size", "temperature", "lr", "batch_size", "max_steps",
                         "shuffle_buffer", "feed_memory_mb")
        check_arch(self.arch)
        require_resnet(self.arch, "pretrain")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum: must be in [0, 1) (got {self.momentum})")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(f"crop_fraction: must be in (0, 1] (got {self.crop_fraction})")
        if not 0.0 <= self.rotation <= 180.0 or self.color_jitter < 0:
            raise ConfigError("rotation: must be in [0, 180]; color_jitter: must be >= 0")
        if self.split_bn < 1 or (self.train.workers == 1 and self.batch_size % self.split_bn):
            raise ConfigError(
                f"split_bn: must be >= 1 and divide batch_size (got {self.split_bn}, {self.batch_size})"
            )
