"""GradCAM (Selvaraju et al.) of one class on one conv layer, computed with the activations.

cam = ReLU(sum_c alpha_c A_c), alpha_c = spatial mean of d logit / d A_c. No maintained GradCAM
package fits the pinned dependencies offline, so this small version is tested against the CAM
identity (global average pooling + linear head gives cam = ReLU(sum_c w_c A_c) / (h w)).
"""

from __future__ import annotations

import torch
from torch import nn

from mixture_ray.explain.model import LayerTap


def forward_with_cam(model: nn.Module, layer: str, images: torch.Tensor, target: int, *,
                     non_negative: str = "error", cam: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(activations B x C x h x w, logits B x classes, GradCAM B x h x w or None) in one pass."""
    with LayerTap(model, layer, non_negative=non_negative, keep_grad=cam) as tap:
        if not cam:
            with torch.no_grad():
                logits = model(images)
            assert tap.output is not None
            return tap.output, logits, None
        with torch.enable_grad():
            logits = model(images)
            acts, raw = tap.output, tap.raw
            assert acts is not None and raw is not None
            if not raw.requires_grad:
                raise RuntimeError("GradCAM: the layer output does not depend on model parameters")
            model.zero_grad(set_to_none=True)
            logits[:, target].sum().backward()
            assert raw.grad is not None
            alpha = raw.grad.mean(dim=(2, 3), keepdim=True)
            heat = torch.relu((alpha * acts).sum(dim=1))
    model.zero_grad(set_to_none=True)
    return acts.detach(), logits.detach(), heat.detach()
