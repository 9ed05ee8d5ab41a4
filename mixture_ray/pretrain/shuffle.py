"""Key-batch shuffling for MoCo: within one worker (split BN) or across workers (all-gather)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every worker along dim 0 (no gradient)."""
    n = world_size()
    if n == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(n)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def shuffle(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """This worker's slice of a batch shuffled across all workers, and the undo permutation.

    With one worker the batch is permuted locally (split BN then mixes the groups).
    """
    n = world_size()
    local = x.shape[0]
    gathered = gather(x)
    perm = torch.randperm(gathered.shape[0], generator=gen, device=gen.device).to(x.device)
    if n > 1:
        dist.broadcast(perm, src=0)
    undo = torch.argsort(perm)
    rank = dist.get_rank() if n > 1 else 0
    mine = perm.view(n, local)[rank]
    return gathered[mine], undo.view(n, local)[rank]


@torch.no_grad()
def unshuffle(keys: torch.Tensor, undo: torch.Tensor) -> torch.Tensor:
    """Keys back in this worker's original order after :func:`shuffle`."""
    return gather(keys)[undo]
