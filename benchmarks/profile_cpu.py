"""Where the CPU time of one pipeline run goes: CPU seconds per process kind (driver, Ray, actors).

Runs ``tile`` once on a synthetic cohort in an embedded Ray session and samples
every process of the machine (psutil, every 0.1 s), keeping each process's last CPU time seen;
the CPU seconds spent during the run are grouped by kind: the driver, Ray's own daemons (raylet,
GCS, dashboard agents), the stage's actors and tasks (by their ``ray::`` process title), and idle
Ray workers. This is the profile behind the tiling and embedding benchmarks' ratios: on 2 cores,
every second the driver and Ray spend is a second the pixel or model actors do not get.

    python benchmarks/profile_cpu.py --out bench_out/profile_tile.json [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402


def kind(proc: psutil.Process, me: int) -> str:
    """A short name for what a process is."""
    if proc.pid == me:
        return "driver (stage loop, Ray Data executor, commits)"
    argv = proc.cmdline()
    title = " ".join(argv)
    if title.startswith("ray::"):  # a Ray worker names itself after its task or actor
        return title.split(" ")[0] if "(" not in title else title[: title.index(")") + 1] + ")"
    program = Path(argv[0]).name if argv else ""
    script = Path(argv[1]).name if len(argv) > 1 else ""
    for name in ("raylet", "gcs_server"):
        if program == name:
            return name
    if script == "default_worker.py":
        return "ray worker (starting or idle)"
    if "dashboard" in title or script in ("log_monitor.py", "monitor.py"):
        return "ray monitors and agents"
    return "other"


def sample(stop: threading.Event, last: dict[int, tuple[str, float]], me: int) -> None:
    """Record each process's kind and CPU seconds until ``stop``."""
    while not stop.is_set():
        for proc in psutil.process_iter():
            try:
                times = proc.cpu_times()
                last[proc.pid] = (kind(proc, me), times.user + times.system)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--side", type=int, default=16384)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from benchmarks.bench_tiling import copies_manifest, make_slide, tile_config
    from mixture_ray.tile.stage import run as run_tiling

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="profile_cpu_") as tmp:
        work = Path(tmp)
        manifest = copies_manifest(make_slide(work / "big", args.side), 4, work)
        run_tiling(tile_config(manifest, work / "warm", args.workers))  # workers started, caches warm
        before: dict[int, tuple[str, float]] = {}
        stop = threading.Event()
        for proc in psutil.process_iter():
            try:
                times = proc.cpu_times()
                before[proc.pid] = (kind(proc, os.getpid()), times.user + times.system)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        last = dict(before)
        thread = threading.Thread(target=sample, args=(stop, last, os.getpid()), daemon=True)
        start = time.perf_counter()
        thread.start()
        rows = run_tiling(tile_config(manifest, work / "tiles", args.workers)).tiles_written
        wall = time.perf_counter() - start
        stop.set()
        thread.join()
    ray.shutdown()
    spent: dict[str, float] = defaultdict(float)
    for pid, (name, cpu) in last.items():
        spent[name] += cpu - (before[pid][1] if pid in before else 0.0)
    total = sum(spent.values())
    result: dict[str, Any] = {
        "name": "cpu_profile_tile", "wall_seconds": wall, "rows": rows, "cores": 2,
        "cpu_seconds_available": 2 * wall, "cpu_seconds_used": total,
        "cpu_seconds_by_kind": dict(sorted(spent.items(), key=lambda kv: -kv[1])),
        "hardware": hardware_info(), "params": {"side": args.side, "workers": args.workers, "slides": 4},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    shown = ("wall_seconds", "rows", "cpu_seconds_used", "cpu_seconds_by_kind")
    print(json.dumps({k: result[k] for k in shown}, indent=2))


if __name__ == "__main__":
    main()
