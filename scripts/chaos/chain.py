"""The chaos run's chain: inputs, configs, and each stage run (and rerun) as its own driver under faults."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mixture_ray.faults import ENV

from .plan import (
    CLASSES,
    DRIVER_KILL,
    FOLDERS,
    LEASED,
    NODE_BETWEEN,
    NODE_DURING,
    PIPELINE_DONE,
    PROCESS_KILL,
    REPO,
    STAGES,
    TOKEN_FAMILIES,
    WORK_TITLES,
    Fault,
    Size,
)

if TYPE_CHECKING:
    from .cluster import SimCluster


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
