"""Load the ElEx encoder (a :class:`Backbone` with its projection head) or build a seeded random one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from mixture_ray.errors import MixtureRayError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.backbone import TIMM_PREFIX, Backbone, from_spec, upgrade_state_dict
from mixture_ray.models.presets import get_preset, is_preset, load_weights, read_state_dict, require_weights

RANDOM = "random"
#: Suffixes of a timm model's own weight file (``arch: timm:<name>``), as opposed to a project checkpoint.
TRUNK_SUFFIXES = (".safetensors", ".bin", ".pth")
#: Weight files looked for in a folder given as the model of ``arch: timm:<name>`` (Hugging Face layout).
TRUNK_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Which encoder to load: a checkpoint, a seeded ``random`` one, or a foundation model's weights.

    ``random`` is built from arch, dim, mlp and seed; with ``arch: preset:<name>``, ``model`` is the
    preset's local weight file; with ``arch: timm:<name>`` it may be the timm model's weight file.
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
    With ``arch: timm:<name>``, ``model`` may also be that timm model's own weight file (see
    :func:`trunk_weight_file`), loaded into the trunk; the head is then a seeded random projection.

    Args:
        model: ``random``, a checkpoint file/folder (``elex.pt``, ``moco.pt``, a pretrain run), or a
            preset's or timm model's weight file (``pytorch_model.bin``, ``model.safetensors``, ``.pth``).
        arch: ResNet or ``timm:<name>`` of a random encoder or of a timm weight file (a checkpoint
            names its own), or ``preset:<name>``.
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
    weights = trunk_weight_file(arch, model)
    if weights is not None:
        return load_timm_weights(arch, weights, dim=dim, mlp=mlp, seed=seed)
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


def trunk_weight_file(arch: str, model: str) -> Path | None:
    """The timm weight file ``model`` names for ``arch: timm:<name>``, or None (a project checkpoint).

    Args:
        arch: the architecture setting.
        model: the model setting.

    Returns:
        A ``.safetensors``/``.bin``/``.pth`` file, or the ``model.safetensors``/``pytorch_model.bin``
        of a folder; None for other archs, project checkpoints (``.pt``, run folders) and ``random``.
    """
    if not arch.startswith(TIMM_PREFIX) or model == RANDOM:
        return None
    path = Path(model)
    if path.is_dir():
        inside = [path / name for name in TRUNK_FILES if (path / name).is_file()]
        return inside[0] if inside else None
    return path if path.suffix in TRUNK_SUFFIXES else None


def load_timm_weights(arch: str, path: Path, *, dim: int = 128, mlp: bool = True, seed: int = 0) -> Backbone:
    """A ``timm:<name>`` encoder whose trunk is loaded from that timm model's weight file.

    The file's classifier weights (timm's ``head``/``fc`` of an ImageNet model) are left out; every
    trunk parameter must be in the file.

    Args:
        arch: ``timm:<name>``.
        path: the weight file (safetensors, or a torch file read with ``weights_only=True``).
        dim: outputs of the seeded random projection head (0: none).
        mlp: MLP (else linear) projection head.
        seed: seed of the head.

    Returns:
        The encoder, in eval mode, on the CPU.
    """
    if not path.is_file():
        raise MixtureRayError(f"model: {path} is not a file (the weight file of {arch})")
    torch.manual_seed(seed)
    encoder = build_encoder(arch, dim, mlp)
    head = str(encoder.trunk.pretrained_cfg.get("classifier") or "head")
    state = read_state_dict(path, arch)
    try:
        missing, unexpected = encoder.trunk.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        raise MixtureRayError(f"{arch}: {path} does not fit the architecture ({exc})") from exc
    unexpected = [k for k in unexpected if not k.startswith(f"{head}.")]
    if missing or unexpected:
        raise MixtureRayError(
            f"{arch}: {path} does not fit the architecture ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    return encoder.eval()
