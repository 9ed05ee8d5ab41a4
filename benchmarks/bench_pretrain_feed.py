"""Pretraining on a store of N small tiles: seconds to the first step and the object store's peak, vs N / 10.

Issue 24: "a pretrain run over 500,000 tiles (a synthetic store of small tiles) starts its first step
in under 60 s, and its object-store peak stays under 2 GB". Pretraining used to decode and keep every
tile in Ray's object store before step 1, so both grew with the store; the baseline is the same run
on a tenth of the tiles, in the same run.

The store (``synthetic_tile_store.py``): N JPEG tiles of 32 px at 20x, about 4,500 per slide, written
as the tile stage writes them, through ``StageFolder``, the ``PartLedger`` and ``finish`` (markers,
``_index.json``, ``_SUCCESS``), with no slide and no Ray: cheap, and timed apart. A store under
``--work`` with the same settings is reused.

Each size runs in a fresh process with its own local Ray of ``--cpus`` CPUs (so the driver's peak RSS
is that size's alone): ``pretrain.stage.run`` with the feed's defaults (``cache_tiles`` false, shuffle
buffer 2,048, ``feed_memory_mb`` 1,024), 5 steps of 32 tiles, ResNet18, one worker.

- first step: the stage's ``TrainingProgress`` is swapped for a subclass keeping the first post. A
  worker's first post is never throttled (``post_step`` drops only posts within 2 s of the last) and
  carries the worker's ``time.time()`` at the end of step 1: ``first_step_s`` is that minus the time
  ``run`` was called (one host, one clock). ``first_step_seen_s``: when the driver took it (0.25 s polls).
  Where it goes: the feed handed to the worker stamps (into a Ray queue) when the training loop first
  asks for a batch (``loop_start_s``: Ray Train's start-up and the model) and when it gets one
  (``first_batch_s``: the feed's latency); step 1's compute is the rest.
- object store: every 0.2 s a driver thread asks the raylet for its store stats (what ``ray memory
  --stats-only`` prints: ``ray._private.internal_api.get_memory_info_reply``): peak bytes used plus
  fallback (disk-mmapped) bytes, and bytes spilled. Ray's ``object_store_memory`` resource (total
  minus available, ``ray.available_resources``) is sampled too: in Ray 2.60 it counts primary copies only.
- driver: peak RSS (``ru_maxrss``), RSS before ``run``, seconds of ``tile_feed`` (the plan from the
  index), and the run's wall time (training, checkpoint, export).

    python benchmarks/bench_pretrain_feed.py --out benchmarks/results/pretrain_feed.json
        [--tiles 500000] [--work bench_out/pretrain_feed] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.hardware import hardware_info  # noqa: E402
from benchmarks.record import save_record, start_local_ray  # noqa: E402
from benchmarks.synthetic_tile_store import MAGNIFICATION, TILE, build_store  # noqa: E402
from mixture_ray.model_input.feed import TrainingFeed  # noqa: E402
from mixture_ray.train_progress import TrainingProgress  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Generator

    import numpy as np

FIRST_STEP_TARGET_S = 60.0
STORE_PEAK_TARGET_BYTES = 2 * 10**9  # "2 GB"
SAMPLE_EVERY_S = 0.2
RUN = {"max_steps": 5, "batch_size": 32, "arch": "resnet18", "queue_size": 256, "split_bn": 8,
       "train.workers": 1, "train.cpus_per_worker": 1.0, "train.checkpoint_every": 5, "train.log_every": 1,
       "train.tracking_uri": None}


# ---------------------------------------------------------------- one pretrain run (child process)
class FirstStepProgress(TrainingProgress):
    """The stage's progress line, keeping the first post it takes and when the driver took it."""

    first_post: ClassVar[list[tuple[dict[str, Any], float]]] = []

    def _take_all(self) -> bool:
        got = super()._take_all()
        if got and not self.first_post and self.first is not None:
            self.first_post.append((dict(self.first), time.time()))
        return got


@dataclasses.dataclass(frozen=True)
class StampedFeed(TrainingFeed):
    """The stage's feed, stamping into ``stamps`` (a Ray queue) when the worker asks for and gets batch 1.

    Defined in the child's ``__main__``, so Ray pickles it by value to the training worker.
    """

    stamps: Any = None

    def batches(self, first_epoch: int, *, rank: int, world: int, batch_size: int,
                buffer_rows: int) -> Generator[tuple[int, dict[str, np.ndarray]]]:
        self.stamps.put_nowait(("loop_start", time.time()))
        inner = super().batches(first_epoch, rank=rank, world=world, batch_size=batch_size,
                                buffer_rows=buffer_rows)
        try:
            first = next(inner)
            self.stamps.put_nowait(("first_batch", time.time()))
            yield first
            yield from inner
        finally:
            inner.close()


class StoreSampler:
    """Samples the object store's bytes (raylet store stats), Ray's resource view and the driver's RSS."""

    def __init__(self, every_s: float) -> None:
        import psutil
        import ray
        from ray._private.internal_api import get_state_from_address

        self.every_s = every_s
        gcs = ray.get_runtime_context().gcs_address  # this session's, not another Ray on the machine
        self.state = get_state_from_address(gcs)  # type: ignore[no-untyped-call]  # unannotated in ray
        node = ray.nodes()[0]  # type: ignore[no-untyped-call]  # unannotated in ray
        self.raylet = (str(node["NodeManagerAddress"]), int(node["NodeManagerPort"]))
        self.process = psutil.Process()
        self.peak: dict[str, int] = {"used": 0, "primary_copy": 0, "spilled": 0, "resource_used": 0, "rss": 0}
        self.capacity = self.samples = 0
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="object store sampler", daemon=True)

    def sample(self) -> dict[str, int]:
        """One sample: store bytes used (with fallback), primary copies, spilled, resource view, RSS."""
        import ray
        from ray._private.internal_api import get_memory_info_reply

        from mixture_ray.ray_runtime import cluster_resources

        stats = get_memory_info_reply(  # type: ignore[no-untyped-call]  # unannotated in ray
            self.state, node_manager_address=self.raylet[0], node_manager_port=self.raylet[1],
            timeout_seconds=10.0).store_stats
        self.capacity = int(stats.object_store_bytes_avail)
        available = ray.available_resources()  # type: ignore[no-untyped-call]  # unannotated in ray
        total = cluster_resources().get("object_store_memory", 0.0)
        return {"used": int(stats.object_store_bytes_used) + int(stats.object_store_bytes_fallback),
                "primary_copy": int(stats.object_store_bytes_primary_copy),
                "spilled": int(stats.spilled_bytes_total),
                "resource_used": int(total - available.get("object_store_memory", total)),
                "rss": int(self.process.memory_info().rss)}

    def _loop(self) -> None:
        while not self._halt.is_set():
            try:
                now = self.sample()
                self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}
                self.samples += 1
            except Exception as exc:  # keep sampling; report what failed
                if len(self.errors) < 5:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            self._halt.wait(self.every_s)

    def start(self) -> dict[str, int]:
        """Start sampling; the sample before the run (idle)."""
        idle = self.sample()
        self._thread.start()
        return idle

    def stop(self) -> None:
        """Stop sampling."""
        self._halt.set()
        self._thread.join(timeout=30)


def child(store: Path, runs: Path, cpus: int) -> dict[str, Any]:
    """One pretrain run on ``store`` with its own local Ray; its figures."""
    import ray
    from ray.util.queue import Queue

    from mixture_ray.config import build_config
    from mixture_ray.pretrain import stage
    from mixture_ray.pretrain.config import PretrainConfig
    from mixture_ray.pretrain.data import tile_feed as plan

    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    begin = time.perf_counter()
    start_local_ray(cpus)
    ray_start_s = time.perf_counter() - begin
    cfg = build_config(PretrainConfig, {"tiles": str(store), "out_dir": str(runs), "name": "bench", **RUN})
    feed_s: list[float] = []
    stamps = Queue(maxsize=16, actor_options={"num_cpus": 0})

    def timed_feed(config: PretrainConfig) -> StampedFeed:
        started = time.perf_counter()
        feed = plan(config)
        feed_s.append(time.perf_counter() - started)
        return StampedFeed(**{f.name: getattr(feed, f.name) for f in dataclasses.fields(feed)}, stamps=stamps)

    sampler = StoreSampler(SAMPLE_EVERY_S)
    idle = sampler.start()
    rss_before = int(sampler.process.memory_info().rss)
    with (mock.patch.object(stage, "TrainingProgress", FirstStepProgress),
          mock.patch.object(stage, "tile_feed", timed_feed)):
        called = time.time()
        report = stage.run(cfg)
        wall_s = time.time() - called
    sampler.stop()
    marks = dict(stamps.get_nowait_batch(stamps.qsize()))
    ray.shutdown()
    post, seen = FirstStepProgress.first_post[0] if FirstStepProgress.first_post else ({}, float("nan"))
    peak = sampler.peak
    return {
        "first_step_s": float(post.get("time", float("nan"))) - called,
        "first_step_seen_s": seen - called, "first_post_step": post.get("step"),
        **{f"{k}_s": marks[k] - called for k in ("loop_start", "first_batch") if k in marks},
        "feed_plan_s": feed_s[0] if feed_s else None, "wall_s": wall_s, "ray_start_s": ray_start_s,
        "steps": report.step, "loss": report.loss,
        "samples_per_s_per_worker": report.samples_per_s_per_worker,
        "object_store": {
            "peak_bytes": peak["used"], "peak_primary_copy_bytes": peak["primary_copy"],
            "idle_bytes": idle["used"], "spilled_bytes": peak["spilled"] - idle["spilled"],
            "capacity_bytes": sampler.capacity, "resource_view_peak_used_bytes": peak["resource_used"],
            "samples": sampler.samples, "sample_every_s": SAMPLE_EVERY_S, "sample_errors": sampler.errors},
        "driver": {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   "sampled_peak_rss_bytes": peak["rss"], "rss_before_run_bytes": rss_before,
                   "peak_rss_after_imports_bytes": rss_imports},
    }


def in_child(store: Path, n: int, work: Path, cpus: int) -> dict[str, Any]:
    """:func:`child` in a fresh Python process (its log kept under ``work``); its figures."""
    log = work / f"run_{n}.log"
    env = {"RAY_AUTH_MODE": "disabled", **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}}
    with tempfile.TemporaryDirectory(dir=work, prefix=f"runs_{n}_") as runs, log.open("w") as sink:
        out = Path(runs) / "result.json"
        command = [sys.executable, __file__, "--child", "--store", str(store), "--runs", str(runs),
                   "--child-out", str(out), "--cpus", str(cpus)]
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
        if done.returncode:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"bench_pretrain_feed: the run on {n} tiles failed (log {log}):\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text())
    return {**result, "tiles": n, "log": str(log)}


# ---------------------------------------------------------------- the record
def check(row: dict[str, Any]) -> dict[str, Any]:
    """The issue's two targets for one run, with pass / fail."""
    first, peak = row["first_step_s"], row["object_store"]["peak_bytes"]
    return {"first_step_s": {"value": first, "target": f"< {FIRST_STEP_TARGET_S:g}",
                             "pass": bool(first < FIRST_STEP_TARGET_S)},
            "object_store_peak_bytes": {"value": peak, "target": f"< {STORE_PEAK_TARGET_BYTES} (2 GB)",
                                        "pass": bool(peak < STORE_PEAK_TARGET_BYTES)}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tiles", type=int, default=500_000, help="tiles of the store (baseline: a tenth)")
    parser.add_argument("--work", type=Path, default=REPO / "bench_out" / "pretrain_feed",
                        help="where the stores are kept between runs, with each run's log")
    parser.add_argument("--quick", action="store_true", help="20,000 and 2,000 tiles: a smoke test")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of each run's local Ray")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.child and args.out is None:
        parser.error("--out is required")
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        args.child_out.write_text(json.dumps(child(args.store, args.runs, args.cpus)))
        return
    n = 20_000 if args.quick else args.tiles
    sizes, work, builds, rows = [n // 10, n], args.work.resolve(), [], []  # the baseline first
    work.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        print(f"[bench_pretrain_feed] store of {size:,} tiles ...", flush=True)
        builds.append(build_store(work / f"store_{size}", size))
        print(f"[bench_pretrain_feed]   {json.dumps(builds[-1])}", flush=True)
    for size, build in zip(sizes, builds, strict=True):
        print(f"[bench_pretrain_feed] pretrain on {size:,} tiles ...", flush=True)
        row = in_child(Path(build["path"]), size, work, args.cpus)
        rows.append({**row, "targets": check(row)})
        print(f"[bench_pretrain_feed]   first step {row['first_step_s']:.1f} s, object store peak "
              f"{row['object_store']['peak_bytes'] / 2**20:,.0f} MiB, wall {row['wall_s']:.1f} s", flush=True)
    (small, large), targets = rows, check(rows[-1])

    def growth(get: Any) -> float:
        low, high = float(get(small)), float(get(large))
        return high / low if low > 0 else float("nan")

    result: dict[str, Any] = {
        "name": "pretrain_feed_first_step",
        "unit": f"seconds from pretrain run() to the end of step 1, store of {n:,} tiles of {TILE} px",
        "value": large["first_step_s"],
        "baseline_name": f"the same on {sizes[0]:,} tiles (a tenth; same run)",
        "baseline_value": small["first_step_s"],
        "ratio": small["first_step_s"] / large["first_step_s"],
        "targets": targets, "pass": all(t["pass"] for t in targets.values()),
        "growth_10x_tiles": {
            "first_step": growth(lambda r: r["first_step_s"]),
            "object_store_peak": growth(lambda r: r["object_store"]["peak_bytes"]),
            "driver_peak_rss": growth(lambda r: r["driver"]["peak_rss_bytes"]),
            "wall": growth(lambda r: r["wall_s"])},
        "runs": rows, "stores": builds, "hardware": hardware_info(),
        "command": shlex.join(["python", os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        "params": {"tiles": sizes, "tile_px": TILE, "magnification": MAGNIFICATION, "quick": args.quick,
                   "cpus": args.cpus, **{k: v for k, v in RUN.items() if k != "train.tracking_uri"},
                   "cache_tiles": False, "feed": "defaults (shuffle_buffer 2048, feed_memory_mb 1024)",
                   "repeats": 1, "note": "one run per size, each in a fresh process and local Ray; "
                                         "the store build is not part of the run"},
    }
    save_record(args.out, result, shown=("name", "value", "baseline_value", "ratio", "targets", "pass",
                                         "growth_10x_tiles"))


if __name__ == "__main__":
    main()
