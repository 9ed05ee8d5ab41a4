"""Split batch norm: per-group batch statistics that emulate shuffle-BN on one worker."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch convention)


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that normalises ``num_splits`` groups of the batch separately in training.

    Its state dict is a plain BatchNorm2d's, so weights load into an ordinary ResNet.
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs: object) -> None:
        super().__init__(num_features, **kwargs)  # type: ignore[arg-type]
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with per-split batch statistics in training; plain batch norm otherwise."""
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        if n % self.num_splits:
            raise ValueError(f"batch of {n} is not divisible into {self.num_splits} BN splits")
        assert self.running_mean is not None and self.running_var is not None
        mean = self.running_mean.repeat(self.num_splits)
        var = self.running_var.repeat(self.num_splits)
        out = F.batch_norm(
            x.reshape(-1, c * self.num_splits, h, w), mean, var,
            self.weight.repeat(self.num_splits), self.bias.repeat(self.num_splits),
            True, self.momentum or 0.1, self.eps,
        ).reshape(n, c, h, w)
        self.running_mean.copy_(mean.view(self.num_splits, c).mean(dim=0))
        self.running_var.copy_(var.view(self.num_splits, c).mean(dim=0))
        return out


def convert_split_bn(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` (in place) by a SplitBatchNorm with its weights."""
    if num_splits <= 1:
        return module
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm):
            split = SplitBatchNorm(child.num_features, num_splits, eps=child.eps, momentum=child.momentum)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split)
        else:
            convert_split_bn(child, num_splits)
    return module
