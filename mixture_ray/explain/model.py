"""Build the explained network (the project :class:`Backbone`), load its weights safely, tap one layer."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mixture_ray.errors import ConfigError
from mixture_ray.models.backbone import Backbone, upgrade_state_dict

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType


def build_model(arch: str, num_classes: int, checkpoint: Path | None = None, *,
                init_seed: int = 0) -> Backbone:
    """The explained network: a :class:`Backbone` with ``num_classes`` outputs, in eval mode.

    The random initial weights are drawn from ``init_seed`` (torch's global generator is left as it
    was), so a network without a checkpoint is the same in every Ray task, in fit and in apply.

    Args:
        arch: a torchvision ResNet name (``weights=None``).
        num_classes: outputs of the classification head.
        checkpoint: a torchvision ResNet ``state_dict`` file, or a finding classifier exported by
            ``finetune`` (``classifier.pt``); read with ``weights_only=True``.
        init_seed: seed of the initial weights (what stays when ``checkpoint`` is None).

    Returns:
        The network in eval mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = Backbone(arch, num_classes)
    if checkpoint is not None:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:  # missing, corrupt, or needs full unpickling
            raise ConfigError(
                f"checkpoint: {checkpoint} cannot be read as a weights-only file ({exc})"
            ) from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            model.load_state_dict(upgrade_state_dict(state))
        except (RuntimeError, AttributeError) as exc:
            raise ConfigError(f"checkpoint: {checkpoint} does not fit {arch}: {exc}") from exc
    return model.eval()


def weights_digest(checkpoint: Path | None, init_seed: int = 0) -> str:
    """What the network's weights are: the checkpoint's SHA-256, or the random-init seed.

    Args:
        checkpoint: the weights file, or None for random weights.
        init_seed: the seed of random weights (see :func:`build_model`).

    Returns:
        ``sha256:<hex>`` of the file, or ``random:<init_seed>``.
    """
    if checkpoint is None:
        return f"random:{init_seed}"
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name``; a clear error lists some valid names."""
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        names = [n for n, _ in model.named_children()]
        raise ConfigError(f"layer: {name!r} not found; top-level modules: {names}") from exc


class LayerTap:
    """Forward hook that keeps ``layer``'s output; checks it is non-negative (post-ReLU).

    ``non_negative="error"`` raises on a negative value; ``"relu"`` clamps at zero.
    ``keep_grad=True`` keeps the graph so GradCAM can read the gradient of the output.
    """

    def __init__(self, model: nn.Module, layer: str, *, non_negative: str = "error",
                 keep_grad: bool = False) -> None:
        self.layer_name, self.non_negative, self.keep_grad = layer, non_negative, keep_grad
        self.module = get_layer(model, layer)
        self.output: torch.Tensor | None = None
        self.raw: torch.Tensor | None = None  # the layer's own output (its .grad for GradCAM)
        self._handle: Any = None

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ConfigError(f"layer: {self.layer_name!r} does not output a 4-D conv feature map")
        raw = output
        if bool((output < 0).any()):
            if self.non_negative == "error":
                raise ConfigError(
                    f"layer: {self.layer_name!r} has negative outputs (not after a ReLU); choose a "
                    "post-ReLU layer or set non_negative=relu"
                )
            output = torch.relu(output)
        if self.keep_grad and raw.requires_grad:
            raw.retain_grad()
        self.raw = raw
        self.output = output if self.keep_grad else output.detach()

    def __enter__(self) -> LayerTap:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
