"""Load a project ResNet encoder from a checkpoint, or build a seeded random one (baseline)."""

from __future__ import annotations

from pathlib import Path

import torch

from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.encoder import ResNetEncoder

RANDOM = "random"


def load_encoder(model: str, *, arch: str = "resnet18", dim: int = 128, mlp: bool = True,
                 seed: int = 0) -> ResNetEncoder:
    """An eval-mode encoder: ``model`` is 'random' or a checkpoint file/folder of the project.

    Random weights come from ``seed``, so every actor of a pipeline builds the same network.
    """
    if model == RANDOM:
        torch.manual_seed(seed)
        return ResNetEncoder(arch, dim, mlp).eval()
    path = ckpt.find_checkpoint(Path(model))
    spec, state = ckpt.encoder_payload(ckpt.load(path), path)
    encoder = ResNetEncoder(str(spec["arch"]), int(spec["dim"]), bool(spec["mlp"]))
    encoder.load_state_dict(state)
    return encoder.eval()
