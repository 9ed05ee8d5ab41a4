"""GPU checks for a bare CUDA machine (torch, torchvision, scikit-learn, numpy; no Ray, no internet).

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu_check.json
    PYTHONPATH=. python benchmarks/gpu_check.py --out cpu.json --cpu --quick --require-no-ray

Imports only Ray-free modules of the package (``mixture_ray.explain.nmf``,
``mixture_ray.cluster.kmeans_torch``, ``mixture_ray.models``, ``mixture_ray.pretrain.moco``) and
writes one JSON file with a section per check; a section that fails records its error and the
others still run. Each section is measured in this one run against its baseline:

* ``nmf``: torch NMF on the GPU and on the CPU vs scikit-learn ``NMF`` (cd solver, NNDSVDa), all
  run until scikit-learn's reconstruction error (recomputed in float64) is reached: seconds of
  each and the error each reached (parity = torch error / scikit-learn error).
* ``kmeans``: the torch k-means engine on the GPU over 5M x 128 rows (k = 50) to convergence;
  scikit-learn ``KMeans`` from the same k-means++ seeds on all rows with its iterations capped
  (time-limited), and torch with the same cap: equal inertia at equal iterations, seconds per
  iteration of each, and scikit-learn's projected time to torch's convergence.
* ``embedding``: ResNet18 features in bf16 (autocast, channels-last; float32 in CPU mode), images/s
  for the model alone (uint8 tiles already on the device), with JPEG decoding on the CPU
  (torchvision, a thread pool) and with JPEG decoding on the GPU
  (``torchvision.io.decode_jpeg(device='cuda')``).
* ``moco``: MoCo v2 training steps/s (ResNet18, 128-d MLP head, queue 4096, split BN 8, Adam,
  bf16 autocast, two augmented 224 views of 280-px tiles per step).

The headline (``value``/``baseline_value``/``ratio``) is the k-means seconds per Lloyd iteration:
scikit-learn on the CPU / torch on the GPU (> 1: the GPU is faster). ``--cpu --quick`` runs every
section on tiny inputs on the CPU (the test suite's smoke check); ``--require-no-ray`` fails when
anything imported Ray. The full run is sized to finish in about 5 minutes on one H200 (``--budget-s``
stops starting new sections after that many seconds).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402

Section = Callable[[argparse.Namespace], dict[str, Any]]
#: Precision of the model checks: bf16 autocast on the GPU; float32 in CPU mode (a smoke check,
#: where CPUs without bf16 units would emulate it slowly).
DTYPE = {"cuda": "bfloat16 autocast", "cpu": "float32 (CPU mode)"}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


# ---------------------------------------------------------------- NMF


def check_nmf(args: argparse.Namespace) -> dict[str, Any]:
    """Torch NMF (GPU and CPU) vs scikit-learn NMF at scikit-learn's error."""
    import torch
    from sklearn.decomposition import NMF

    from benchmarks.bench_nmf import exact_error, make_matrix
    from mixture_ray.explain.nmf import TorchNMF

    n, c, k = (2_000, 64, 4) if args.quick else (100_000, 512, 6)
    v = make_matrix(n, c, seed=0)
    start = time.perf_counter()
    ref = NMF(k, init="nndsvda", max_iter=1000, random_state=0)
    w = ref.fit_transform(v)
    sk_seconds = time.perf_counter() - start
    target = exact_error(v, w, ref.components_)
    out: dict[str, Any] = {
        "params": {"rows": n, "cols": c, "k": k, "target": "scikit-learn's error recomputed in float64"},
        "sklearn": {"seconds": sk_seconds, "error": target, "iterations": int(ref.n_iter_)},
    }
    for device in ["cpu"] if args.cpu else ["cuda", "cpu"]:
        data: Any = v if device == "cpu" else torch.as_tensor(v, device=device)
        if device == "cuda":
            TorchNMF(k, device=device, max_iter=5).fit(data)  # warm-up: CUDA context, kernels
        solver = TorchNMF(k, device=device, max_iter=5000)
        model, seconds = _timed(functools.partial(solver.fit, data, target_err=target), device)
        assert model.components_ is not None
        err = exact_error(v, model.w_.cpu().numpy(), model.components_.cpu().numpy())
        out[f"torch_{device}"] = {
            "seconds": seconds, "error": err, "iterations": model.n_iter_,
            "error_parity": err / target, "reached": bool(err <= target * (1 + 1e-6)),
            "speedup_vs_sklearn": sk_seconds / seconds,
        }
    return out


# ---------------------------------------------------------------- k-means


def check_kmeans(args: argparse.Namespace) -> dict[str, Any]:
    """Torch k-means on the device vs scikit-learn KMeans from the same seeds, equal iterations."""
    from sklearn.cluster import KMeans

    from benchmarks.bench_kmeans import embedding_like
    from mixture_ray.cluster.kmeans_torch import TorchKMeans, kmeans_plusplus, seed_indices

    n, d, k, cap = (4_000, 8, 4, 5) if args.quick else (5_000_000, 128, 50, 10)
    device = "cpu" if args.cpu else "cuda"
    x = embedding_like(n, d, centers=80, seed=0)
    TorchKMeans(device=device).fit(x[:50_000], k, seed=1)  # warm-up
    full, full_s = _timed(lambda: TorchKMeans(device=device).fit(x, k, seed=0), device)
    index = seed_indices(n, 100_000, 0)
    init = kmeans_plusplus(x if index is None else x[index], k, 0)
    capped_iter = min(cap, full.n_iter)
    start = time.perf_counter()
    sk = KMeans(k, init=init, n_init=1, max_iter=capped_iter, random_state=0).fit(x)
    sk_s = time.perf_counter() - start
    same, same_s = _timed(lambda: TorchKMeans(device=device, max_iter=capped_iter).fit(x, k, seed=0), device)
    sk_per_iter = sk_s / max(int(sk.n_iter_), 1)
    torch_per_iter = same_s / max(same.n_iter, 1)
    return {
        "params": {"rows": n, "dims": d, "k": k, "device": device,
                   "seeding": "k-means++ on a 100k-row subsample"},
        "torch_converged": {"seconds": full_s, "iterations": full.n_iter, "inertia": full.inertia},
        "sklearn_capped": {
            "seconds": sk_s, "iterations": int(sk.n_iter_), "inertia": float(sk.inertia_), "rows": n,
            "note": f"time-limited: iterations capped at {capped_iter} (all rows, the same seeds as torch); "
                    "projected_seconds_to_torch_convergence = seconds per iteration x torch's iterations",
            "projected_seconds_to_torch_convergence": sk_per_iter * full.n_iter,
        },
        "torch_capped": {"seconds": same_s, "iterations": same.n_iter, "inertia": same.inertia,
                         "note": "includes k-means++ seeding on the CPU"},
        "inertia_parity_at_equal_iterations": same.inertia / float(sk.inertia_),
        "seconds_per_iteration": {"sklearn": sk_per_iter, "torch": torch_per_iter},
        "speedup_per_iteration": sk_per_iter / torch_per_iter,
    }


# ---------------------------------------------------------------- ResNet18 embedding


def _tissue_like(count: int, size: int, seed: int) -> Any:
    """uint8 (count, 3, size, size) smooth pink-purple textures (JPEG-compressible like H&E tiles)."""
    import torch
    from torch.nn import functional as F  # noqa: N812

    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, max(2, size // 16), max(2, size // 16), generator=gen)
    up = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    base = torch.tensor([0.85, 0.55, 0.75]).view(1, 3, 1, 1)
    noise = 0.05 * torch.rand(count, 3, size, size, generator=gen)
    return ((base * (0.6 + 0.4 * up) + noise).clamp(0, 1) * 255).to(torch.uint8)


def check_embedding(args: argparse.Namespace) -> dict[str, Any]:
    """ResNet18 features in bf16: model only, with CPU JPEG decoding, with GPU JPEG decoding."""
    import torch
    from torchvision.io import decode_jpeg, encode_jpeg

    from mixture_ray.models.augment import normalise
    from mixture_ray.models.backbone import Backbone

    device = "cpu" if args.cpu else "cuda"
    size, batch, batches = (48, 4, 1) if args.quick else (224, 256, 20)
    net = Backbone("resnet18").eval().to(device).to(memory_format=torch.channels_last)
    tiles = _tissue_like(batch, size, seed=0)
    jpegs = [encode_jpeg(t, quality=90) for t in tiles]
    threads = min(16, os.cpu_count() or 1)
    pool = concurrent.futures.ThreadPoolExecutor(threads)

    def embed(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            x = normalise(images.float().div_(255.0)).contiguous(memory_format=torch.channels_last)
            features: torch.Tensor = net(x)
        return features

    def model_only() -> None:
        on_device = tiles.to(device)
        for _ in range(batches):
            embed(on_device)

    def cpu_decode() -> None:
        for _ in range(batches):
            decoded = torch.stack(list(pool.map(decode_jpeg, jpegs)))
            embed(decoded.pin_memory().to(device, non_blocking=True) if device == "cuda" else decoded)

    def gpu_decode() -> None:
        for _ in range(batches):
            embed(torch.stack(decode_jpeg(jpegs, device="cuda")))

    def decode_only() -> None:
        for _ in range(batches):
            list(pool.map(decode_jpeg, jpegs))

    out: dict[str, Any] = {
        "params": {"arch": "resnet18", "dtype": DTYPE[device], "tile": size, "batch": batch,
                   "batches": batches, "decode_threads": threads, "device": device,
                   "jpeg_kib_mean": float(np.mean([j.numel() for j in jpegs]) / 1024)},
    }
    runs: dict[str, Callable[[], None]] = {"model_only": model_only, "cpu_jpeg_decode": cpu_decode,
                                           "cpu_decode_alone": decode_only}
    if device == "cuda":
        runs["gpu_jpeg_decode"] = gpu_decode
    else:
        out["gpu_jpeg_decode"] = {"skipped": "CPU mode: no CUDA device"}
    for name, fn in runs.items():
        fn()  # warm-up (cuDNN autotune, nvjpeg handles)
        _, seconds = _timed(fn, device)
        out[name] = {"images_per_s": batch * batches / seconds, "seconds": seconds}
    pool.shutdown()
    return out


# ---------------------------------------------------------------- MoCo


def check_moco(args: argparse.Namespace) -> dict[str, Any]:
    """MoCo v2 training steps per second (augmentation on the device, bf16 autocast, Adam)."""
    import torch

    from mixture_ray.models.augment import AugmentSpec, random_view, to_float
    from mixture_ray.pretrain.moco import MoCo

    device = "cpu" if args.cpu else "cuda"
    tile, batch, steps, queue, split = (40, 4, 1, 64, 2) if args.quick else (280, 256, 20, 4096, 8)
    model = MoCo(arch="resnet18", dim=128, mlp=True, queue_size=queue, momentum=0.99, temperature=0.1,
                 split_bn=split, seed=0).to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.encoder().parameters(), lr=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)
    spec = AugmentSpec(crop_fraction=0.8, rotation=20.0)
    tiles = _tissue_like(batch, tile, seed=1).permute(0, 2, 3, 1).contiguous().to(device)  # B, H, W, 3
    losses: list[float] = []

    def step() -> None:
        images = to_float(tiles)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(random_view(images, spec, gen), random_view(images, spec, gen), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))

    for _ in range(1 if args.quick else 3):
        step()  # warm-up
    def run() -> None:
        for _ in range(steps):
            step()

    _, seconds = _timed(run, device)
    return {
        "params": {"arch": "resnet18", "dim": 128, "queue": queue, "split_bn": split, "tile": tile,
                   "crop": round(tile * 0.8), "batch": batch, "steps": steps, "device": device,
                   "dtype": DTYPE[device], "optimizer": "Adam 1e-4"},
        "steps_per_s": steps / seconds,
        "samples_per_s": steps * batch / seconds,
        "loss_first_last": [losses[0], losses[-1]],
        "finite": bool(all(math.isfinite(v) for v in losses)),
    }


# ---------------------------------------------------------------- driver


SECTIONS: dict[str, Section] = {
    "kmeans": check_kmeans,
    "nmf": check_nmf,
    "embedding": check_embedding,
    "moco": check_moco,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (no CUDA needed)")
    parser.add_argument("--quick", action="store_true", help="tiny inputs (seconds on 2 cores)")
    parser.add_argument("--only", default="", help="comma-separated sections (default: all)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no section after this")
    parser.add_argument("--require-no-ray", action="store_true", help="exit 3 if anything imported Ray")
    args = parser.parse_args()

    import torch

    if not args.cpu and not torch.cuda.is_available():
        parser.error("torch sees no CUDA device; use --cpu for the CPU mode")
    torch.manual_seed(0)
    start = time.perf_counter()
    chosen = [s for s in args.only.split(",") if s] or list(SECTIONS)
    result: dict[str, Any] = {
        "name": "gpu_check",
        "unit": "k-means seconds per Lloyd iteration (ratio = scikit-learn CPU / torch on the device)",
        "value": None, "baseline_name": "sklearn.cluster.KMeans (same seeds, same rows)",
        "baseline_value": None, "ratio": None,
        "hardware": hardware_info(),
        "params": {"cpu_mode": args.cpu, "quick": args.quick, "sections": chosen,
                   "torch": torch.__version__, "python": sys.version.split()[0]},
        "sections": {},
    }
    for name in chosen:
        if time.perf_counter() - start > args.budget_s:
            result["sections"][name] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
            continue
        began = time.perf_counter()
        try:
            section = SECTIONS[name](args)
        except Exception as exc:  # one failing check must not lose the others' figures
            section = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        section["section_seconds"] = time.perf_counter() - began
        result["sections"][name] = section
        print(f"[gpu_check] {name}: {section['section_seconds']:.1f} s", flush=True)
        if args.cpu is False:
            torch.cuda.empty_cache()
    km = result["sections"].get("kmeans", {})
    if "seconds_per_iteration" in km:
        per = km["seconds_per_iteration"]
        result.update(value=per["torch"], baseline_value=per["sklearn"], ratio=per["sklearn"] / per["torch"])
    result["total_seconds"] = time.perf_counter() - start
    result["ray_imported"] = "ray" in sys.modules
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "sections"}, indent=2, default=str))
    if args.require_no_ray and result["ray_imported"]:
        print("[gpu_check] Ray was imported: the checks must run without it", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
