"""Object-store faults: the extra wall time of every stage when a share of S3 requests fails.

The scale benchmark's cohort (small synthetic slides behind symlinks, ``scale_stages.py``) runs tile
-> embed -> cluster -> classify -> maps -> cases -> review -> export with every store in a bucket of
moto's S3 server on loopback, behind a proxy that fails a seeded share of the requests (``--rate``,
default 5 %: 503 SlowDown, 500 InternalError, or the connection dropped, in the middle of a PUT's
upload too). The baseline is the same run with no fault, measured in the same invocation; clean and
faulty runs alternate, each in a fresh process with its own local Ray, and the medians are compared.
Every faulty run must finish complete (the stages fail otherwise): the extra time is the cost of
the retries (``MIXTURE_RAY_S3_ATTEMPTS`` attempts, by the SDK per request and by mixture_ray per
operation, each with exponential backoff and full jitter: ``mixture_ray/locations.py``).

    python benchmarks/bench_s3_faults.py --out benchmarks/results/s3_faults.json [--slides 100]
        [--rate 0.05] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_scale import BASE_SLIDES, in_child, make_base, symlinked_manifest  # noqa: E402
from benchmarks.hardware import hardware_info  # noqa: E402
from mixture_ray.locations import s3_attempts  # noqa: E402


def _run(manifest: Path, work: Path, n: int, rate: float) -> dict[str, Any]:
    return in_child("--child", "s3", "--manifest", str(manifest), "--work", str(work), "--n", str(n),
                    "--rate", str(rate))


def _median_walls(runs: list[dict[str, Any]]) -> dict[str, float]:
    stages = list(runs[0]["stages"])
    walls = {s: statistics.median(r["stages"][s]["wall_s"] for r in runs) for s in stages}
    walls["total"] = statistics.median(sum(r["stages"][s]["wall_s"] for s in stages) for r in runs)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--slides", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.05, help="share of S3 requests that fail")
    parser.add_argument("--repeats", type=int, default=3, help="clean and faulty runs each (median)")
    args = parser.parse_args()
    clean: list[dict[str, Any]] = []
    faulty: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_s3_faults_") as tmp:
        work = Path(tmp)
        manifest = symlinked_manifest(make_base(work / "base", 512, BASE_SLIDES, seed=0), args.slides, work)
        for i in range(args.repeats):
            for rate, runs in ((0.0, clean), (args.rate, faulty)):
                print(f"[bench_s3_faults] run {i + 1}/{args.repeats}, {rate:.0%} of requests failing ...",
                      flush=True)
                runs.append(_run(manifest, work / f"run_{i}_{rate}", args.slides, rate))
    base, hit = _median_walls(clean), _median_walls(faulty)
    requests = statistics.median(sum(v["requests"] for v in r["stages"].values()) for r in faulty)
    injected = [sum(r["faults_injected"].values()) for r in faulty]
    result = {
        "name": "s3_fault_extra_time",
        "unit": f"wall time with {args.rate:.0%} of S3 requests failing / without (all stages, median)",
        "value": hit["total"], "baseline_name": "the same stages with no fault (same invocation)",
        "baseline_value": base["total"], "ratio": hit["total"] / base["total"],
        "extra_percent": 100 * (hit["total"] / base["total"] - 1),
        "per_stage_wall_s": {s: {"clean": base[s], "faulty": hit[s]} for s in base},
        "faults_injected_per_run": injected,
        "fault_kinds": [r["faults_injected"] for r in faulty],
        "requests_per_faulty_run": requests,
        "retry_settings": {
            "MIXTURE_RAY_S3_ATTEMPTS": s3_attempts(),
            "sdk": "AWS SDK standard retries: exponential backoff, full jitter, at most 20 s a wait",
            "operation": "each read, write, listing, delete retried whole: 0.05 s x 2^attempt, full jitter, "
                         "at most 5 s a wait"},
        "runs": {"clean": clean, "faulty": faulty},
        "hardware": hardware_info(),
        "params": {"slides": args.slides, "rate": args.rate, "repeats": args.repeats,
                   "note": "clean and faulty runs alternate, each in a fresh process and local Ray"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("value", "baseline_value", "extra_percent",
                                             "faults_injected_per_run", "retry_settings")}, indent=2))


if __name__ == "__main__":
    main()
