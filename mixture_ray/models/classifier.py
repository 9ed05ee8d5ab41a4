"""The finding classifier: an ElEx ResNet backbone + one linear layer over the findings.

Exported as a weights-only file (``classifier.pt``: tensors and primitives, ``torch.load(...,
weights_only=True)``) that :func:`load_classifier` turns back into a network for classification.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchvision
from torch import nn

from mixture_ray.errors import MixtureRayError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.augment import normalise, to_float
from mixture_ray.models.encoder_loader import load_encoder

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CLASSIFIER_FILE = "classifier.pt"
CLASSIFIER_FORMAT = "mixture_ray.finding_classifier/1"


class FindingClassifier(nn.Module):
    """ResNet backbone (pooled features) -> Linear(num_features, len(classes))."""

    def __init__(self, arch: str, classes: Sequence[str]) -> None:
        super().__init__()
        backbone = getattr(torchvision.models, arch)(weights=None)
        self.num_features: int = backbone.fc.in_features
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.fc = nn.Linear(self.num_features, len(classes))
        self.arch, self.classes = arch, tuple(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes) of normalised images (B, 3, H, W)."""
        out: torch.Tensor = self.fc(self.backbone(x))
        return out


def from_elex(
    model: str, classes: Sequence[str], *, arch: str = "resnet18", seed: int = 0
) -> FindingClassifier:
    """A classifier whose backbone is the ElEx ``model`` (or a seeded random one); head re-initialised."""
    encoder = load_encoder(model, arch=arch, seed=seed)
    net = FindingClassifier(encoder.arch, classes)
    net.backbone.load_state_dict(encoder.backbone.state_dict())
    torch.manual_seed(seed)
    net.fc.reset_parameters()
    return net


def classifier_payload(net: FindingClassifier, **meta: Any) -> dict[str, Any]:
    """What the exported file holds: format, arch, classes, weights and run facts."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return {"format": CLASSIFIER_FORMAT, "arch": net.arch, "classes": list(net.classes),
            "state_dict": state, **meta}


def classifier_from_payload(payload: Mapping[str, Any], path: Path) -> FindingClassifier:
    """Rebuild an eval-mode classifier from an exported payload."""
    if payload.get("format") != CLASSIFIER_FORMAT:
        raise MixtureRayError(
            f"classifier {path}: format {payload.get('format')!r} is not {CLASSIFIER_FORMAT}"
        )
    net = FindingClassifier(str(payload["arch"]), [str(c) for c in payload["classes"]])
    net.load_state_dict(payload["state_dict"])
    return net.eval()


def load_classifier(path: Path) -> tuple[FindingClassifier, dict[str, Any]]:
    """(network, payload) of an exported classifier file or a finetune run folder."""
    path = Path(path)
    file = path / CLASSIFIER_FILE if path.is_dir() else path
    payload = ckpt.load(file)
    return classifier_from_payload(payload, file), payload


@torch.no_grad()
def predict(net: nn.Module, tiles: np.ndarray, *, batch_size: int = 128,
            device: torch.device | None = None) -> np.ndarray:
    """Class index per uint8 tile (N, H, W, 3); the network is put in eval mode."""
    device = device or torch.device("cpu")
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, len(tiles), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size])).to(device)
        out.append(net(normalise(to_float(batch))).argmax(dim=1).cpu().numpy())
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.int64)
