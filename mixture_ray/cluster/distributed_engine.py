"""The distributed k-means as an engine of ``fit(x, k, seed)``, for a matrix already on the driver."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ray

from mixture_ray.cluster.distributed import DistributedFit, DistributedOptions, fit_blocks
from mixture_ray.cluster.engines import KMeansFit, check_matrix
from mixture_ray.ray_runtime import ensure_ray

if TYPE_CHECKING:
    import numpy as np


class DistributedKMeans:
    """The distributed engine behind ``fit(x, k, seed)``: ``x`` is cut into blocks put in Ray's store.

    For a matrix already in the driver (benchmarks, tests); the cluster stage hands Parquet
    blocks to :func:`fit_blocks` instead, so its rows never reach the driver.

    Args:
        block_rows: rows per block.
        options: resources, seeding and stopping rule.
    """

    name = "distributed"

    def __init__(self, block_rows: int = 1_000_000, options: DistributedOptions | None = None) -> None:
        self.block_rows = block_rows
        self.options = options or DistributedOptions()
        self.last: DistributedFit | None = None

    def fit(self, x: np.ndarray, k: int, seed: int) -> KMeansFit:
        """Cluster ``x`` into ``k`` clusters over ``ceil(n / block_rows)`` blocks.

        Args:
            x: the rows (n, d).
            k: number of clusters.
            seed: seed of the subsample and of k-means++.

        Returns:
            The fit; where the blocks ran is kept in ``self.last``.
        """
        x = check_matrix(x, k)
        ensure_ray()
        refs = [ray.put(x[i:i + self.block_rows]) for i in range(0, len(x), self.block_rows)]
        fit = fit_blocks(refs, k, seed, options=self.options)
        self.last = fit
        assert fit.labels is not None
        return KMeansFit(fit.centroids, fit.labels, fit.inertia, fit.n_iter, fit.seconds, self.name)
