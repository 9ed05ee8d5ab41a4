"""k-means: the CPU engine (subsample k-means++ seeding + Lloyd) vs plain scikit-learn KMeans.

Quality, judged fairly: every engine (plain scikit-learn KMeans, the CPU engine, the torch engine in
this process, the distributed torch engine on a local Ray session, cuML where a GPU is) clusters the
same embedding-like matrix (a seeded anisotropic Gaussian mixture, float32) with ``--seeds`` seeds
at each of ``--sizes`` rows; the JSON reports each engine's median inertia and seconds and their
ratio to scikit-learn's. The headline ``ratio`` is plain seconds / engine seconds (medians, at the
largest size; > 1 = the engine is faster) and the engine must reach the plain inertia within 1 %.

Fan-out: the distributed engine once more on the largest matrix with one row per simulated node
count (a fresh ``ray.cluster_utils.Cluster`` with a CPU-less head and that many worker nodes sharing
this machine's CPUs: the fan-out's overhead and its inertia parity, not a multi-machine speed-up).

Scale (``--scale-rows``, in a fresh process so that its peak RSS is the driver's alone): blocks of
an embedding-like ``rows x 128`` matrix are generated inside Ray tasks on ``--scale-nodes``
simulated nodes and never reach the driver; the row reports the driver's peak RSS, the seconds
per Lloyd iteration (one step over every block, timed alone, median of 3) and a subsample check:
on ``--scale-check-rows`` rows drawn from every block, the inertia of the distributed centroids vs
that of the torch engine fitted in one process on those rows (same k, seed and ``--scale-max-iter``).

    python benchmarks/bench_kmeans.py --out bench_out/kmeans.json [--quick] [--sizes 200000,1000000]
        [--seeds 5] [--nodes 1,2] [--scale-rows 10000000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402
from mixture_ray.cluster.engines import KMeansEngine, cuml_available, get_kmeans_engine  # noqa: E402
from mixture_ray.cluster.kmeans_torch import TorchKMeans  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator

DIMS = 128
BASELINE = "sklearn-lloyd"


def embedding_like(n: int, d: int, centers: int, seed: int, part: int | None = None) -> np.ndarray:
    """Rows from a mixture of ``centers`` anisotropic Gaussians with unequal weights.

    ``part`` draws another block of rows from the same mixture (the scale row's blocks).
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3.0, (centers, d)).astype(np.float32)
    scales = rng.uniform(0.5, 2.0, (centers, d)).astype(np.float32)
    weights = rng.dirichlet(np.full(centers, 2.0))
    if part is not None:
        rng = np.random.default_rng([seed, part])
    which = rng.choice(centers, size=n, p=weights)
    x = means[which] + rng.standard_normal((n, d), dtype=np.float32) * scales[which]
    return x


@contextmanager
def simulated_cluster(nodes: int, cpus_per_node: int,
                      object_store_bytes: int | None = None) -> Iterator[None]:
    """A fresh local Ray cluster: a CPU-less head and ``nodes`` worker nodes; the driver joins it."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sim = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        more: dict[str, Any] = {"object_store_memory": object_store_bytes} if object_store_bytes else {}
        sim.add_node(num_cpus=cpus_per_node, **more)
    sim.wait_for_nodes()
    ray.init(address=sim.address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()
        sim.shutdown()  # type: ignore[no-untyped-call]  # unannotated in ray


def make_engine(name: str, rows: int) -> KMeansEngine:
    """An engine by name; ``distributed`` cuts the matrix into 8 blocks on the running Ray session."""
    if name == "distributed":
        from mixture_ray.cluster.distributed_engine import DistributedKMeans

        return DistributedKMeans(block_rows=max(1, -(-rows // 8)))
    return get_kmeans_engine(name)  # type: ignore[arg-type]  # a checked engine name


def quality_rows(sizes: list[int], seeds: int, k: int, engines: list[str]) -> list[dict[str, Any]]:
    """Per size and engine: inertia and seconds of each seed, their medians and the ratio to sklearn's."""
    rows = []
    for n in sizes:
        x = embedding_like(n, DIMS, centers=80, seed=0)
        found: dict[str, dict[str, Any]] = {}
        for name in engines:
            engine = make_engine(name, n)
            fits = [engine.fit(x, k, seed=s) for s in range(seeds)]
            found[name] = {"engine": fits[0].engine, "inertia": [f.inertia for f in fits],
                           "seconds": [f.seconds for f in fits], "iterations": [f.n_iter for f in fits],
                           "median_inertia": statistics.median(f.inertia for f in fits),
                           "median_seconds": statistics.median(f.seconds for f in fits)}
        base = found.get(BASELINE)
        for entry in found.values():
            if base is not None:
                entry["median_inertia_vs_sklearn"] = entry["median_inertia"] / base["median_inertia"] - 1.0
                entry["median_speedup_vs_sklearn"] = base["median_seconds"] / entry["median_seconds"]
        rows.append({"rows": n, "dims": DIMS, "k": k, "seeds": list(range(seeds)), "engines": found})
    return rows


def distributed_rows(x: np.ndarray, k: int, baseline_inertia: float, node_counts: list[int],
                     block_rows: int) -> list[dict[str, Any]]:
    """One row per simulated node count: seconds, inertia vs scikit-learn, where the blocks ran."""
    from mixture_ray.cluster.distributed import DistributedOptions
    from mixture_ray.cluster.distributed_engine import DistributedKMeans

    cpus = os.cpu_count() or 1
    rows = []
    for nodes in node_counts:
        with simulated_cluster(nodes, max(1, cpus // nodes)):
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
    return rows


def _make_block(n: int, part: int) -> np.ndarray:
    return embedding_like(n, DIMS, centers=80, seed=0, part=part)


def _subsample_check(centroids: np.ndarray, k: int, seed: int, max_iter: int, per_block: int,
                     *blocks: np.ndarray) -> dict[str, float]:
    """In a task: the torch engine fitted in one process on rows of every block vs the given centroids."""
    from mixture_ray.cluster.kmeans_torch import assign, resolve_device

    rows = np.concatenate([b[:per_block] for b in blocks])
    one = TorchKMeans(device="cpu", max_iter=max_iter).fit(rows, k, seed)
    _, theirs = assign(rows, centroids, device=resolve_device("cpu"))
    return {"rows": float(len(rows)), "in_process_inertia": one.inertia, "distributed_inertia": theirs,
            "relative_difference": theirs / one.inertia - 1.0, "in_process_iterations": float(one.n_iter)}


def scale_child(rows: int, k: int, nodes: int, block_rows: int, max_iter: int,
                check_rows: int) -> dict[str, Any]:
    """The scale row, run in its own process: blocks generated in tasks; the driver's peak RSS."""
    import ray

    from mixture_ray.cluster import block_tasks
    from mixture_ray.cluster.distributed import DistributedOptions, fit_blocks, load_blocks

    imports_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch, Ray, pyarrow
    cpus = os.cpu_count() or 1
    sizes = [min(block_rows, rows - i) for i in range(0, rows, block_rows)]
    store = int(rows * DIMS * 4 / nodes * 1.3) + 2**30
    with simulated_cluster(nodes, max(1, cpus // nodes), store):
        start = time.perf_counter()
        make = ray.remote(_make_block).options(num_cpus=1, scheduling_strategy="SPREAD")
        refs = [make.remote(n, i) for i, n in enumerate(sizes)]
        options = DistributedOptions(num_gpus=0, max_iter=max_iter)
        loaded = load_blocks(refs, options=options)
        generated = time.perf_counter() - start
        fit = fit_blocks(loaded, k, 0, options=options)
        partial = ray.remote(block_tasks.partial).options(num_cpus=1)
        c_ref = ray.put(fit.centroids)
        steps = []
        for _ in range(3):
            begin = time.perf_counter()
            block_tasks.reduce_tree([partial.remote(m, c_ref, None, 0.0, None) for m in loaded.matrices])
            steps.append(time.perf_counter() - begin)
        per_block = max(1, check_rows // len(sizes))
        check = ray.get(ray.remote(_subsample_check).options(num_cpus=1).remote(
            fit.centroids, k, 0, max_iter, per_block, *loaded.matrices))
        used = fit.devices()
        del loaded, refs
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": rows, "dims": DIMS, "k": k, "nodes": nodes, "cpus_per_node": max(1, cpus // nodes),
        "blocks": len(sizes), "block_rows": block_rows, "generate_and_load_seconds": generated,
        "fit_seconds": fit.seconds, "iterations": fit.n_iter, "max_iter": max_iter,
        "seconds_per_iteration": statistics.median(steps), "step_seconds": steps,
        "fit_seconds_per_iteration": fit.seconds / max(1, fit.n_iter),
        "driver_peak_rss_mib": peak_mib, "driver_peak_rss_under_1gib": peak_mib < 1024,
        "driver_rss_after_imports_mib": imports_mib,
        "inertia": fit.inertia, "subsample_check": check,
        "inertia_within_1pct_of_in_process": bool(check["relative_difference"] <= 0.01),
        "nodes_used": len(used["nodes"]), "devices": used["devices"],
        "note": "blocks generated in tasks on the simulated nodes (which share this machine's CPUs and "
                "memory); the driver held only centroids, sums and the labels of in-memory blocks",
    }


def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    """The scale row in a fresh interpreter (so ``ru_maxrss`` is the driver's own peak)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scale.json"
        command = [sys.executable, __file__, "--out", str(out), "--scale-child",
                   "--scale-rows", str(args.scale_rows), "--scale-k", str(args.scale_k),
                   "--scale-nodes", str(args.scale_nodes), "--scale-block-rows",
                   str(args.scale_block_rows), "--scale-max-iter", str(args.scale_max_iter),
                   "--scale-check-rows", str(args.scale_check_rows)]
        subprocess.run(command, check=True)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def parse_args() -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="200k rows, 2 seeds, no scale row")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--sizes", default="", help="row counts of the quality rows (default 200000,1000000)")
    parser.add_argument("--rows", type=int, default=0, help="one size only (smoke runs)")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per engine and size (default 5)")
    parser.add_argument("--engines", default="sklearn-lloyd,sklearn,torch,distributed",
                        help="engines of the quality rows (cuml is added where a GPU is)")
    parser.add_argument("--nodes", default="1,2", help="simulated node counts for the fan-out rows")
    parser.add_argument("--block-rows", type=int, default=0,
                        help="fan-out rows per block (default: rows / 8)")
    parser.add_argument("--scale-rows", type=int, default=-1, help="rows of the scale row (0 skips it; "
                        "default 10,000,000, 0 with --quick)")
    parser.add_argument("--scale-k", type=int, default=80)
    parser.add_argument("--scale-nodes", type=int, default=2)
    parser.add_argument("--scale-block-rows", type=int, default=250_000)
    parser.add_argument("--scale-max-iter", type=int, default=30)
    parser.add_argument("--scale-check-rows", type=int, default=500_000)
    parser.add_argument("--scale-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.scale_child:
        args.out.write_text(json.dumps(scale_child(args.scale_rows, args.scale_k, args.scale_nodes,
                                                   args.scale_block_rows, args.scale_max_iter,
                                                   args.scale_check_rows)))
        return
    sizes = ([args.rows] if args.rows else [int(v) for v in args.sizes.split(",") if v.strip()]
             or ([200_000] if args.quick else [200_000, 1_000_000]))
    seeds = args.seeds or (2 if args.quick else 5)
    engines = [e for e in args.engines.split(",") if e.strip()] + (["cuml"] if cuml_available() else [])
    if BASELINE not in engines:
        engines.insert(0, BASELINE)
    if "distributed" in engines:
        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.WARNING)
    try:
        quality = quality_rows(sizes, seeds, args.k, engines)
    finally:
        if "distributed" in engines:
            ray.shutdown()
    largest = quality[-1]["engines"]
    plain, engine = largest[BASELINE], largest.get("sklearn", largest[BASELINE])
    rel = engine["median_inertia"] / plain["median_inertia"] - 1.0
    n = sizes[-1]
    result: dict[str, Any] = {
        "name": "kmeans_cpu_engine_vs_sklearn_kmeans",
        "unit": f"seconds to converge, median of {seeds} seeds (lower is better; ratio = baseline / engine)",
        "value": engine["median_seconds"],
        "baseline_name": "sklearn.cluster.KMeans (k-means++ on all rows, lloyd)",
        "baseline_value": plain["median_seconds"],
        "ratio": plain["median_seconds"] / engine["median_seconds"],
        "inertia": {"engine": engine["median_inertia"], "baseline": plain["median_inertia"],
                    "relative_difference": rel, "statistic": f"median of {seeds} seeds"},
        "matched_inertia_within_1pct": bool(rel <= 0.01),
        "quality": quality,
        "hardware": hardware_info(),
        "params": {"sizes": sizes, "dims": DIMS, "k": args.k, "seeds": seeds, "engines": engines,
                   "engine": "k-means++ on a 100k-row subsample + Lloyd on all rows"},
    }
    node_counts = [int(v) for v in args.nodes.split(",") if v.strip()]
    if node_counts:
        x = embedding_like(n, DIMS, centers=80, seed=0)
        block_rows = args.block_rows or max(1, -(-n // 8))
        result["distributed"] = {
            "rows": distributed_rows(x, args.k, plain["inertia"][0], node_counts, block_rows),
            "memory_ceiling": (
                f"per node: its blocks, block_rows x dims x 4 bytes each ({block_rows} x {DIMS} x 4 = "
                f"{block_rows * DIMS * 4 / 2**20:.1f} MiB per block); driver: k x d centroids and float64 "
                f"sums ({args.k} x {DIMS}), never the rows"
            ),
            "note": "simulated nodes share this machine's CPUs: overhead and parity, not a cluster speed-up; "
                    "relative_to_sklearn is against scikit-learn's seed-0 inertia",
        }
        del x
    scale_rows = args.scale_rows if args.scale_rows >= 0 else (0 if args.quick else 10_000_000)
    if scale_rows:
        args.scale_rows = scale_rows
        result["scale"] = run_scale(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
