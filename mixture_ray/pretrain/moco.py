"""MoCo v2: query/key encoders, momentum update, negative-key queue and the InfoNCE loss."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch convention)

from mixture_ray.models.backbone import Backbone
from mixture_ray.models.encoder import build_encoder
from mixture_ray.pretrain.shuffle import gather, shuffle, unshuffle
from mixture_ray.pretrain.splitbn import convert_split_bn


class KeyQueue(nn.Module):
    """A ring buffer of ``size`` L2-normalised keys of dimension ``dim``."""

    queue: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, dim: int, size: int, gen: torch.Generator | None = None) -> None:
        super().__init__()
        self.register_buffer("queue", F.normalize(torch.randn(size, dim, generator=gen), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Overwrite the oldest entries with ``keys`` (wrapping around)."""
        size = self.queue.shape[0]
        keys = keys[-size:]
        idx = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.ptr.fill_(int((self.ptr + keys.shape[0]) % size))


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, m: float) -> None:
    """Set key = m * key + (1 - m) * query, parameter by parameter (BN statistics stay the key's)."""
    for pk, pq in zip(key.parameters(), query.parameters(), strict=True):
        pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, t: float) -> torch.Tensor:
    """Cross-entropy of the positive key among the queue's negatives (all rows L2-normalised)."""
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ negatives.t()
    logits = torch.cat([pos, neg], dim=1) / t
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits.float(), labels)


class MoCo(nn.Module):
    """MoCo v2 around two :class:`Backbone` encoders (projection heads); ``query`` may be wrapped in DDP."""

    def __init__(
        self, *, arch: str, dim: int, mlp: bool, queue_size: int, momentum: float,
        temperature: float, split_bn: int = 1, seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.query: nn.Module = convert_split_bn(build_encoder(arch, dim, mlp), split_bn)
        self.key: nn.Module = copy.deepcopy(self.query)
        for p in self.key.parameters():
            p.requires_grad_(False)
        self.queue = KeyQueue(dim, queue_size, gen)
        self.m, self.t = momentum, temperature

    def encoder(self) -> Backbone:
        """The query encoder without any DDP wrapper (what gets exported)."""
        inner = getattr(self.query, "module", self.query)
        assert isinstance(inner, Backbone)
        return inner

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Loss for one step; updates the key encoder and the queue as side effects."""
        q = F.normalize(self.query(im_q), dim=1)
        with torch.no_grad():
            momentum_update(self.key, self.encoder(), self.m)
            shuffled, undo = shuffle(im_k, gen)
            k = unshuffle(F.normalize(self.key(shuffled), dim=1), undo)
        loss = info_nce(q, k, self.queue.queue.clone().detach(), self.t)
        self.queue.push(gather(k))
        return loss
