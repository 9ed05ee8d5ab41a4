"""Encoder presets for pathology foundation models: ``arch: preset:<name>`` plus a local weight file.

A preset names a timm architecture with the keyword arguments of the model's card, its input size,
normalisation, inference precision, how tokens are pooled into one vector, and where the weights are
published. Weights are never downloaded: ``model`` must be the local file (``pytorch_model.bin`` or
``model.safetensors`` from the model card, after accepting its licence), read with
``torch.load(weights_only=True)`` or safetensors.

============== ============================== ===== ============================= ========= ======== =====
preset         timm architecture              input mean / std                    precision pooling  width
============== ============================== ===== ============================= ========= ======== =====
uni            vit_large_patch16_224          224   ImageNet                      fp16      cls      1024
uni2-h         vit_giant_patch14_224          224   ImageNet                      bf16      cls      1536
virchow2       vit_huge_patch14_224           224   ImageNet                      fp16      cls_mean 2560
h-optimus-0    vit_giant_patch14_reg4_dinov2  224   (0.707, 0.579, 0.704) /       fp16      cls      1536
                                                    (0.212, 0.230, 0.178)
prov-gigapath  vit_giant_patch14_dinov2       224   ImageNet                      fp16      cls      1536
============== ============================== ===== ============================= ========= ======== =====

Model cards: https://huggingface.co/MahmoodLab/UNI, https://huggingface.co/MahmoodLab/UNI2-h,
https://huggingface.co/paige-ai/Virchow2, https://huggingface.co/bioptimus/H-optimus-0,
https://huggingface.co/prov-gigapath/prov-gigapath. ``cls`` = the class token; ``cls_mean`` = the
class token concatenated with the mean of the patch tokens (register tokens left out), as the
Virchow2 card prescribes. CONCH is not a preset: its checkpoint is an open_clip CoCa model whose
embedding comes from an attentional pooler and projection on top of the timm trunk, which a plain
timm architecture does not reproduce.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mixture_ray.errors import ConfigError, MixtureRayError

if TYPE_CHECKING:
    import torch
    from torch import nn

PRESET_PREFIX = "preset:"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
Pooling = Literal["cls", "cls_mean"]
Precision = Literal["bf16", "fp16", "fp32"]
#: Layer classes a preset may name in its kwargs (resolved when the model is built).
LAYERS = {"SwiGLUPacked": ("timm.layers", "SwiGLUPacked"), "SiLU": ("torch.nn", "SiLU")}


@dataclasses.dataclass(frozen=True)
class EncoderPreset:
    """One foundation model: how to build its timm architecture and feed it.

    Args:
        name: the preset name (``arch: preset:<name>``).
        timm_name: the timm architecture.
        kwargs: ``timm.create_model`` keyword arguments; ``mlp_layer``/``act_layer`` name a class of
            ``LAYERS`` (kept as text so the table stays data).
        input_size: square input edge in pixels.
        mean: normalisation mean (RGB, 0-1 scale).
        std: normalisation std.
        precision: the card's inference precision on a GPU.
        pooling: ``cls`` or ``cls_mean`` (class token + mean of the patch tokens).
        width: length of the pooled feature vector.
        url: model card (licence, citation, weights).
        weights_file: the file to download from the card.
    """

    name: str
    timm_name: str
    kwargs: dict[str, Any]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    precision: Precision
    pooling: Pooling
    width: int
    url: str
    weights_file: str = "pytorch_model.bin"

    def timm_kwargs(self) -> dict[str, Any]:
        """The create_model kwargs with layer names resolved to classes (imports timm lazily)."""
        import importlib

        out = dict(self.kwargs)
        for key in ("mlp_layer", "act_layer"):
            if isinstance(out.get(key), str):
                module, attr = LAYERS[out[key]]
                out[key] = getattr(importlib.import_module(module), attr)
        return out

    def create(self) -> nn.Module:
        """The timm trunk with random weights (no download; ``pretrained=False``)."""
        import timm

        model: nn.Module = timm.create_model(self.timm_name, pretrained=False, **self.timm_kwargs())
        return model


_SWIGLU = {"mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"}

PRESETS: dict[str, EncoderPreset] = {
    p.name: p
    for p in (
        EncoderPreset(
            "uni", "vit_large_patch16_224",
            {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0,
             "dynamic_img_size": True},
            224, *IMAGENET, "fp16", "cls", 1024, "https://huggingface.co/MahmoodLab/UNI"),
        EncoderPreset(
            "uni2-h", "vit_giant_patch14_224",
            {"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
             "embed_dim": 1536, "mlp_ratio": 2.66667 * 2, "num_classes": 0, "no_embed_class": True,
             **_SWIGLU, "reg_tokens": 8, "dynamic_img_size": True},
            224, *IMAGENET, "bf16", "cls", 1536, "https://huggingface.co/MahmoodLab/UNI2-h"),
        EncoderPreset(
            "virchow2", "vit_huge_patch14_224",
            {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "reg_tokens": 4, "mlp_ratio": 5.3375,
             "global_pool": "", "dynamic_img_size": True, **_SWIGLU},
            224, *IMAGENET, "fp16", "cls_mean", 2560, "https://huggingface.co/paige-ai/Virchow2"),
        EncoderPreset(
            "h-optimus-0", "vit_giant_patch14_reg4_dinov2",
            {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "global_pool": "token",
             "dynamic_img_size": False},
            224, (0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517), "fp16", "cls", 1536,
            "https://huggingface.co/bioptimus/H-optimus-0"),
        EncoderPreset(
            "prov-gigapath", "vit_giant_patch14_dinov2",
            {"img_size": 224, "in_chans": 3, "patch_size": 16, "embed_dim": 1536, "depth": 40,
             "num_heads": 24, "init_values": 1e-5, "mlp_ratio": 5.33334, "num_classes": 0},
            224, *IMAGENET, "fp16", "cls", 1536, "https://huggingface.co/prov-gigapath/prov-gigapath"),
    )
}


def is_preset(arch: str) -> bool:
    """True when ``arch`` is ``preset:<name>``."""
    return arch.startswith(PRESET_PREFIX)


def get_preset(arch: str) -> EncoderPreset:
    """The preset of ``arch`` (``preset:<name>`` or a bare name).

    Args:
        arch: ``preset:uni`` or ``uni``.

    Returns:
        The preset; an unknown name raises ConfigError listing the presets.
    """
    name = arch.removeprefix(PRESET_PREFIX)
    if name not in PRESETS:
        raise ConfigError(f"arch: {name!r} is not an encoder preset; presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def require_weights(arch: str, model: str) -> Path:
    """The local weight file of a preset, or a ConfigError naming the preset and what to download.

    Args:
        arch: ``preset:<name>``.
        model: the ``model`` setting: a path to the weight file (``random`` is refused).

    Returns:
        The weight file (it exists).
    """
    preset = get_preset(arch)
    path = Path(model) if model and model != "random" else None
    if path is not None and path.is_dir():
        inside = [path / n for n in (preset.weights_file, "model.safetensors") if (path / n).is_file()]
        path = inside[0] if inside else path
    if path is None or not path.is_file():
        given = "none given" if path is None else f"{model} is not a file"
        raise ConfigError(
            f"model: preset {preset.name} needs its weight file ({given}): download {preset.weights_file} "
            f"(or model.safetensors) from {preset.url} after accepting its licence, and set model to its "
            "local path; weights are never downloaded"
        )
    return path


def load_weights(path: Path, preset: EncoderPreset) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: safetensors for ``.safetensors``, else ``torch.load(weights_only=True)``.

    Args:
        path: the weight file.
        preset: the preset it belongs to (named in errors).

    Returns:
        Parameter name -> tensor (a ``state_dict``/``model`` wrapper is unwrapped).
    """
    return read_state_dict(path, f"preset {preset.name}")


def read_state_dict(path: Path, owner: str) -> dict[str, torch.Tensor]:
    """A state dict from a weight file: safetensors, else ``torch.load(weights_only=True)``.

    Args:
        path: the weight file (``pytorch_model.bin``, ``model.safetensors``, a ``.pth``).
        owner: what the weights are for, named in errors (``preset uni``, ``timm:vit_small_patch16_224``).

    Returns:
        Parameter name -> tensor (a ``state_dict``/``model`` wrapper is unwrapped).
    """
    import torch

    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ConfigError(f"model: {path} is a .safetensors file; install safetensors "
                              "(pip install safetensors) or use the card's pytorch_model.bin") from exc
        state: Any = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # refused pickle or a corrupt file
            raise MixtureRayError(f"{owner}: {path} cannot be read as a weights-only file "
                                  f"({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict) and len(state) <= 3:
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MixtureRayError(f"{owner}: {path} holds no state dict of tensors")
    return dict(state)
