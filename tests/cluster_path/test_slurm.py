"""`mixture-ray slurm` on a real one-node Slurm: a time-limited job, then the next job of the chain resumes.

The session fixture starts Debian's munged, slurmctld and slurmd on this machine (one node, loopback,
free ports, every file under a temporary folder; nothing in /etc is changed). Where the daemons are
missing it installs them with apt-get when running as root, and otherwise skips with the reason.
`mixture-ray slurm --submit --resume-chain 2` submits a tile -> embed -> cluster pipeline twice, the
second job after the first with ``afternotok``. Once the first job has committed a slide, the test
shortens its time limit to one minute (``scontrol update ... TimeLimit=1``), so Slurm ends it as it
ends a job out of wall time (state TIMEOUT); the second job then starts, skips the slides already
committed and finishes every stage. A job sent the warning signal of ``--grace`` (``scancel --batch
--signal=USR1``) stops its command as Ctrl-C does and gives its folder leases back. The tests without
the marker check the script and the command.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from mixture_ray.config import build_config
from mixture_ray.slurm import command as slurm_command
from mixture_ray.slurm.script import SlurmJob, example, render
from mixture_ray.store.folder import StageFolder, committed_files
from mixture_ray.synth.cohort import write_cohort
from mixture_ray.synth.config import SynthConfig
from tests.cluster_path.support import REPO, assert_complete, free_ports

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")
PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")


# ---------------------------------------------------------------------------------- without Slurm
def test_example_script_is_up_to_date() -> None:
    kept = REPO / "jobs" / "slurm" / "pipeline.sbatch"
    assert kept.read_text() == render(example()), \
        "regenerate it: python -m mixture_ray.slurm.script > jobs/slurm/pipeline.sbatch"


def test_script_asks_for_the_allocation_and_locks_ray() -> None:
    text = render(SlurmJob(command=("tile", "--config", "/x/tile.yaml"), nodes=3, cpus_per_task=4,
                           gpus_per_node=2, time="1-00:00:00", partition="gpu", mem="64G",
                           out_dir=Path("/logs"), grace_s=120, env=(("MIXTURE_RAY_ROOT", "/scratch/a b"),)))
    for line in ("#SBATCH --nodes=3", "#SBATCH --cpus-per-task=4", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --time=1-00:00:00", "#SBATCH --partition=gpu", "#SBATCH --mem=64G",
                 "#SBATCH --output=/logs/%x-%j.out", "#SBATCH --signal=B:USR1@120",
                 "export MIXTURE_RAY_ROOT='/scratch/a b'",
                 "COMMAND=(python -m mixture_ray tile --config /x/tile.yaml)",
                 "export RAY_AUTH_MODE=token", "--dashboard-host=127.0.0.1", "umask 077"):
        assert line in text, line
    assert "ray stop" not in text.replace("never `ray stop`", "")
    done = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_command_checks_its_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert slurm_command.time_limit_s("90") == 5400
    assert slurm_command.time_limit_s("2:30") == 150
    assert slurm_command.time_limit_s("04:00:00") == 14400
    assert slurm_command.time_limit_s("1-02") == 93600
    out = ["--out-dir", str(tmp_path)]
    assert slurm_command.main(["--stage", "tile", "--time", "4h", *out]) == 2
    assert "--time '4h'" in capsys.readouterr().err
    assert slurm_command.main(["--pipeline", str(tmp_path / "none.yaml"), *out]) == 2
    assert "none.yaml" in capsys.readouterr().err
    assert slurm_command.main(["--stage", "tile", "--time", "2", "--grace", "180", *out]) == 2
    assert "--grace 180" in capsys.readouterr().err
    assert slurm_command.main(["--stage", "tile", "--set", "tile_sise=3", *out]) == 2
    assert "tile_sise" in capsys.readouterr().err


def test_command_writes_the_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = slurm_command.main(["--stage", "tile", "--set", f"manifest={tmp_path}/m.csv",
                               "--set", f"out_dir={tmp_path}/tiles", "--nodes", "2", "--gpus-per-node", "1",
                               "--out-dir", str(tmp_path / "logs"), "--env", "MIXTURE_RAY_ROOT=/r"])
    assert code == 0
    script = tmp_path / "logs" / "mixture-ray.sbatch"
    assert f"[slurm] wrote {script}" in capsys.readouterr().out
    text = script.read_text()
    assert f"COMMAND=(python -m mixture_ray tile --set manifest={tmp_path}/m.csv" in text
    assert "#SBATCH --nodes=2" in text and "#SBATCH --gpus-per-node=1" in text


# ------------------------------------------------------------------------------------- with Slurm
class Slurm:
    """A one-node Slurm started by the fixture: its environment (``SLURM_CONF``) and a few queries."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def run(self, *command: str, timeout: float = 60) -> str:
        done = subprocess.run(list(command), env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        assert done.returncode == 0, f"{command}: {done.stderr}{done.stdout}"
        return done.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as key -> value (JobState, ExitCode, Dependency, ...)."""
        text = self.run("scontrol", "show", "job", "-o", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait_until_ended(self, job_id: str, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info["JobState"] not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
                return info
            assert time.monotonic() < deadline, f"job {job_id} still {info['JobState']} after {timeout:.0f} s"
            time.sleep(2)


def _install_or_skip() -> None:
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing) and cannot be installed here "
                    f"(needs root and apt-get): apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    still = [name for name in DAEMONS if shutil.which(name) is None]
    if done.returncode != 0 or still:
        pytest.skip(f"apt-get could not install Slurm ({', '.join(still)} missing): {done.stderr[-500:]}")


def _slurm_conf(root: Path, host: str) -> str:
    ctld_port, slurmd_port = free_ports(2)
    cpus = os.cpu_count() or 1
    return "\n".join([
        "ClusterName=mixtureray", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}", "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
        "CredType=cred/munge", f"AuthInfo=socket={root / 'munge' / 'munge.sock'}",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "MpiDefault=none", "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "SchedulerType=sched/backfill", "MinJobAge=600", "KillWait=20",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    """munged, slurmctld and slurmd of a one-node cluster, ended (with their jobs) after the session."""
    _install_or_skip()
    root = Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp"))
    for folder in ("state", "spool", "munge"):
        (root / folder).mkdir()
    (root / "munge").chmod(0o711)
    key = root / "munge" / "munge.key"
    key.touch(mode=0o600)
    key.write_bytes(os.urandom(1024))
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, host))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = root / "munge"
    commands = [
        ["munged", "-F", "--force", f"--socket={munge / 'munge.sock'}", f"--key-file={key}",
         f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'seed'}",
         f"--log-file={munge / 'log'}"],
        ["slurmctld", "-D", "-i"],
        ["slurmd", "-D"],
    ]
    started: list[subprocess.Popen[bytes]] = []
    try:
        for command in commands:
            log = (root / f"{command[0]}.out").open("wb")
            started.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))
            time.sleep(1)
        cluster = Slurm(root, env)
        deadline = time.monotonic() + 60
        while cluster.run("sinfo", "-h", "-o", "%T").strip() != "idle":
            if time.monotonic() > deadline:
                logs = "".join((root / f"{c[0]}.out").read_text(errors="replace")[-800:] for c in commands)
                pytest.fail(f"the Slurm node is not idle after 60 s:\n{logs}")
            time.sleep(1)
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["scancel", "--full", "--quiet", "--user", "root"], env=env, timeout=30,
                           check=False)
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _pipeline(root: Path, cases: int = 6, slide_px: int = 1024, tile_size: int = 32, tiles: int = 24) -> Path:
    """A small cohort and a tile -> embed -> cluster pipeline over it (relative output paths)."""
    cohort = write_cohort(build_config(SynthConfig, {
        "out_dir": root / "cohort", "n_cases": cases, "min_slides_per_case": 1, "max_slides_per_case": 1,
        "width": slide_px, "height": slide_px, "levels": 2, "seed": 3}))
    stages = [
        {"stage": "tile", "config": {"manifest": str(cohort.manifest), "out_dir": "run/tiles",
                                     "magnifications": [20], "tile_size": tile_size,
                                     "max_tiles_per_slide": tiles,
                                     "pool": {"workers": 1}, "seed": 0}},
        {"stage": "embed", "config": {"tiles": "run/tiles", "out_dir": "run/embeddings", "model": "random",
                                      "magnification": 20, "pool": {"workers": 1, "batch_size": 32}}},
        {"stage": "cluster", "config": {"embeddings": "run/embeddings", "out_dir": "run/clusters",
                                        "ks": [2, 3], "seed": 0}},
    ]
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return path


def _submit(slurm: Slurm, root: Path, *options: str) -> list[str]:
    """``mixture-ray slurm --pipeline <root>/pipeline.yaml ... --submit``; the job ids it printed."""
    submitted = subprocess.run(
        [sys.executable, "-m", "mixture_ray", "slurm", "--pipeline", str(root / "pipeline.yaml"),
         "--nodes", "1", "--cpus-per-task", str(os.cpu_count() or 1), "--job-name", "mr",
         "--out-dir", str(root / "logs"), "--submit", *options],
        cwd=root, env=slurm.env, capture_output=True, text=True, timeout=300, check=False)
    assert submitted.returncode == 0, submitted.stderr
    return re.findall(r"submitted job (\d+)", submitted.stdout)


def _wait_for_a_commit(slurm: Slurm, job_id: str, store: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not (store.exists() and StageFolder(store, stage="").committed_items()):
        state = slurm.job(job_id)["JobState"]
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {job_id} {state}, no slide committed"
        assert time.monotonic() < deadline, f"job {job_id} committed no slide in {timeout:.0f} s"
        time.sleep(1)


@pytest.mark.slurm
def test_warning_signal_stops_the_command_and_gives_the_folders_back(slurm: Slurm, tmp_path: Path) -> None:
    _pipeline(tmp_path, cases=2)
    (job_id,) = _submit(slurm, tmp_path, "--time", "15", "--grace", "60")
    _wait_for_a_commit(slurm, job_id, tmp_path / "run" / "tiles")
    # What `#SBATCH --signal=B:USR1@60` sends 60 s before the time limit, sent now.
    slurm.run("scancel", "--batch", "--signal=USR1", job_id)
    ended = slurm.wait_until_ended(job_id, timeout=180)
    log = (tmp_path / "logs" / f"mr-{job_id}.out").read_text()
    assert (ended["JobState"], ended["ExitCode"]) == ("FAILED", "130:0"), (ended, log[-3000:])
    assert "interrupted; rerun to resume" in log and "Ray stopped" in log
    assert not list((tmp_path / "run").glob("*/_LEASE.json")), "a folder lease was left behind"
    assert not (tmp_path / "logs" / f"mr-{job_id}" / "ray_auth_token").exists()


@pytest.mark.slurm
@pytest.mark.slow
def test_time_limited_job_is_resumed_by_the_next_job_of_the_chain(slurm: Slurm, tmp_path: Path) -> None:
    # Slurm's shortest time limit is one minute, checked every 30 s: however fast the machine, the
    # first job's driver stalls after its first tile commit (an injected hold, claimed once), so the
    # job outlasts its wall time as a long cohort would; the next job finds no hold.
    _pipeline(tmp_path, cases=8, slide_px=2048, tile_size=128, tiles=96)
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "tile.driver-hold").write_text("900")
    logs = tmp_path / "logs"
    first, second = _submit(slurm, tmp_path, "--time", "15", "--grace", "0", "--resume-chain", "2",
                            "--env", f"MIXTURE_RAY_FAULTS={faults}")
    assert slurm.job(second)["Dependency"] == f"afternotok:{first}(unfulfilled)"

    # Once the first job has committed a slide, its wall time runs out: Slurm ends it (TIMEOUT).
    tiles = tmp_path / "run" / "tiles"
    _wait_for_a_commit(slurm, first, tiles)
    slurm.run("scontrol", "update", f"JobId={first}", "TimeLimit=1")
    ended = slurm.wait_until_ended(first, timeout=240)
    log1 = (logs / f"mr-{first}.out").read_text()
    assert ended["JobState"] == "TIMEOUT", (ended, log1[-3000:])
    assert "[pipeline] stage 3/3 cluster: done" not in log1, "the pipeline ended before the time limit"
    assert not (faults / "tile.driver-hold").exists()  # the first job's driver took the hold

    # The second job starts (afternotok), skips what the first committed and finishes every stage.
    ended = slurm.wait_until_ended(second, timeout=420)
    log2 = (logs / f"mr-{second}.out").read_text()
    assert ended["JobState"] == "COMPLETED" and ended["ExitCode"] == "0:0", (ended, log2[-3000:])
    skipped = re.search(r"tile store .*\((\d+) already done before this run\)", log2)
    assert skipped is not None and int(skipped.group(1)) > 0, log2[-3000:]
    assert "Ray cluster up" in log2 and "[pipeline] stage 3/3 cluster: done" in log2
    slides = assert_complete(tiles)
    assert len(slides) == 8
    keys = pq.read_table([str(f) for f in committed_files(tiles)], columns=["slide_id", "x", "y"])
    assert keys.num_rows == sum(slides.values()) == len(set(zip(*keys.to_pydict().values(), strict=True)))
    assert assert_complete(tmp_path / "run" / "embeddings") == slides
    assert (tmp_path / "run" / "clusters" / "_SUCCESS").exists()
    for job_id in (first, second):  # the token and Ray's temp folder are gone with the job
        assert not (logs / f"mr-{job_id}" / "ray_auth_token").exists()
    assert not Path(f"/tmp/ray-{second}").exists()
