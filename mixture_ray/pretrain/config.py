"""`mixture-ray pretrain` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mixture_ray.config import option, require_positive
from mixture_ray.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """`mixture-ray pretrain`: MoCo v2 self-supervised ResNet (an ElEx) on a tile store (Ray Train)."""

    tiles: Path = option("tile store folder written by `mixture-ray tile`")
    out_dir: Path = option("Ray Train storage folder; the run lives in out_dir/name")
    name: str = option("run name; rerunning with the same name resumes from its last checkpoint", "elex")
    magnification: float | None = option("train on tiles of this magnification only; null = all", None)
    arch: str = option("torchvision ResNet: resnet18, resnet34 or resnet50", "resnet18")
    dim: int = option("MoCo output dimension", 128)
    mlp: bool = option("use a 2-layer MLP projection head (MoCo v2) instead of one linear layer", True)
    queue_size: int = option("MoCo queue length K (negative keys)", 4096)
    momentum: float = option("key-encoder momentum m", 0.99)
    temperature: float = option("softmax temperature T", 0.1)
    lr: float = option("Adam learning rate", 1e-4)
    batch_size: int = option("tiles per worker per step", 64)
    max_steps: int = option("total optimiser steps of the run (a resumed run continues to this)", 1000)
    checkpoint_every: int = option("report a checkpoint every this many steps (and at the end)", 100)
    keep_checkpoints: int = option("checkpoints kept in the run folder", 2)
    crop_fraction: float = option("centre crop edge / tile edge after rotation (224/280 = 0.8)", 0.8)
    rotation: float = option("random rotation within +/- this many degrees", 20.0)
    color_jitter: float = option("colour jitter strength (brightness/contrast/saturation); 0 = off", 0.0)
    split_bn: int = option("split batch norm groups emulating shuffle-BN with one worker", 8)
    workers: int = option("Ray Train workers (>1: DDP with cross-worker key shuffle)", 1)
    cpus_per_worker: float = option("CPUs each training worker reserves", 1.0)
    use_gpu: bool | None = option("train on GPUs; null = when the cluster has them", None)
    cache_tiles: bool = option("decode tiles once and keep them in Ray's object store", True)
    max_failures: int = option("worker failures retried from the last checkpoint", 1)
    log_every: int = option("print loss and throughput every this many steps", 20)
    fail_at_step: int = option("testing only: the first attempt kills its worker at this step", 0)
    seed: int = option("random seed (weights, queue, augmentation)", 0)

    def validate(self) -> None:
        require_positive(self, "dim", "queue_size", "temperature", "lr", "batch_size", "max_steps")
        require_positive(self, "checkpoint_every", "keep_checkpoints", "workers", "cpus_per_worker")
        require_positive(self, "log_every")
        if self.arch not in ("resnet18", "resnet34", "resnet50"):
            raise ConfigError(f"arch: {self.arch!r} is not one of resnet18, resnet34, resnet50")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum: must be in [0, 1) (got {self.momentum})")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(f"crop_fraction: must be in (0, 1] (got {self.crop_fraction})")
        if not 0.0 <= self.rotation <= 180.0 or self.color_jitter < 0:
            raise ConfigError("rotation: must be in [0, 180]; color_jitter: must be >= 0")
        if self.split_bn < 1 or (self.workers == 1 and self.batch_size % self.split_bn):
            raise ConfigError(
                f"split_bn: must be >= 1 and divide batch_size (got {self.split_bn}, {self.batch_size})"
            )
        if self.max_failures < -1 or self.fail_at_step < 0:
            raise ConfigError("max_failures: must be >= -1; fail_at_step: must be >= 0")
