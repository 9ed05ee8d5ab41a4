"""Load the ElEx encoder (a :class:`Backbone` with its projection head) or build a seeded random one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.backbone import Backbone, from_spec, upgrade_state_dict

RANDOM = "random"


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Which encoder to load: a checkpoint, or ``random`` built from arch, dim, mlp and seed."""

    model: str
    arch: str = "resnet18"
    dim: int = 128
    mlp: bool = True
    seed: int = 0

    def load(self) -> Backbone:
        """The eval-mode encoder (:func:`load_encoder`)."""
        return load_encoder(self.model, arch=self.arch, dim=self.dim, mlp=self.mlp, seed=self.seed)


def build_encoder(arch: str = "resnet18", dim: int = 128, mlp: bool = True) -> Backbone:
    """A fresh encoder: ``arch`` with a projection head of ``dim`` outputs (MLP or linear)."""
    return Backbone(arch, dim, head="mlp" if mlp else "linear")


def load_encoder(model: str, *, arch: str = "resnet18", dim: int = 128, mlp: bool = True,
                 seed: int = 0) -> Backbone:
    """An eval-mode encoder from a project checkpoint, or a seeded random one.

    Random weights come from ``seed``, so every actor of a pipeline builds the same network.

    Args:
        model: ``random`` or a checkpoint file/folder (``elex.pt``, ``moco.pt``, a pretrain run).
        arch: ResNet of a random encoder (a checkpoint names its own).
        dim: projection-head outputs of a random encoder.
        mlp: MLP (else linear) projection head of a random encoder.
        seed: seed of a random encoder's weights.

    Returns:
        The encoder, in eval mode, on the CPU.

    Example:
        >>> encoder = load_encoder("random", dim=64)
        >>> encoder.num_classes, encoder.num_features
        (64, 512)
    """
    if model == RANDOM:
        torch.manual_seed(seed)
        return build_encoder(arch, dim, mlp).eval()
    path = ckpt.find_checkpoint(Path(model))
    spec, state = ckpt.encoder_payload(ckpt.load(path), path)
    encoder = from_spec(spec)
    encoder.load_state_dict(upgrade_state_dict(state))
    return encoder.eval()
