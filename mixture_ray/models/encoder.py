"""Load the ElEx encoder (a :class:`Backbone` with its projection head) or build a seeded random one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mixture_ray.errors import MixtureRayError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.backbone import Backbone, from_spec, upgrade_state_dict
from mixture_ray.models.presets import get_preset, is_preset, load_weights, require_weights

RANDOM = "random"


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Which encoder to load: a checkpoint, a seeded ``random`` one, or a foundation model's weights.

    ``random`` is built from arch, dim, mlp and seed; with ``arch: preset:<name>``, ``model`` is the
    preset's local weight file.
    """

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

    Random weights come from ``seed``, so every actor of a pipeline builds the same network. With
    ``arch: preset:<name>`` (:mod:`mixture_ray.models.presets`), ``model`` is the foundation model's
    local weight file (required: nothing is downloaded) and the head is a seeded random projection.

    Args:
        model: ``random``, a checkpoint file/folder (``elex.pt``, ``moco.pt``, a pretrain run), or a
            preset's weight file (``pytorch_model.bin``, ``model.safetensors``).
        arch: ResNet of a random encoder (a checkpoint names its own), or ``preset:<name>``.
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
    if is_preset(arch):
        return load_preset(arch, model, dim=dim, mlp=mlp, seed=seed)
    if model == RANDOM:
        torch.manual_seed(seed)
        return build_encoder(arch, dim, mlp).eval()
    path = ckpt.find_checkpoint(Path(model))
    spec, state = ckpt.encoder_payload(ckpt.load(path), path)
    encoder = from_spec(spec)
    encoder.load_state_dict(upgrade_state_dict(state))
    return encoder.eval()


def load_preset(arch: str, model: str, *, dim: int = 128, mlp: bool = True, seed: int = 0) -> Backbone:
    """A foundation-model encoder: its timm trunk loaded (strictly) from the local weight file.

    Args:
        arch: ``preset:<name>``.
        model: the weight file (or a folder holding the card's ``pytorch_model.bin``); without one,
            a ConfigError names the preset and the file to download.
        dim: outputs of the seeded random projection head (0: none).
        mlp: MLP (else linear) projection head.
        seed: seed of the head.

    Returns:
        The encoder, in eval mode, on the CPU.
    """
    preset, path = get_preset(arch), require_weights(arch, model)
    torch.manual_seed(seed)
    encoder = build_encoder(arch, dim, mlp)
    missing, unexpected = encoder.trunk.load_state_dict(load_weights(path, preset), strict=False)
    if missing or unexpected:
        raise MixtureRayError(
            f"preset {preset.name}: {path} does not fit {preset.timm_name} ({len(missing)} missing keys, "
            f"e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}); download "
            f"{preset.weights_file} from {preset.url}"
        )
    return encoder.eval()
