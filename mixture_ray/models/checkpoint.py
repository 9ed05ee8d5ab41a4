"""Checkpoint files: plain dicts of tensors and primitives, loadable with ``weights_only=True``.

Two kinds share one loader: a MoCo training state (``moco.pt`` in a Ray checkpoint folder) and
an exported encoder (``elex.pt``: the query ResNet + head, what embedding and fine-tuning use).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mixture_ray.errors import MixtureRayError

if TYPE_CHECKING:
    from collections.abc import Mapping

TRAIN_FILE = "moco.pt"
ENCODER_FILE = "elex.pt"
ENCODER_FORMAT = "mixture_ray.encoder/2"
TRAIN_FORMAT = "mixture_ray.moco_state/2"
# Files of earlier versions (ResNetEncoder keys ``backbone.*``/``head.*``, spec arch/dim/mlp) still load.
OLD_ENCODER_FORMATS = ("mixture_ray.resnet_encoder/1",)
OLD_TRAIN_FORMATS = ("mixture_ray.moco_state/1",)


def save(payload: Mapping[str, Any], path: Path) -> None:
    """Write ``payload`` atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(dict(payload), tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint file as data only (``weights_only=True``); errors name the file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise MixtureRayError(f"checkpoint {path}: file not found") from exc
    except Exception as exc:  # unpickling refused or corrupt file
        raise MixtureRayError(f"checkpoint {path}: cannot be read as a weights-only file ({exc})") from exc
    if not isinstance(payload, dict) or "format" not in payload:
        raise MixtureRayError(f"checkpoint {path}: not a mixture_ray checkpoint (no 'format' key)")
    return payload


def find_checkpoint(path: Path) -> Path:
    """The checkpoint file behind ``path``: a file, a Ray checkpoint folder or a pretrain run folder.

    A run folder resolves to its exported ``elex.pt`` if present, else its newest checkpoint.
    """
    path = Path(path)
    if path.is_file():
        return path
    for name in (ENCODER_FILE, TRAIN_FILE):
        if (path / name).is_file():
            return path / name
    candidates = sorted(path.glob(f"checkpoint_*/{TRAIN_FILE}"), key=lambda p: p.stat().st_mtime)
    if candidates:
        return candidates[-1]
    raise MixtureRayError(
        f"model {path}: no {ENCODER_FILE}, {TRAIN_FILE} or checkpoint_*/{TRAIN_FILE} found there"
    )


def encoder_payload(payload: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network spec, query-encoder state dict) from either checkpoint kind."""
    fmt = payload.get("format")
    if fmt == ENCODER_FORMAT or fmt in OLD_ENCODER_FORMATS:
        return dict(payload["spec"]), dict(payload["state_dict"])
    if fmt == TRAIN_FORMAT or fmt in OLD_TRAIN_FORMATS:
        return dict(payload["spec"]), dict(payload["query"])
    raise MixtureRayError(f"checkpoint {path}: unknown format {fmt!r}")
