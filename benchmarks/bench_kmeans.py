"""k-means: the CPU engine (subsample k-means++ seeding + Lloyd) vs plain scikit-learn KMeans.

Both run on the same embedding-like matrix (a seeded anisotropic Gaussian mixture, float32) in
one process; the engine must reach the plain KMeans inertia (within 1 %) and the JSON ``ratio`` is
plain seconds / engine seconds (> 1 = the engine is faster). cuML is timed too where a GPU is.

    python benchmarks/bench_kmeans.py --out bench_out/kmeans.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402
from mixture_ray.cluster.engines import cuml_available, get_kmeans_engine  # noqa: E402


def embedding_like(n: int, d: int, centers: int, seed: int) -> np.ndarray:
    """Rows from a mixture of ``centers`` anisotropic Gaussians with unequal weights."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3.0, (centers, d)).astype(np.float32)
    scales = rng.uniform(0.5, 2.0, (centers, d)).astype(np.float32)
    weights = rng.dirichlet(np.full(centers, 2.0))
    which = rng.choice(centers, size=n, p=weights)
    x = means[which] + rng.standard_normal((n, d), dtype=np.float32) * scales[which]
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="200k rows instead of 1M")
    parser.add_argument("--k", type=int, default=50)
    args = parser.parse_args()
    n, d = (200_000 if args.quick else 1_000_000), 128
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
