"""Per-epoch sampling: which tiles an epoch draws, and the batches a worker trains on.

An epoch draws a seeded permutation, or class-balanced draws with replacement.

Tiles stream to each worker (its share of the epoch's training feed, tiles drawn 0 times left
unread), so the epoch's draws are applied to the stream: each arriving tile is repeated as often
as the epoch drew it (:func:`epoch_indices` counts), and batches are drawn at random from a
bounded mixing buffer. The multiset of tiles an epoch draws is the same as with random access;
the order comes from the feed's seeded order of parts and rows and the seeded buffer, so it does
not depend on the load. A worker's share of the draws varies around ``1 / workers`` (each
worker reads other tile parts), so
a worker trains exactly ``steps`` batches: extra draws are left out, and a short share is topped
up by redrawing from the tiles it last saw.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping


def epoch_indices(
    targets: np.ndarray, n_classes: int, *, balanced: bool, seed: int, epoch: int
) -> np.ndarray:
    """Indices of one epoch (length = number of tiles), the same for the same seed and epoch.

    ``balanced``: each draw picks a class uniformly among those present, then a tile of it, so a
    rare finding (e.g. fibroblastic foci) is seen as often as a common one.
    """
    rng = np.random.default_rng([seed, epoch])
    n = len(targets)
    if not balanced:
        return rng.permutation(n)
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = 1.0 / (counts[present] * present.sum())
    return rng.choice(n, size=n, replace=True, p=weights[targets])


def epoch_counts(
    targets: np.ndarray, n_classes: int, *, balanced: bool, seed: int, epoch: int
) -> np.ndarray:
    """How often each tile is drawn in one epoch (the :func:`epoch_indices` draws, counted)."""
    indices = epoch_indices(targets, n_classes, balanced=balanced, seed=seed, epoch=epoch)
    return np.bincount(indices, minlength=len(targets))


def epoch_batches(
    stream: Iterable[Mapping[str, np.ndarray]],
    counts: np.ndarray,
    *,
    batch_size: int,
    steps: int,
    rng: np.random.Generator,
    mix_batches: int = 8,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Exactly ``steps`` (image, target) batches from a stream of tiles, each repeated ``counts[row]`` times.

    Args:
        stream: batches with ``image`` (B, H, W, 3), ``target`` (B,) and ``row`` (B,) (the index
            into ``counts``), e.g. a Ray Train dataset shard's numpy batches.
        counts: draws per tile this epoch (:func:`epoch_counts`).
        batch_size: tiles per yielded batch.
        steps: batches to yield (the stream is left unfinished once they are out).
        rng: the generator for the draws from the buffer.
        mix_batches: a batch is drawn once the buffer holds this many batches (less at the end).

    Returns:
        An iterator of ``steps`` uint8 image batches with their int64 targets.

    Raises:
        RuntimeError: the stream held no tile at all.
    """
    buf_x: np.ndarray | None = None
    buf_y = np.zeros(0, np.int64)
    recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=mix_batches)
    done = 0

    def draw(minimum: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal buf_x, buf_y, done
        while buf_x is not None and len(buf_y) >= max(minimum, batch_size) and done < steps:
            pick = rng.choice(len(buf_y), batch_size, replace=False)
            rest = np.ones(len(buf_y), bool)
            rest[pick] = False
            batch = (buf_x[pick], buf_y[pick])
            buf_x, buf_y = buf_x[rest], buf_y[rest]
            recent.append(batch)
            done += 1
            yield batch

    for part in stream:
        repeat = counts[np.asarray(part["row"], np.int64)]
        x = np.repeat(np.asarray(part["image"]), repeat, axis=0)
        y = np.repeat(np.asarray(part["target"], np.int64), repeat)
        buf_x = x if buf_x is None else np.concatenate([buf_x, x])
        buf_y = np.concatenate([buf_y, y])
        yield from draw(mix_batches * batch_size)
        if done >= steps:
            return
    yield from draw(batch_size)
    pool = [*recent, *([(buf_x, buf_y)] if buf_x is not None and len(buf_y) else [])]
    if done < steps and not pool:
        raise RuntimeError("the dataset shard yielded no tiles; lower batch_size or use fewer workers")
    if done < steps:
        pool_x = np.concatenate([p[0] for p in pool])
        pool_y = np.concatenate([p[1] for p in pool])
        while done < steps:
            pick = rng.choice(len(pool_y), batch_size, replace=len(pool_y) < batch_size)
            done += 1
            yield pool_x[pick], pool_y[pick]
