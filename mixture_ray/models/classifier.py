"""The finding classifier: the ElEx :class:`Backbone` with one linear layer over the findings.

Exported as a weights-only file (``classifier.pt``: tensors and primitives, ``torch.load(...,
weights_only=True)``) that :func:`load_classifier` turns back into a network for classification.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mixture_ray.errors import MixtureRayError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.augment import normalise, to_float
from mixture_ray.models.backbone import Backbone, require_resnet, upgrade_state_dict
from mixture_ray.models.encoder import load_encoder

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from torch import nn

CLASSIFIER_FILE = "classifier.pt"
CLASSIFIER_FORMAT = "mixture_ray.finding_classifier/1"


def from_elex(model: str, classes: Sequence[str], *, arch: str = "resnet18", seed: int = 0) -> Backbone:
    """A finding classifier: the ElEx ``model`` (or a seeded random one) with a new linear head.

    Args:
        model: ``random`` or an ElEx checkpoint file/folder.
        classes: the finding names, one output each.
        arch: ResNet of a random backbone.
        seed: seed of a random backbone and of the new head.

    Returns:
        The network (train mode), its projection head replaced by ``Linear(num_features, len(classes))``.
    """
    net = load_encoder(model, arch=arch, seed=seed)
    require_resnet(net.arch, "finetune")
    torch.manual_seed(seed)
    net.reset_classifier(len(classes), classes=classes)
    return net.train()


def classifier_payload(net: Backbone, **meta: Any) -> dict[str, Any]:
    """What the exported file holds: format, arch, classes, weights and run facts."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return {"format": CLASSIFIER_FORMAT, "arch": net.arch, "classes": list(net.classes),
            "state_dict": state, **meta}


def classifier_from_payload(payload: Mapping[str, Any], path: Path) -> Backbone:
    """Rebuild an eval-mode classifier from an exported payload (this version's or an earlier one)."""
    if payload.get("format") != CLASSIFIER_FORMAT:
        raise MixtureRayError(
            f"classifier {path}: format {payload.get('format')!r} is not {CLASSIFIER_FORMAT}"
        )
    classes = [str(c) for c in payload["classes"]]
    net = Backbone(str(payload["arch"]), len(classes), classes=classes)
    net.load_state_dict(upgrade_state_dict(payload["state_dict"]))
    return net.eval()


def load_classifier(path: Path) -> tuple[Backbone, dict[str, Any]]:
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
