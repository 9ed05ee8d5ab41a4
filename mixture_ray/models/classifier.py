"""The finding classifier: the ElEx :class:`Backbone` with one linear layer over the findings.

The backbone is a torchvision ResNet (an ElEx checkpoint or random), a ``timm:<name>`` model (random,
an encoder checkpoint or the timm model's weight file) or a ``preset:<name>`` foundation model (its
local weight file); the linear layer sits on its pooled features (``num_features``). Tiles are fed
at the network's own input size and normalisation (:func:`prepare_tiles`).

Exported as a weights-only file (``classifier.pt``: tensors and primitives, ``torch.load(...,
weights_only=True)``) holding the arch, the classes, the weights and the input (``input_size``,
``mean``, ``std``), which :func:`load_classifier` turns back into the same network. Files written
before the input was recorded (ResNets) take ImageNet normalisation at any size, as they did.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mixture_ray.errors import MixtureRayError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.augment import normalise, resize_to, to_float
from mixture_ray.models.backbone import Backbone, upgrade_state_dict
from mixture_ray.models.encoder import load_encoder

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CLASSIFIER_FILE = "classifier.pt"
CLASSIFIER_FORMAT = "mixture_ray.finding_classifier/1"


def from_elex(model: str, classes: Sequence[str], *, arch: str = "resnet18", seed: int = 0) -> Backbone:
    """A finding classifier: the ElEx ``model`` (or a seeded random one) with a new linear head.

    Args:
        model: ``random``, an ElEx/encoder checkpoint file or folder, or (``arch: timm:<name>`` or
            ``preset:<name>``) the model's local weight file (:func:`load_encoder`).
        classes: the finding names, one output each.
        arch: ResNet, ``timm:<name>`` or ``preset:<name>`` of the backbone (a checkpoint names its own).
        seed: seed of a random backbone and of the new head.

    Returns:
        The network (train mode), its projection head replaced by ``Linear(num_features, len(classes))``.
    """
    net = load_encoder(model, arch=arch, seed=seed)
    torch.manual_seed(seed)
    net.reset_classifier(len(classes), classes=classes)
    return net.train()


def classifier_payload(net: Backbone, **meta: Any) -> dict[str, Any]:
    """What the exported file holds: format, arch, classes, weights, the input and run facts.

    Args:
        net: the classifier.
        **meta: run facts kept beside (epoch, step, magnification, image_size, ...).

    Returns:
        A dict of tensors and primitives (``torch.load(weights_only=True)`` reads it): ``input_size``
        is ``[height, width]`` or None (any size), ``mean``/``std`` the normalisation.
    """
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    size = None if net.input_size is None else [int(v) for v in net.input_size]
    return {"format": CLASSIFIER_FORMAT, "arch": net.arch, "classes": list(net.classes),
            "input_size": size, "mean": [float(v) for v in net.mean], "std": [float(v) for v in net.std],
            "state_dict": state, **meta}


def classifier_from_payload(payload: Mapping[str, Any], path: Path) -> Backbone:
    """Rebuild an eval-mode classifier from an exported payload (this version's or an earlier one).

    Args:
        payload: the loaded file (:func:`classifier_payload`).
        path: the file (named in errors).

    Returns:
        The network, with the recorded input size and normalisation (a file without them keeps the
        arch's own: ImageNet normalisation at any size for a ResNet).
    """
    if payload.get("format") != CLASSIFIER_FORMAT:
        raise MixtureRayError(
            f"classifier {path}: format {payload.get('format')!r} is not {CLASSIFIER_FORMAT}"
        )
    classes = [str(c) for c in payload["classes"]]
    net = Backbone(str(payload["arch"]), len(classes), classes=classes)
    net.load_state_dict(upgrade_state_dict(payload["state_dict"]))
    if "mean" in payload:  # the input is recorded since the timm/preset classifiers
        size = payload.get("input_size")
        net.input_size = None if size is None else (int(size[0]), int(size[1]))
        net.mean = tuple(float(v) for v in payload["mean"])
        net.std = tuple(float(v) for v in payload["std"])
    return net.eval()


def load_classifier(path: Path) -> tuple[Backbone, dict[str, Any]]:
    """(network, payload) of an exported classifier file or a finetune run folder."""
    path = Path(path)
    file = path / CLASSIFIER_FILE if path.is_dir() else path
    payload = ckpt.load(file)
    return classifier_from_payload(payload, file), payload


def prepare_tiles(net: Backbone, tiles: torch.Tensor) -> torch.Tensor:
    """uint8 tiles (B, H, W, 3) -> the network's input: float (B, 3, h, w) at its size, normalised.

    Args:
        net: the network; its ``input_size`` (None: the tiles' size), ``mean`` and ``std`` are used.
        tiles: uint8 RGB tiles on the network's device.

    Returns:
        Images resized (antialiased bilinear) to ``net.input_size`` and normalised with ``net.mean``/``std``.
    """
    return normalise(resize_to(to_float(tiles), net.input_size), net.mean, net.std)


@torch.no_grad()
def predict(net: Backbone, tiles: np.ndarray, *, batch_size: int = 128,
            device: torch.device | None = None) -> np.ndarray:
    """Class index per uint8 tile (N, H, W, 3); the network is put in eval mode.

    Args:
        net: the classifier (its input size and normalisation are applied, :func:`prepare_tiles`).
        tiles: uint8 RGB tiles.
        batch_size: tiles per forward pass.
        device: where the network is (CPU by default).

    Returns:
        int64 class indices (N,).
    """
    device = device or torch.device("cpu")
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, len(tiles), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size])).to(device)
        out.append(net(prepare_tiles(net, batch)).argmax(dim=1).cpu().numpy())
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, np.int64)
