"""A torchvision ResNet with a projection head: ``forward_features`` (pooled) and ``forward`` (head)."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from mixture_ray.errors import ConfigError

ARCHS = ("resnet18", "resnet34", "resnet50")


class ResNetEncoder(nn.Module):
    """ResNet backbone (fc removed) + linear or 2-layer MLP head to ``dim`` outputs."""

    def __init__(self, arch: str = "resnet18", dim: int = 128, mlp: bool = True) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ConfigError(f"arch: {arch!r} is not one of {', '.join(ARCHS)}")
        backbone = getattr(torchvision.models, arch)(weights=None)
        self.num_features: int = backbone.fc.in_features
        backbone.fc = nn.Identity()
        self.backbone = backbone
        width = self.num_features
        self.head: nn.Module = (
            nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, dim))
            if mlp
            else nn.Linear(width, dim)
        )
        self.arch, self.dim, self.mlp = arch, dim, mlp

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled backbone features (B, num_features)."""
        out: torch.Tensor = self.backbone(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Head output (B, dim), not normalised."""
        out: torch.Tensor = self.head(self.forward_features(x))
        return out

    def spec(self) -> dict[str, object]:
        """What is needed to rebuild this network."""
        return {"arch": self.arch, "dim": self.dim, "mlp": self.mlp}
