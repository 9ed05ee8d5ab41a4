"""A bounded, seeded local shuffle buffer: batches that mix the rows of a stream.

The buffer holds ``buffer_rows`` slots. While it fills, rows go into free slots; once every slot
is full a batch of ``batch_size`` slots is drawn at random (a seeded generator), and the next rows
of the stream take the slots it freed. When the stream ends, the rows left are drawn in a seeded
order. The batches depend only on the order of the rows and the generator, not on how the stream
happens to be cut into blocks, so a stream in a fixed order gives the same batches every run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping


def shuffled_batches(
    stream: Iterable[Mapping[str, np.ndarray]],
    *,
    batch_size: int,
    buffer_rows: int,
    rng: np.random.Generator,
    drop_last: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``batch_size`` rows drawn at random from a buffer of at most ``buffer_rows`` rows.

    Args:
        stream: column batches (every column has the same length), in a fixed order.
        batch_size: rows per yielded batch.
        buffer_rows: slots in the buffer (raised to ``batch_size`` when smaller); memory is
            ``buffer_rows`` rows of every column.
        rng: the seeded generator of the draws.
        drop_last: leave out the last, short batch.

    Returns:
        An iterator of column batches (copies, not views of the buffer).
    """
    slots = max(buffer_rows, batch_size)
    buffer: dict[str, np.ndarray] | None = None
    free = np.arange(slots)  # slots that take the next rows, in this order
    cursor = 0  # free[:cursor] are filled again
    for part in stream:
        n = len(next(iter(part.values()))) if part else 0
        start = 0
        while start < n:
            if buffer is None:
                buffer = {k: np.empty((slots, *np.shape(v)[1:]), _slot_type(v)) for k, v in part.items()}
            take = min(n - start, len(free) - cursor)
            where = free[cursor:cursor + take]
            for key, values in part.items():
                buffer[key][where] = np.asarray(values)[start:start + take]
            start, cursor = start + take, cursor + take
            if cursor == len(free):  # full: draw a batch, its slots take the next rows
                free = rng.choice(slots, batch_size, replace=False)
                cursor = 0
                yield {k: v[free] for k, v in buffer.items()}
    if buffer is None:
        return
    filled = np.ones(slots, bool)
    filled[free[cursor:]] = False
    rest = rng.permutation(np.flatnonzero(filled))
    for begin in range(0, len(rest), batch_size):
        pick = rest[begin:begin + batch_size]
        if len(pick) == batch_size or not drop_last:
            yield {k: v[pick] for k, v in buffer.items()}


def _slot_type(values: np.ndarray) -> np.dtype[np.generic]:
    """The buffer's dtype for a column: fixed-width strings become objects (later rows may be longer)."""
    dtype = np.asarray(values).dtype
    return np.dtype(object) if dtype.kind in "US" else dtype
