"""k-means: the CPU engine (subsample k-means++ seeding + Lloyd) vs plain scikit-learn KMeans.

Both run on the same embedding-like matrix (a seeded anisotropic Gaussian mixture, float32) in
one process; the engine must reach the plain KMeans inertia (within 1 %) and the JSON ``ratio`` is
plain seconds / engine seconds (> 1 = the engine is faster). cuML is timed too where a GPU is.

Also timed on the same matrix: the torch engine in this process (``torch``: CUDA when available)
and the distributed torch engine (``distributed``: one row per simulated node count; each count
is a fresh ``ray.cluster_utils.Cluster`` with a CPU-less head and that many worker nodes sharing
this machine's CPUs, so the rows show the fan-out's overhead and its inertia parity, not a
multi-machine speed-up). Memory ceiling of the distributed engine: a node holds its blocks,
``block_rows x dims x 4`` bytes each; the driver holds only k x d centroids and sums.

    python benchmarks/bench_kmeans.py --out bench_out/kmeans.json [--quick] [--nodes 1,2]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402
from mixture_ray.cluster.engines import cuml_available, get_kmeans_engine  # noqa: E402
from mixture_ray.cluster.kmeans_torch import TorchKMeans  # noqa: E402


def embedding_like(n: int, d: int, centers: int, seed: int) -> np.ndarray:
    """Rows from a mixture of ``centers`` anisotropic Gaussians with unequal weights."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3.0, (centers, d)).astype(np.float32)
    scales = rng.uniform(0.5, 2.0, (centers, d)).astype(np.float32)
    weights = rng.dirichlet(np.full(centers, 2.0))
    which = rng.choice(centers, size=n, p=weights)
    x = means[which] + rng.standard_normal((n, d), dtype=np.float32) * scales[which]
    return x


def distributed_rows(x: np.ndarray, k: int, baseline_inertia: float, node_counts: list[int],
                     block_rows: int) -> list[dict[str, Any]]:
    """One row per simulated node count: seconds, inertia vs scikit-learn, where the blocks ran."""
    import os

    import ray
    from ray.cluster_utils import Cluster

    from mixture_ray.cluster.distributed import DistributedOptions
    from mixture_ray.cluster.distributed_engine import DistributedKMeans

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cpus = os.cpu_count() or 1
    rows = []
    for nodes in node_counts:
        sim = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(nodes):
            sim.add_node(num_cpus=max(1, cpus // nodes))
        sim.wait_for_nodes()
        ray.init(address=sim.address, logging_level=logging.WARNING)
        try:
            engine = DistributedKMeans(block_rows=block_rows, options=DistributedOptions(num_gpus="auto"))
            fit = engine.fit(x, k, seed=0)
            assert engine.last is not None
            used = engine.last.devices()
            rows.append({
                "rows": len(x), "nodes": nodes, "cpus_per_node": max(1, cpus // nodes),
                "blocks": len(engine.last.runs), "seconds": fit.seconds, "iterations": fit.n_iter,
                "inertia": fit.inertia, "relative_to_sklearn": fit.inertia / baseline_inertia - 1.0,
                "nodes_used": len(used["nodes"]), "devices": used["devices"],
                "block_bytes": block_rows * x.shape[1] * 4,
            })
        finally:
            ray.shutdown()
            sim.shutdown()  # type: ignore[no-untyped-call]  # unannotated in ray
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="200k rows instead of 1M")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--rows", type=int, default=0, help="override the row count (smoke runs)")
    parser.add_argument("--nodes", default="1,2", help="simulated node counts for the distributed rows")
    parser.add_argument("--block-rows", type=int, default=0, help="rows per block (default: rows / 8)")
    args = parser.parse_args()
    n, d = args.rows or (200_000 if args.quick else 1_000_000), 128
    x = embedding_like(n, d, centers=80, seed=0)
    plain = get_kmeans_engine("sklearn-lloyd").fit(x, args.k, seed=0)
    engine = get_kmeans_engine("sklearn").fit(x, args.k, seed=0)
    rel = engine.inertia / plain.inertia - 1.0
    result: dict[str, Any] = {
        "name": "kmeans_cpu_engine_vs_sklearn_kmeans",
        "unit": "seconds to converge (lower is better; ratio = baseline / engine)",
        "value": engine.seconds,
        "baseline_name": "sklearn.cluster.KMeans (k-means++ on all rows, lloyd)",
        "baseline_value": plain.seconds,
        "ratio": plain.seconds / engine.seconds,
        "inertia": {"engine": engine.inertia, "baseline": plain.inertia, "relative_difference": rel},
        "matched_inertia_within_1pct": bool(rel <= 0.01),
        "iterations": {"engine": engine.n_iter, "baseline": plain.n_iter},
        "hardware": hardware_info(),
        "params": {
            "rows": n,
            "dims": d,
            "k": args.k,
            "engine": "k-means++ on a 100k-row subsample + Lloyd on all rows",
        },
    }
    torch_fit = TorchKMeans().fit(x, args.k, seed=0)
    result["torch"] = {
        "engine": torch_fit.engine, "seconds": torch_fit.seconds, "inertia": torch_fit.inertia,
        "relative_to_sklearn": torch_fit.inertia / plain.inertia - 1.0,
        "speedup_vs_baseline": plain.seconds / torch_fit.seconds,
    }
    block_rows = args.block_rows or max(1, -(-n // 8))
    node_counts = [int(v) for v in args.nodes.split(",") if v.strip()]
    result["distributed"] = {
        "rows": distributed_rows(x, args.k, plain.inertia, node_counts, block_rows),
        "memory_ceiling": (
            f"per node: its blocks, block_rows x dims x 4 bytes each ({block_rows} x {d} x 4 = "
            f"{block_rows * d * 4 / 2**20:.1f} MiB per block); driver: k x d centroids and float64 sums "
            f"({args.k} x {d}), never the rows"
        ),
        "note": "simulated nodes share this machine's CPUs: overhead and parity, not a cluster speed-up",
    }
    if cuml_available():
        gpu = get_kmeans_engine("cuml").fit(x, args.k, seed=0)
        result["cuml"] = {
            "seconds": gpu.seconds,
            "inertia": gpu.inertia,
            "speedup_vs_baseline": plain.seconds / gpu.seconds,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
