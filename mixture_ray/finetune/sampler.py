"""Per-epoch sample order: a seeded permutation, or class-balanced draws with replacement."""

from __future__ import annotations

import numpy as np


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
