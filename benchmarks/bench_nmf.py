"""Torch NMF vs scikit-learn NMF: time to reach scikit-learn's reconstruction error, one run.

`python benchmarks/bench_nmf.py --out nmf.json [--quick]`. ratio = sklearn seconds / torch
seconds (> 1 means the torch solver is faster). Full: 100k x 512, K = 6; quick: 20k x 256.
A GPU figure is added when CUDA is available.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402


def make_matrix(n: int, c: int, seed: int = 0) -> np.ndarray:
    """Non-negative, post-ReLU-like data: rank-12 sparse structure plus noise."""
    rng = np.random.default_rng(seed)
    w = rng.gamma(1.0, 1.0, (n, 12)).astype(np.float32)
    h = (rng.gamma(0.5, 1.0, (12, c)) * (rng.random((12, c)) < 0.3)).astype(np.float32)
    return w @ h + rng.gamma(1.0, 0.3, (n, c)).astype(np.float32)


def _torch_time(v: np.ndarray, k: int, target: float, device: str) -> tuple[float, float, int]:
    import torch

    from mixture_ray.explain.nmf import TorchNMF

    if device == "cuda":
        x = torch.as_tensor(v, device="cuda")
        TorchNMF(k, device=device, max_iter=5).fit(x)  # warm-up (kernels, context)
        torch.cuda.synchronize()
    start = time.perf_counter()
    model = TorchNMF(k, device=device, max_iter=5000).fit(v, target_err=target)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, model.errors_[-1], model.n_iter_


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from sklearn.decomposition import NMF

    n, c, k = (20_000, 256, 6) if args.quick else (100_000, 512, 6)
    v = make_matrix(n, c)
    start = time.perf_counter()
    ref = NMF(k, init="nndsvda", solver="cd", max_iter=400, tol=1e-4, random_state=0).fit(v)
    sk_seconds = time.perf_counter() - start
    target = float(ref.reconstruction_err_)
    seconds, err, iters = _torch_time(v, k, target, "cpu")
    record: dict[str, Any] = {
        "name": "nmf_torch_cpu_time_to_sklearn_error", "unit": "s", "value": seconds,
        "baseline_name": "sklearn NMF(cd, nndsvda, tol=1e-4) fit", "baseline_value": sk_seconds,
        "ratio": sk_seconds / seconds, "hardware": hardware_info(),
        "params": {"n": n, "channels": c, "k": k, "quick": args.quick, "sklearn_err": target,
                   "sklearn_iter": int(ref.n_iter_), "torch_err": err, "torch_iter": iters},
    }
    import torch

    if torch.cuda.is_available():
        gpu_seconds, gpu_err, gpu_iters = _torch_time(v, k, target, "cuda")
        record["gpu"] = {"value": gpu_seconds, "ratio": sk_seconds / gpu_seconds,
                         "err": gpu_err, "iter": gpu_iters}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({key: record[key] for key in ("name", "value", "baseline_value", "ratio")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
