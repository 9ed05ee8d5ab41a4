"""The chaos run: the chain tile -> embed -> cluster -> classify -> maps -> cases on a simulated
multi-node Ray cluster, once clean and once under seeded random faults, with every output compared.

Shared by ``scripts/chaos_run.py`` (the full run, ``--faults 20``) and ``tests/pipeline/test_chaos.py``
(a small one). Nothing here is part of the package: it drives the real CLI from outside.

- **The cluster** (:class:`SimCluster`): ``ray.cluster_utils.Cluster`` on this machine, a head with
  no CPU (where the drivers connect) and worker nodes. Every node's raylet, so every Ray worker,
  gets ``MIXTURE_RAY_FAULTS`` (the fault folder) in its environment.
- **The chain**: each stage runs as its own driver, ``python -m mixture_ray <stage> --config
  <stage>.yaml`` with ``RAY_ADDRESS`` set to the cluster, as ``ray job submit`` would run it. A
  stage is done when its command exits 0 and its folder has ``_SUCCESS``; otherwise the same
  command is run again, as a user would (the stages resume from their committed slides).
- **The faults** (:func:`plan_faults`, seeded), of five kinds:

  - *worker* / *actor*: a token in the fault folder that the first process reaching a point
    claims and dies at (``mixture_ray.faults.crash_once``: ``tile.pixels``, ``tile.coordinates``,
    ``embed.batch``, ``classify.batch``), or a busy Ray worker or actor process of the stage
    killed with SIGKILL from outside (a Ray Data ``MapWorker``, a maps task, a cases task);
  - *driver*: the driver exits right after a commit (``<stage>.driver-after-commit``), or is
    killed with SIGKILL part-way through the stage (for a stage with a folder lease, once it
    holds the lease); the rerun must take the dead driver's lease over and resume;
  - *write*: one write raises ``OSError`` (``fail_once``: ``write._COMMITTED.json``,
    ``write._SUCCESS``, ``write._settings.json``, ``write._index.json``, ``write.legend.json``;
    EIO or ENOSPC, drawn);
  - *node*: a worker node removed (``Cluster.remove_node``, not gracefully) and a fresh one
    added, between stages or while the stage's work runs on it.

  A fault is *injected* when its token was claimed, its process killed or its node removed; it
  is *survived* when its stage then completed (reruns allowed) and every output of that stage is
  identical to the clean run's.
- **The comparison** (:func:`snapshot`, :func:`compare`): committed rows of the tile, embedding
  and prediction stores sorted by tile key; each clustering's assignments (sorted), centroids,
  scaler and metrics; every map's pixels, the legend and the agreement table; every cases
  table. Wall times, node ids and the run's own folder name are left out. Values are compared
  exactly; floating-point values that differ in the last bits (within ``rtol`` and ``atol``,
  1e-5) are reported as *close* with the largest difference, anything else as *different*.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mixture_ray.faults import ENV

REPO = Path(__file__).resolve().parents[1]

#: The chain, in order, and each stage's output folder under a run's root.
STAGES = ("tile", "embed", "cluster", "classify", "maps", "cases")
FOLDERS = {"tile": "tiles", "embed": "embeddings", "cluster": "clusters", "classify": "predictions",
           "maps": "maps", "cases": "cases"}
#: Stages whose folder holds a lease while a run writes it (``StageFolder.prepare``).
LEASED = ("tile", "embed", "classify", "maps", "cases")
#: Stages that stream slides into a committed Parquet store (part ledger, driver-after-commit).
STORES = ("tile", "embed", "classify")
#: Process titles of a stage's Ray work (``ray::<title>``) that SIGKILL and mid-stage node faults aim at.
WORK_TITLES = {"tile": ("MapWorker",), "embed": ("MapWorker",), "classify": ("MapWorker",),
               "maps": ("_safe_draw",), "cases": ("count_file",)}
#: The pipeline verb's line for a finished stage (its name and seconds).
PIPELINE_DONE = re.compile(r"\[pipeline\] stage \d+/\d+ (\S+): done in ([\d.]+)s")
#: The seeded classifier's classes (the finding classifier of a real run).
CLASSES = ("normal_alveolar", "dense_fibrosis", "fibroblastic_foci", "other")
#: Columns that order rows: tile keys, then case ids (cases tables).
KEY_COLUMNS = ("slide_id", "case_id", "magnification", "x", "y")
#: Record fields that differ from run to run by nature (wall time, where the work ran).
VOLATILE = frozenset({"seconds", "nodes", "devices"})
RTOL = ATOL = 1e-5

# Fault families: the plan takes one of each (as many as it has faults for), then draws the rest.
WORKER_TOKEN, ACTOR_TOKEN, DRIVER_CRASH = "worker-token", "actor-token", "driver-crash"
DRIVER_KILL, WRITE_FAIL, NODE_BETWEEN = "driver-kill", "write-fail", "node-between"
PROCESS_KILL, NODE_DURING = "process-kill", "node-during"
FAMILIES = (WORKER_TOKEN, ACTOR_TOKEN, DRIVER_CRASH, DRIVER_KILL, WRITE_FAIL, NODE_BETWEEN, PROCESS_KILL,
            NODE_DURING)
TOKEN_FAMILIES = (WORKER_TOKEN, ACTOR_TOKEN, DRIVER_CRASH, WRITE_FAIL)


@dataclasses.dataclass(frozen=True)
class Size:
    """How big a chaos run is: the cohort, the stages' settings and a stage attempt's time limit."""

    n_cases: int
    slide_px: int
    tile_size: int
    max_tiles: int
    part_rows: int
    batch_size: int
    ks: tuple[int, ...]
    thumbnail_px: int
    attempt_timeout_s: float
    workers: int = 2


#: The full run of scripts/chaos_run.py: 6 one-slide cases, 80 tiles each, parts of 60 rows. Several
#: ks give a killed cluster driver a moment between two clusterings.
FULL = Size(n_cases=6, slide_px=2048, tile_size=32, max_tiles=80, part_rows=60, batch_size=16, ks=(4, 6, 8),
            thumbnail_px=512, attempt_timeout_s=300.0)
#: The test's run: 3 one-slide cases, 48 tiles each, one actor per Ray Data pool (quicker to start).
SMALL = Size(n_cases=3, slide_px=1024, tile_size=32, max_tiles=48, part_rows=40, batch_size=16, ks=(2, 3),
             thumbnail_px=256, attempt_timeout_s=150.0, workers=1)


# ---------------------------------------------------------------------------------------------- faults
@dataclasses.dataclass
class Fault:
    """One planned fault and what became of it."""

    family: str
    kind: str
    stage: str
    point: str
    mechanism: str
    errno: str = ""
    at: float = 0.0
    injected: bool = False
    attempt: int | None = None
    survived: bool = False
    detail: str = ""
    claimed: str = ""

    def row(self) -> dict[str, Any]:
        """The fault as a JSON record."""
        return dataclasses.asdict(self)


def catalogue() -> list[Fault]:
    """Every fault the chain offers, in chain order (a stage's token points are unique)."""
    faults: list[Fault] = []
    for stage in STAGES:
        if stage == "tile":
            faults += [Fault(WORKER_TOKEN, "worker", stage, "tile.pixels", "crash_once"),
                       Fault(WORKER_TOKEN, "worker", stage, "tile.coordinates", "crash_once")]
        if stage in ("embed", "classify"):
            faults.append(Fault(ACTOR_TOKEN, "actor", stage, f"{stage}.batch", "crash_once"))
        if stage in STORES:
            faults += [Fault(DRIVER_CRASH, "driver", stage, f"{stage}.driver-after-commit", "crash_once"),
                       Fault(WRITE_FAIL, "write", stage, "write._COMMITTED.json", "fail_once"),
                       Fault(WRITE_FAIL, "write", stage, "write._index.json", "fail_once")]
        moment = "holding the lease" if stage in LEASED else "writing clusterings"
        faults += [Fault(DRIVER_KILL, "driver", stage, f"driver, {moment}", "SIGKILL") for _ in range(2)]
        faults.append(Fault(WRITE_FAIL, "write", stage, "write._SUCCESS", "fail_once"))
        if stage in LEASED:
            faults.append(Fault(WRITE_FAIL, "write", stage, "write._settings.json", "fail_once"))
        if stage == "maps":
            faults.append(Fault(WRITE_FAIL, "write", stage, "write.legend.json", "fail_once"))
        if stage != STAGES[0]:
            faults.append(Fault(NODE_BETWEEN, "node", stage, f"worker node, before {stage}", "remove_node"))
        if stage in WORK_TITLES:
            titles = "|".join(WORK_TITLES[stage])
            kind = "actor" if "MapWorker" in titles else "worker"
            faults += [Fault(PROCESS_KILL, kind, stage, f"busy ray::{titles}", "SIGKILL"),
                       Fault(NODE_DURING, "node", stage, f"worker node running ray::{titles}", "remove_node")]
    return faults


def plan_faults(seed: int, count: int) -> list[Fault]:
    """``count`` faults drawn with ``seed``: one of each family first (as far as count allows), then any.

    Args:
        seed: the seed of every draw (which faults, errno names, when a driver is killed).
        count: how many faults (at most the size of :func:`catalogue`).

    Returns:
        The faults in chain order.
    """
    rng = random.Random(seed)
    pool = catalogue()
    if not 1 <= count <= len(pool):
        raise ValueError(f"faults: give 1 to {len(pool)} (got {count})")
    chosen: list[Fault] = []
    for family in FAMILIES[:count]:
        pick = rng.choice([f for f in pool if f.family == family])
        chosen.append(pick)
        pool.remove(pick)
    chosen += rng.sample(pool, count - len(chosen))
    for fault in chosen:
        if fault.mechanism == "fail_once":
            fault.errno = rng.choice(("EIO", "ENOSPC"))
        if fault.family == DRIVER_KILL:
            fault.at = round(rng.uniform(0.3, 0.8), 2)
    chosen.sort(key=lambda f: (STAGES.index(f.stage), FAMILIES.index(f.family), f.point))
    return chosen


# --------------------------------------------------------------------------------------------- cluster
def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


#: A removed node is found dead in about 3 s instead of Ray's default of about 15 s (5 checks, 3 s apart).
HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


@dataclasses.dataclass(frozen=True)
class Busy:
    """A Ray worker process at work on a worker node."""

    pid: int
    title: str
    node: Any


class SimCluster:
    """A simulated cluster: a head with no CPU and ``workers`` nodes of ``cpus`` CPUs, on this machine.

    Every raylet starts with ``MIXTURE_RAY_FAULTS=fault_dir``, so each Ray worker sees the fault
    folder. Use as a context manager; the nodes stop and Ray's temporary folder is removed on exit.
    """

    def __init__(self, fault_dir: Path, *, workers: int = 2, cpus: int = 2,
                 object_store_mb: int = 150) -> None:
        self.fault_dir = fault_dir
        self.n_workers = workers
        self.cpus = cpus
        self.object_store_mb = object_store_mb
        self.sim: Any = None
        self.temp_dir = ""
        self.node_args: dict[str, Any] = {}

    def __enter__(self) -> SimCluster:
        from ray.cluster_utils import Cluster

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        self.fault_dir.mkdir(parents=True, exist_ok=True)
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: socket paths have a length limit
        self.node_args = {"temp_dir": self.temp_dir, "object_store_memory": self.object_store_mb << 20,
                          "env_vars": {ENV: str(self.fault_dir)}}
        gcs, agent = free_ports(2)
        try:
            self.sim = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 0, "include_dashboard": False, "gcs_server_port": gcs,
                "dashboard_agent_listen_port": agent, "_system_config": HEALTH_CHECKS, **self.node_args})
            for _ in range(self.n_workers):
                self.sim.add_node(num_cpus=self.cpus, **self.node_args)
            self.sim.wait_for_nodes()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every node and remove Ray's temporary folder."""
        if self.sim is not None:
            self.sim.shutdown()
            self.sim = None
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    @property
    def address(self) -> str:
        """The GCS address drivers join (``RAY_ADDRESS``)."""
        return str(self.sim.address)

    def workers(self) -> list[Any]:
        """The worker nodes now, in a stable order."""
        return sorted(self.sim.worker_nodes, key=lambda n: str(n.node_id))

    def replace(self, node: Any) -> str:
        """Remove ``node`` abruptly (every process killed) and add a fresh node like it; what happened."""
        old = str(node.node_id)[:8]
        self.sim.remove_node(node, allow_graceful=False)
        new = self.sim.add_node(num_cpus=self.cpus, **self.node_args)
        return f"node {old} removed, node {str(new.node_id)[:8]} added"

    def busy(self, titles: tuple[str, ...], since: float = 0.0) -> list[Busy]:
        """Ray worker processes on the worker nodes whose title holds one of ``titles``.

        Only processes started at ``since`` (a wall-clock time) or later: a stage's workers are
        its own job's, so this leaves out those of a killed earlier attempt still being torn down.
        """
        import psutil

        found = []
        for node in self.workers():
            raylet = node.all_processes.get("raylet")
            if not raylet:
                continue
            try:
                children = psutil.Process(raylet[0].process.pid).children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                try:
                    title = " ".join(child.cmdline()).strip()
                    started = child.create_time()
                except psutil.Error:
                    continue
                if started < since:
                    continue
                if title.startswith("ray::") and any(t in title for t in titles):
                    found.append(Busy(child.pid, title, node))
        return found


# ---------------------------------------------------------------------------------------------- inputs
@dataclasses.dataclass(frozen=True)
class Inputs:
    """What both runs read: the synthetic cohort and a seeded random finding classifier."""

    cohort: Path
    manifest: Path
    classifier: Path


def write_inputs(root: Path, size: Size) -> Inputs:
    """The cohort (one slide per case, seed 0) and a seeded random ResNet18 classifier at 20x."""
    import torch

    from mixture_ray.config import build_config
    from mixture_ray.models import checkpoint as ckpt
    from mixture_ray.models.backbone import Backbone
    from mixture_ray.models.classifier import classifier_payload
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.synth.config import SynthConfig

    cohort = write_cohort(build_config(SynthConfig, {
        "out_dir": root / "cohort", "n_cases": size.n_cases, "min_slides_per_case": 1,
        "max_slides_per_case": 1, "width": size.slide_px, "height": size.slide_px, "seed": 0}))
    torch.manual_seed(3)
    net = Backbone("resnet18", len(CLASSES), classes=CLASSES).eval()
    ckpt.save(classifier_payload(net, magnification=20.0, image_size=0), root / "classifier.pt")
    return Inputs(cohort.root, cohort.manifest, root / "classifier.pt")


def stage_configs(inputs: Inputs, out: Path, size: Size) -> dict[str, dict[str, Any]]:
    """Each stage's config (its ``--config`` YAML) for a run writing under ``out``.

    Actors of 1 CPU (two per pool in the full run) with 1-CPU decode tasks fit the two 2-CPU worker
    nodes; ``gpus: 0`` and one torch thread per actor because the simulated nodes share this
    machine's cores. The cluster stage uses scikit-learn in the driver: see docs/chaos.md for why
    not the distributed engine.
    """
    folder = {stage: str(out / name) for stage, name in FOLDERS.items()}
    pool = {"workers": size.workers, "actor_cpus": 1.0, "batch_size": size.batch_size,
            "part_rows": size.part_rows, "gpus": 0}
    return {
        "tile": {"manifest": str(inputs.manifest), "out_dir": folder["tile"], "tile_size": size.tile_size,
                 "magnifications": [20.0], "max_tiles_per_slide": size.max_tiles, "seed": 0, "pool": pool},
        "embed": {"tiles": folder["tile"], "out_dir": folder["embed"], "model": "random",
                  "magnification": 20.0, "torch_threads": 1, "seed": 0, "pool": pool, "input": {"cpus": 1.0}},
        "cluster": {"embeddings": folder["embed"], "out_dir": folder["cluster"], "ks": list(size.ks),
                    "engine": "sklearn", "silhouette_sample": 0, "seed": 0},
        "classify": {"tiles": folder["tile"], "classifier": str(inputs.classifier),
                     "out_dir": folder["classify"], "max_background": 0.7, "torch_threads": 1, "pool": pool,
                     "input": {"cpus": 1.0}},
        "maps": {"predictions": [folder["classify"]], "manifest": str(inputs.manifest),
                 "out_dir": folder["maps"], "thumbnail_px": size.thumbnail_px,
                 "truth_cohort": str(inputs.cohort)},
        "cases": {"predictions": [folder["classify"]], "out_dir": folder["cases"], "exclude": [],
                  "embeddings": [folder["embed"]], "clusters": folder["cluster"],
                  "baseline_ks": list(size.ks)},
    }


# ------------------------------------------------------------------------------------------- attempts
@dataclasses.dataclass
class Attempt:
    """One run of a stage's command."""

    number: int
    rc: int | None
    seconds: float
    pid: int
    events: list[str]
    log: str
    tail: list[str] = dataclasses.field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The attempt as a JSON record."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StageRun:
    """Every attempt of one stage in one run, and whether it ended complete."""

    stage: str
    attempts: list[Attempt]
    complete: bool

    @property
    def seconds(self) -> float:
        """Wall time of all the attempts."""
        return sum(a.seconds for a in self.attempts)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def lease_pid(folder: Path) -> int | None:
    """The PID holding ``folder``'s lease (``_LEASE.json``), None when none is readable."""
    try:
        return int(json.loads((folder / "_LEASE.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


#: Seconds between two process or node faults of one attempt (the stage gets to pick itself up).
SPACING_S = 3.0


class Injector:
    """Applies a stage's process and node faults while its driver runs (called every 50 ms)."""

    def __init__(self, cluster: SimCluster, stage: str, faults: list[Fault], out_dir: Path,
                 clean_seconds: float, rng: random.Random) -> None:
        self.cluster = cluster
        self.stage = stage
        self.faults = [f for f in faults if f.family in (DRIVER_KILL, PROCESS_KILL, NODE_DURING)]
        self.out_dir = out_dir
        self.clean_seconds = clean_seconds
        self.rng = rng
        self.attempt = 0
        self.rerun = False
        self.events: list[str] = []
        self.killed_driver = False
        self.last_strike = float("-inf")
        self.started = 0.0

    def pending(self) -> bool:
        """True while a fault of this injector has not been applied."""
        return any(not f.injected for f in self.faults)

    def start(self, attempt: int, rerun: bool) -> None:
        """A new attempt begins (``rerun``: the stage already completed once)."""
        self.attempt, self.rerun, self.events, self.killed_driver = attempt, rerun, [], False
        self.last_strike = float("-inf")
        self.started = time.time()

    def _mark(self, fault: Fault, detail: str) -> None:
        fault.injected, fault.attempt, fault.detail = True, self.attempt, detail
        self.events.append(f"{fault.kind} fault: {detail}")

    def poll(self, proc: subprocess.Popen[bytes], elapsed: float) -> None:
        """Kill the driver, a busy worker or a node when its moment has come.

        A driver of a stage with a lease is killed once it holds the lease and ``at`` x the clean
        stage time has passed (on a rerun of a complete stage: as soon as it holds the lease); the
        cluster stage's driver, whose work takes about a second, once it has begun writing. One
        driver fault per attempt; the next waits for the rerun. A process or node fault strikes
        as soon as a worker of the stage is at work, at least ``SPACING_S`` after the one before.
        """
        drivers = [f for f in self.faults if not f.injected and f.family == DRIVER_KILL]
        if drivers and not self.killed_driver:
            fault = drivers[0]
            if self.stage in LEASED:
                held = lease_pid(self.out_dir) == proc.pid
                due = held and (self.rerun or elapsed >= fault.at * self.clean_seconds)
            else:  # cluster: its work takes a second; killed once it has begun writing clusterings
                due = not (self.out_dir / "_SUCCESS").exists() and any(self.out_dir.glob("mag-*"))
            if due:
                _kill_group(proc)
                self.killed_driver = True
                self._mark(fault, f"driver pid {proc.pid} killed {elapsed:.1f} s into attempt {self.attempt}")
                return
        waiting = [f for f in self.faults if not f.injected and f.family in (PROCESS_KILL, NODE_DURING)]
        if not waiting or self.killed_driver or elapsed - self.last_strike < SPACING_S:
            return
        busy = self.cluster.busy(WORK_TITLES[self.stage], since=self.started)
        if not busy:
            return
        victim = self.rng.choice(busy)
        fault = waiting[0]
        if fault.family == PROCESS_KILL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
            self._mark(fault, f"{_short(victim.title)} (pid {victim.pid}) killed {elapsed:.1f} s in")
        else:
            what = self.cluster.replace(victim.node)
            self._mark(fault, f"{what} {elapsed:.1f} s in (it ran {_short(victim.title)})")
        self.last_strike = elapsed


def _short(title: str) -> str:
    """A Ray process title cut to its first 40 characters."""
    return title if len(title) <= 40 else f"{title[:37]}..."


def run_attempt(command: list[str], env: dict[str, str], log: Path, timeout_s: float,
                injector: Injector | None) -> tuple[int | None, float, int]:
    """Run one stage command to its end (or SIGKILL it at ``timeout_s``); exit status, seconds and PID."""
    start = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while proc.poll() is None:
                elapsed = time.monotonic() - start
                if elapsed > timeout_s:
                    _kill_group(proc)
                    proc.wait()
                    return None, elapsed, proc.pid
                if injector is not None and injector.pending():
                    injector.poll(proc, elapsed)
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
    return proc.returncode, time.monotonic() - start, proc.pid


def _tail(log: Path, lines: int = 6) -> list[str]:
    try:
        return log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return []


class Chain:
    """Runs the chain's stages as drivers joined to ``cluster``, writing under ``out``."""

    def __init__(self, cluster: SimCluster, inputs: Inputs, out: Path, size: Size) -> None:
        self.cluster = cluster
        self.out = out
        self.size = size
        self.configs = stage_configs(inputs, out, size)
        self.env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "disabled",
                    ENV: str(cluster.fault_dir), "PYTHONPATH": str(REPO)}
        self.env.pop("MIXTURE_RAY_ROOT", None)
        config_dir = out / "_config"
        config_dir.mkdir(parents=True, exist_ok=True)
        for stage, config in self.configs.items():
            (config_dir / f"{stage}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        chain = {"stages": [{"stage": stage, "config": self.configs[stage]} for stage in STAGES]}
        (config_dir / "pipeline.yaml").write_text(yaml.safe_dump(chain, sort_keys=False))

    def command(self, stage: str) -> list[str]:
        """``python -m mixture_ray <stage> --config <out>/_config/<stage>.yaml``."""
        config = self.out / "_config" / f"{stage}.yaml"
        return [sys.executable, "-m", "mixture_ray", stage, "--config", str(config)]

    def folder(self, stage: str) -> Path:
        """The stage's output folder."""
        return self.out / FOLDERS[stage]

    def attempt(self, stage: str, number: int, injector: Injector | None) -> Attempt:
        """One run of the stage's command."""
        log = self.out / "_logs" / f"{stage}-{number}.log"
        limit = self.size.attempt_timeout_s
        rc, seconds, pid = run_attempt(self.command(stage), self.env, log, limit, injector)
        events = list(injector.events) if injector is not None else []
        if rc is None:
            events.append(f"timed out after {self.size.attempt_timeout_s:.0f} s: killed")
        attempt = Attempt(number, rc, round(seconds, 2), pid, events, str(log))
        if rc != 0:
            attempt.tail = _tail(log)
        return attempt

    def done(self, stage: str, attempt: Attempt) -> bool:
        """The attempt exited 0 and the stage's folder has ``_SUCCESS``."""
        return attempt.rc == 0 and (self.folder(stage) / "_SUCCESS").exists()

    def run_clean(self) -> list[StageRun]:
        """The chain in one driver, ``mixture-ray pipeline --file <out>/_config/pipeline.yaml``.

        Each stage's time is the pipeline's own figure for it (without the process start-up).

        Raises:
            RuntimeError: the pipeline did not complete (a clean run must).
        """
        log = self.out / "_logs" / "pipeline.log"
        command = [sys.executable, "-m", "mixture_ray", "pipeline", "--file",
                   str(self.out / "_config" / "pipeline.yaml")]
        rc, _, pid = run_attempt(command, self.env, log, self.size.attempt_timeout_s * len(STAGES), None)
        text = log.read_text(errors="replace") if log.exists() else ""
        took = {m[1]: float(m[2]) for m in PIPELINE_DONE.finditer(text)}
        finished = all((self.folder(stage) / "_SUCCESS").exists() for stage in STAGES)
        if rc != 0 or set(took) != set(STAGES) or not finished:
            raise RuntimeError(f"clean run: the pipeline failed (exit {rc}); {log}:\n"
                               + "\n".join(_tail(log, 12)))
        return [StageRun(stage, [Attempt(1, rc, took[stage], pid, [], str(log))], True) for stage in STAGES]

    def run_chaos(self, faults: list[Fault], clean: dict[str, float], seed: int) -> list[StageRun]:
        """Every stage under its planned faults, rerun until complete; stops at a stage that never completes.

        Args:
            faults: the plan (:func:`plan_faults`); each fault's outcome is filled in.
            clean: each stage's clean wall time (when a driver is killed: a fraction of it).
            seed: seeds which node or process is hit.

        Returns:
            Each stage's attempts, up to the first stage that did not complete.
        """
        runs = []
        for index, stage in enumerate(STAGES):
            rng = random.Random(seed * 1000 + index)
            mine = [f for f in faults if f.stage == stage]
            run = self._chaos_stage(stage, mine, clean[stage], rng)
            runs.append(run)
            if not run.complete:
                for fault in faults:
                    if STAGES.index(fault.stage) > index:
                        fault.detail = f"not reached: {stage} never completed"
                break
        return runs

    def _chaos_stage(self, stage: str, faults: list[Fault], clean_seconds: float,
                     rng: random.Random) -> StageRun:
        for fault in (f for f in faults if f.family == NODE_BETWEEN):
            fault.injected, fault.attempt = True, 0
            what = self.cluster.replace(rng.choice(self.cluster.workers()))
            fault.detail = f"{what} before {stage} started"
        tokens = [f for f in faults if f.family in TOKEN_FAMILIES]
        fault_dir = self.cluster.fault_dir
        for fault in tokens:
            (fault_dir / fault.point).write_text(fault.errno)
        injector = Injector(self.cluster, stage, faults, self.folder(stage), clean_seconds, rng)
        attempts: list[Attempt] = []
        complete, reruns = False, 0
        while len(attempts) < len(faults) + 3:
            injector.start(len(attempts) + 1, complete)
            attempt = self.attempt(stage, len(attempts) + 1, injector)
            attempts.append(attempt)
            self._collect_claims(stage, tokens, attempt)
            reruns += complete
            complete = complete or self.done(stage, attempt)
            # A complete stage is rerun (once) only for a process fault still waiting for its moment;
            # tokens left would never be reached by a rerun that skips every committed slide.
            if complete and (not injector.pending() or reruns >= 1):
                break
        for fault in tokens:
            if not fault.injected:
                (fault_dir / fault.point).unlink(missing_ok=True)
                fault.detail = "never reached: the token was still unclaimed when the stage ended"
        for fault in faults:
            if not fault.injected and not fault.detail:
                fault.detail = "never applied: its moment did not come"
        return StageRun(stage, attempts, complete)

    def _collect_claims(self, stage: str, tokens: list[Fault], attempt: Attempt) -> None:
        fault_dir = self.cluster.fault_dir
        archive = fault_dir / "claimed" / stage
        for fault in (f for f in tokens if not f.injected):
            claims = sorted(fault_dir.glob(f"{fault.point}.claimed-*"))
            if not claims:
                continue
            archive.mkdir(parents=True, exist_ok=True)
            kept = archive / claims[0].name
            claims[0].rename(kept)
            pid = kept.name.rsplit("-", 1)[1]
            who = "the driver" if pid == str(attempt.pid) else "a Ray worker"
            how = f"raised {fault.errno}" if fault.mechanism == "fail_once" else "exited"
            fault.injected, fault.attempt, fault.claimed = True, attempt.number, str(kept)
            fault.detail = f"claimed by pid {pid} ({who}), which {how}"
            attempt.events.append(f"{fault.kind} fault: {fault.point} {fault.detail}")


# ------------------------------------------------------------------------------------------ comparison
def _normalise(value: Any, root: str) -> Any:
    if isinstance(value, str):
        return value.replace(root, "<run>")
    if isinstance(value, dict):
        return {k: _normalise(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_normalise(v, root) for v in value]
    return value


def _column(column: Any, root: str) -> Any:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_floating(kind):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    listed = pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind)
    values = column.to_pylist()
    if listed and pa.types.is_floating(kind.value_type):
        with contextlib.suppress(ValueError, TypeError):
            return np.asarray(values, dtype=np.float64)
    return [_normalise(v, root) for v in values]


def _table(table: Any, root: str) -> dict[str, Any]:
    keys = [k for k in KEY_COLUMNS if k in table.column_names]
    if keys and table.num_rows:
        table = table.sort_by([(k, "ascending") for k in keys])
    return {name: _column(table[name], root) for name in table.column_names if name not in VOLATILE}


def snapshot(out: Path) -> dict[str, Any]:
    """Every final output of a run under ``out``, in a form to compare (item name -> value).

    Item names start with the stage (``tile: rows``, ``cluster: mag-20x/k-4/centroids.npy``, ...).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from mixture_ray.store.folder import committed_files

    root = str(out)
    items: dict[str, Any] = {}
    for stage in STORES:
        files = committed_files(out / FOLDERS[stage])
        items[f"{stage}: committed rows"] = _table(pq.read_table([str(f) for f in files]), root)
    clusters = out / FOLDERS["cluster"]
    for folder in sorted(clusters.glob("mag-*/k-*")):
        name = f"cluster: {folder.relative_to(clusters)}"
        items[f"{name}/assignments"] = _table(pq.read_table(str(folder / "assignments.parquet")), root)
        items[f"{name}/centroids.npy"] = np.asarray(np.load(folder / "centroids.npy"), dtype=np.float64)
        for side in ("scaler.json", "metrics.json"):
            items[f"{name}/{side}"] = _normalise(json.loads((folder / side).read_text()), root)
    items["cluster: metrics.csv"] = _table(pa.Table.from_pandas(pd.read_csv(clusters / "metrics.csv")), root)
    maps = out / FOLDERS["maps"]
    for png in sorted(maps.glob("*.png")):
        with Image.open(png) as image:
            items[f"maps: {png.name}"] = np.asarray(image.convert("RGBA"))
    items["maps: legend.json"] = _normalise(json.loads((maps / "legend.json").read_text()), root)
    items["maps: agreement.csv"] = _table(pa.Table.from_pandas(pd.read_csv(maps / "agreement.csv")), root)
    cases = out / FOLDERS["cases"]
    for table in sorted(cases.rglob("*.parquet")):
        items[f"cases: {table.relative_to(cases)}"] = _table(pq.read_table(str(table)), root)
    return items


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One output item of the chaos run against the clean run's."""

    item: str
    status: str  # identical | close | different | missing | extra
    max_abs_diff: float
    detail: str

    @property
    def stage(self) -> str:
        """The stage that wrote the item."""
        return self.item.split(":", 1)[0]


_RANK = {"identical": 0, "close": 1, "different": 2}


def _finite(value: float) -> float | None:
    """``value``, or None for infinity (not a difference of numbers: JSON has no infinity)."""
    return None if np.isinf(value) else value


def _worse(a: tuple[str, float, str], b: tuple[str, float, str]) -> tuple[str, float, str]:
    if _RANK[b[0]] > _RANK[a[0]] or (b[0] == a[0] and b[1] > a[1]):
        return b
    return a


def _numbers(a: np.ndarray, b: np.ndarray) -> tuple[str, float, str]:
    if a.shape != b.shape:
        return "different", float("inf"), f"shape {a.shape} != {b.shape}"
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating)):
        unequal = int(np.count_nonzero(a != b))
        if not unequal:
            return "identical", 0.0, ""
        return "different", float("inf"), f"{unequal} values differ"
    x, y = a.astype(np.float64), b.astype(np.float64)
    if np.array_equal(x, y, equal_nan=True):
        return "identical", 0.0, ""
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return "different", float("inf"), "missing values differ"
    diff = float(np.nanmax(np.abs(x - y))) if x.size else 0.0
    close = bool(np.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True))
    return ("close" if close else "different"), diff, f"max |difference| {diff:.3g}"


def _diff(a: Any, b: Any) -> tuple[str, float, str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return "different", float("inf"), f"keys differ: {sorted(set(a) ^ set(b))}"
        worst = ("identical", 0.0, "")
        for key in sorted(a):
            status, diff, detail = _diff(a[key], b[key])
            worst = _worse(worst, (status, diff, f"{key}: {detail}" if detail else str(key)))
        return worst if worst[0] != "identical" else ("identical", 0.0, "")
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return _numbers(np.asarray(a), np.asarray(b))
    if isinstance(a, list) and isinstance(b, list):
        if a == b:
            return "identical", 0.0, ""
        if len(a) != len(b):
            return "different", float("inf"), f"{len(a)} != {len(b)} values"
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (*a, *b)):
            return _numbers(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
        first = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        shown = f"{str(a[first])[:60]!r} != {str(b[first])[:60]!r}"
        return "different", float("inf"), f"first difference at row {first}: {shown}"
    if isinstance(a, float) and isinstance(b, float):
        return _numbers(np.asarray([a]), np.asarray([b]))
    return ("identical", 0.0, "") if a == b else ("different", float("inf"), f"{a!r} != {b!r}"[:160])


def compare(clean: dict[str, Any], chaos: dict[str, Any]) -> list[Comparison]:
    """Each item of either run: identical, close (floats within rtol/atol), different, missing or extra."""
    found = []
    for item in sorted(set(clean) | set(chaos), key=lambda i: (STAGES.index(i.split(":", 1)[0]), i)):
        if item not in chaos:
            found.append(Comparison(item, "missing", float("inf"), "not in the chaos run's outputs"))
        elif item not in clean:
            found.append(Comparison(item, "extra", float("inf"), "not in the clean run's outputs"))
        else:
            status, diff, detail = _diff(clean[item], chaos[item])
            found.append(Comparison(item, status, diff, detail))
    return found


def leftovers(out: Path) -> list[str]:
    """Temporary files and folders, and leases, left under a run's folder (its logs and configs aside)."""
    found = []
    for here, dirs, files in os.walk(out):
        rel = Path(here).relative_to(out)
        for name in sorted(dirs):
            if name.startswith(".") or name.endswith(".tmp"):
                found.append(str(rel / name))
        dirs[:] = [d for d in dirs if not (d.startswith((".", "_logs", "_config")) or d.endswith(".tmp"))]
        found += [str(rel / f) for f in sorted(files)
                  if f.startswith(".") or f.endswith(".tmp") or f.startswith("_LEASE")]
    return found


# ------------------------------------------------------------------------------------------- the run
@dataclasses.dataclass
class ChaosResult:
    """A chaos run: its plan and faults, both runs' attempts, the comparison and the leftovers."""

    seed: int
    size: Size
    faults: list[Fault]
    clean: list[StageRun]
    chaos: list[StageRun]
    comparisons: list[Comparison]
    leftovers: list[str]
    clean_seconds: float
    chaos_seconds: float

    @property
    def chain_complete(self) -> bool:
        """Every stage of the chaos run completed."""
        return len(self.chaos) == len(STAGES) and all(r.complete for r in self.chaos)

    @property
    def identical(self) -> bool:
        """Every output item identical to the clean run's (floats within rtol/atol)."""
        return bool(self.comparisons) and all(c.status in ("identical", "close") for c in self.comparisons)

    @property
    def ok(self) -> bool:
        """Complete, identical, and every fault injected and survived."""
        return self.chain_complete and self.identical and all(f.injected and f.survived for f in self.faults)

    def to_json(self) -> dict[str, Any]:
        """The JSON record of the run."""
        def stages(runs: list[StageRun]) -> dict[str, Any]:
            return {r.stage: {"complete": r.complete, "seconds": round(r.seconds, 2),
                              "attempts": [a.row() for a in r.attempts]} for r in runs}

        close = [c for c in self.comparisons if c.status == "close"]
        return {
            "name": "chaos_run", "seed": self.seed, "size": dataclasses.asdict(self.size),
            "ok": self.ok, "faults_planned": len(self.faults),
            "faults_injected": sum(f.injected for f in self.faults),
            "faults_survived": sum(f.survived for f in self.faults),
            "clean_seconds": round(self.clean_seconds, 1), "chaos_seconds": round(self.chaos_seconds, 1),
            "chaos_attempts": sum(len(r.attempts) for r in self.chaos),
            "outputs": {"items": len(self.comparisons),
                        "identical": sum(c.status == "identical" for c in self.comparisons),
                        "close": len(close),
                        "max_abs_diff_of_close": max((c.max_abs_diff for c in close), default=0.0),
                        "rtol": RTOL, "atol": ATOL,
                        "not_identical": [{**dataclasses.asdict(c), "max_abs_diff": _finite(c.max_abs_diff)}
                                          for c in self.comparisons if c.status != "identical"]},
            "faults": [f.row() for f in self.faults],
            "leftovers": self.leftovers,
            "clean": stages(self.clean), "chaos": stages(self.chaos),
        }


def chaos_run(work: Path, cluster: SimCluster, *, seed: int, faults: int, size: Size,
              log: Any = None) -> ChaosResult:
    """Inputs, a clean run, a chaos run with ``faults`` seeded faults, and the comparison, under ``work``.

    Args:
        work: an empty folder (inputs in ``inputs/``, the runs in ``clean/`` and ``chaos/``).
        cluster: the started cluster (its fault folder must be empty).
        seed: seeds the fault plan and which node or process is hit.
        faults: how many faults to inject.
        size: the cohort and stage settings.
        log: called with a line of progress (e.g. ``print``); None: quiet.

    Returns:
        The result; ``ok`` says whether the outputs are identical and every fault was survived.
    """
    say = log or (lambda _line: None)
    plan = plan_faults(seed, faults)
    inputs = write_inputs(work / "inputs", size)
    start = time.perf_counter()
    clean_runs = Chain(cluster, inputs, work / "clean", size).run_clean()
    clean_seconds = time.perf_counter() - start
    say(f"clean run: {clean_seconds:.1f} s ({', '.join(f'{r.stage} {r.seconds:.1f}' for r in clean_runs)})")
    start = time.perf_counter()
    chaos_runs = Chain(cluster, inputs, work / "chaos", size).run_chaos(
        plan, {r.stage: r.seconds for r in clean_runs}, seed)
    chaos_seconds = time.perf_counter() - start
    say(f"chaos run: {chaos_seconds:.1f} s, {sum(len(r.attempts) for r in chaos_runs)} stage attempts")
    complete = len(chaos_runs) == len(STAGES) and all(r.complete for r in chaos_runs)
    comparisons = compare(snapshot(work / "clean"), snapshot(work / "chaos")) if complete else []
    done = {r.stage for r in chaos_runs if r.complete}
    for fault in plan:
        same = all(c.status in ("identical", "close") for c in comparisons if c.stage == fault.stage)
        fault.survived = fault.injected and fault.stage in done and bool(comparisons) and same
    return ChaosResult(seed, size, plan, clean_runs, chaos_runs, comparisons, leftovers(work / "chaos"),
                       clean_seconds, chaos_seconds)


def fault_table(faults: list[Fault]) -> str:
    """The faults as a fixed-width table: kind, stage, point, how, attempt, injected, survived, detail."""
    header = ("#", "kind", "stage", "point", "how", "attempt", "injected", "survived", "detail")
    rows = [header]
    for number, f in enumerate(faults, start=1):
        how = f"{f.mechanism} {f.errno}".strip()
        if f.family == DRIVER_KILL and f.stage in LEASED:
            how = f"SIGKILL at {f.at:.2f} x clean"
        rows.append((str(number), f.kind, f.stage, f.point, how, "-" if f.attempt is None else str(f.attempt),
                     "yes" if f.injected else "NO", "yes" if f.survived else "NO", f.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
                     for r in rows)


def describe(result: ChaosResult) -> str:
    """The fault table, each stage's attempts, the comparison and the verdict, for a console."""
    lines = [fault_table(result.faults), ""]
    for run in result.chaos:
        codes = ", ".join("timeout" if a.rc is None else str(a.rc) for a in run.attempts)
        state = "" if run.complete else "; NEVER COMPLETED"
        lines.append(f"{run.stage}: {len(run.attempts)} attempt(s), exit status {codes}, "
                     f"{run.seconds:.1f} s{state}")
    compared = result.comparisons
    same = sum(c.status == "identical" for c in compared)
    close = [c for c in compared if c.status == "close"]
    largest = max((c.max_abs_diff for c in close), default=0.0)
    lines.append(f"outputs: {len(compared)} items compared: {same} bit-identical, {len(close)} equal within "
                 f"rtol = atol = {RTOL:g} (largest difference {largest:.3g}), "
                 f"{len(compared) - same - len(close)} different")
    lines += [f"  {c.status}: {c.item}: {c.detail}" for c in compared if c.status != "identical"]
    lines.append(f"left behind in the chaos run's folders: {', '.join(result.leftovers) or 'nothing'}")
    injected = sum(f.injected for f in result.faults)
    survived = sum(f.survived for f in result.faults)
    lines.append(f"seed {result.seed}: {len(result.faults)} faults planned, {injected} injected, {survived} "
                 f"survived; clean run {result.clean_seconds:.1f} s, chaos run {result.chaos_seconds:.1f} s: "
                 f"{'OK' if result.ok else 'FAILED'}")
    return "\n".join(lines)
