"""The one network of the project: a torchvision ResNet (or any timm model) behind timm's contract.

Pretraining (MoCo encoder with a projection head), embedding, fine-tuning, classification and
explanation all build a :class:`Backbone`. It follows the contract of ``timm`` models, so code
written against it also takes a timm model:

- ``forward_features(x)`` -> the last conv feature map (B, num_features, h, w), unpooled;
- ``forward_head(x, pre_logits=False)`` -> pooled features (B, num_features) when ``pre_logits``,
  else the head's output (B, num_classes);
- ``forward(x)`` = ``forward_head(forward_features(x))``;
- ``reset_classifier(num_classes)`` replaces the head (0 = no head, pooled features out);
- ``get_classifier()``, ``num_features`` and ``num_classes``.

The sub-modules of a ResNet keep torchvision's names (``conv1`` ... ``layer4``, ``fc``), so a
torchvision ResNet ``state_dict`` loads as it is and layers are named as in torchvision (``layer4``).
``arch: timm:<name>`` builds any timm architecture (random init, no hub download) as the trunk,
with its own input size and normalisation (``input_size``, ``mean``, ``std``); ``arch: preset:<name>``
builds a pathology foundation model of :mod:`mixture_ray.models.presets` the same way (its weights
come from a local file, see :func:`mixture_ray.models.encoder.load_encoder`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
import torchvision
from torch import nn

from mixture_ray.errors import ConfigError
from mixture_ray.models.presets import get_preset, is_preset

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

TIMM_PREFIX = "timm:"
#: ImageNet normalisation of the torchvision ResNets.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
         "wide_resnet50_2")
HeadKind = Literal["linear", "mlp"]


def check_arch(arch: str) -> None:
    """Raise a :class:`ConfigError` naming the choices when ``arch`` is not a ResNet, timm model or preset."""
    if is_preset(arch):
        get_preset(arch)
        return
    if arch.startswith(TIMM_PREFIX):
        name = arch.removeprefix(TIMM_PREFIX)
        try:
            import timm
        except ImportError as exc:
            raise ConfigError(f"arch: {arch} needs the timm package (pip install timm)") from exc
        if not timm.is_model(name):
            raise ConfigError(f"arch: {name!r} is not a timm model name (timm.list_models() lists them)")
        return
    if arch not in ARCHS:
        raise ConfigError(f"arch: {arch!r} is not one of {', '.join(ARCHS)}, timm:<name> or preset:<name>")


def require_resnet(arch: str, where: str) -> None:
    """Raise a :class:`ConfigError` when ``where`` cannot take a timm architecture yet."""
    if arch.startswith(TIMM_PREFIX) or is_preset(arch):
        raise ConfigError(f"arch: {where} takes a torchvision ResNet ({', '.join(ARCHS[:3])}, ...); "
                          f"timm models and presets work in embed, finetune and classify (and the stages "
                          f"that read their outputs)")


class Backbone(nn.Module):
    """A torchvision ResNet (``weights=None``) with a replaceable head, timm-style.

    Args:
        arch: a torchvision ResNet name (see ``ARCHS``), ``timm:<name>`` or ``preset:<name>``.
        num_classes: outputs of the head; 0 means no head (``forward`` returns pooled features).
        head: ``linear`` (one layer) or ``mlp`` (Linear-ReLU-Linear, the MoCo v2 projection).
        classes: names of the outputs, when the head is a classifier (kept in exported files).

    Example:
        >>> net = Backbone("resnet18", num_classes=2, classes=("tumour", "stroma"))
        >>> net.forward_features(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 512, 2, 2])
    """

    def __init__(self, arch: str = "resnet18", num_classes: int = 0, *, head: HeadKind = "linear",
                 classes: Sequence[str] = ()) -> None:
        super().__init__()
        check_arch(arch)
        self.arch = arch
        self.is_timm = arch.startswith(TIMM_PREFIX) or is_preset(arch)
        #: (height, width) the network expects, or None for any size; the input normalisation.
        self.input_size: tuple[int, int] | None = None
        self.mean: tuple[float, ...] = IMAGENET_MEAN
        self.std: tuple[float, ...] = IMAGENET_STD
        #: GPU inference precision the model's card asks for (bf16, fp16, fp32); pooling of tokens.
        self.precision: str = "bf16"
        self.pooling: str = "default"
        if is_preset(arch):
            preset = get_preset(arch)
            built: Any = preset.create()
            self.trunk = built
            self.num_features: int = int(built.num_features) * (2 if preset.pooling == "cls_mean" else 1)
            self.input_size = (preset.input_size, preset.input_size)
            self.mean, self.std = preset.mean, preset.std
            self.precision, self.pooling = preset.precision, preset.pooling
        elif self.is_timm:
            import timm

            trunk: Any = timm.create_model(arch.removeprefix(TIMM_PREFIX), pretrained=False, num_classes=0)
            self.trunk = trunk
            self.num_features = int(trunk.num_features)
            data: dict[str, Any] = dict(trunk.pretrained_cfg)
            self.input_size = (int(data["input_size"][1]), int(data["input_size"][2]))
            self.mean, self.std = tuple(data["mean"]), tuple(data["std"])
        else:
            resnet: torchvision.models.ResNet = getattr(torchvision.models, arch)(weights=None)
            self.conv1, self.bn1, self.relu, self.maxpool = (
                resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
            self.layer1, self.layer2, self.layer3, self.layer4 = (
                resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
            self.avgpool = resnet.avgpool
            self.num_features = resnet.fc.in_features
        self.fc: nn.Module = nn.Identity()
        self.num_classes, self.head_kind, self.classes = 0, head, tuple(classes)
        self.reset_classifier(num_classes, head=head, classes=classes)

    def reset_classifier(self, num_classes: int, *, head: HeadKind = "linear",
                         classes: Sequence[str] = ()) -> None:
        """Replace the head with a freshly initialised one of ``num_classes`` outputs (0: none)."""
        if classes and len(classes) != num_classes:
            raise ConfigError(f"classes: {len(classes)} names for a head of {num_classes} outputs")
        width = self.num_features
        if num_classes <= 0:
            self.fc = nn.Identity()
        elif head == "mlp":
            self.fc = nn.Sequential(
                nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, num_classes)
            )
        else:
            self.fc = nn.Linear(width, num_classes)
        self.num_classes, self.head_kind, self.classes = max(num_classes, 0), head, tuple(classes)

    def get_classifier(self) -> nn.Module:
        """The head (``nn.Identity`` when there is none)."""
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, num_features, h, w) of normalised images (B, 3, H, W).

        A timm trunk returns its own layout (tokens (B, N, C) for a ViT).
        """
        if self.is_timm:
            tokens: torch.Tensor = self.trunk.forward_features(x)
            return tokens
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: torch.Tensor = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool a feature map; return the pooled features or the head's output."""
        if self.pooling == "cls_mean":
            patches = x[:, int(self.trunk.num_prefix_tokens) :]
            pooled: torch.Tensor = torch.cat([x[:, 0], patches.mean(dim=1)], dim=-1)
        elif self.is_timm:
            pooled = self.trunk.forward_head(x, pre_logits=True)
        else:
            pooled = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            return pooled
        out: torch.Tensor = self.fc(pooled)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Head output (B, num_classes), or pooled features when there is no head."""
        return self.forward_head(self.forward_features(x))

    def spec(self) -> dict[str, object]:
        """What is needed to rebuild this network (kept in checkpoint files)."""
        return {"arch": self.arch, "num_classes": self.num_classes, "head": self.head_kind,
                "classes": list(self.classes)}


def from_spec(spec: Mapping[str, object]) -> Backbone:
    """A :class:`Backbone` from :meth:`Backbone.spec`, or from an older encoder spec (arch, dim, mlp)."""
    if "dim" in spec:  # mixture_ray.resnet_encoder/1 files
        head: HeadKind = "mlp" if spec.get("mlp", True) else "linear"
        return Backbone(str(spec["arch"]), int(str(spec["dim"])), head=head)
    kind = str(spec.get("head", "linear"))
    if kind not in ("linear", "mlp"):
        raise ConfigError(f"head: {kind!r} is not linear or mlp")
    names = spec.get("classes") or []
    assert isinstance(names, list)
    return Backbone(str(spec["arch"]), int(str(spec["num_classes"])),
                    head="mlp" if kind == "mlp" else "linear", classes=[str(n) for n in names])


def upgrade_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of files written before the one backbone (``backbone.*``, ``head.*``).

    Args:
        state: a state dict of this or an earlier version.

    Returns:
        The state dict with :class:`Backbone`'s (torchvision's) key names.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            key = key.removeprefix("backbone.")
        elif key.startswith("head."):
            key = "fc." + key.removeprefix("head.")
        out[key] = value
    return out
