"""The sbatch script: a Ray cluster in the allocation (head on the first node), one command on it.

The script follows Ray's guide for Slurm: the batch script runs on the first node of the allocation and
starts the head there (``ray start --head --block`` in the background), ``srun`` starts one worker on
each other node, and the command runs once every node has joined, with ``RAY_ADDRESS`` set, so a stage
joins the cluster as under ``ray job submit``. Each node offers Ray the CPUs and GPUs Slurm gave the job
there (``SLURM_CPUS_ON_NODE``, ``CUDA_VISIBLE_DEVICES``). Ray is locked with a token made for the job
(``RAY_AUTH_MODE=token``, a 0600 file in the job's log folder, removed at the end); the dashboard
listens on the head's loopback, and every Ray port is picked free on its node, since other jobs may
share it. ``--signal=B:USR1@<grace>`` asks the command to stop (SIGINT, as Ctrl-C) before the time
limit, so it gives its folder leases back and the next job of a chain starts at once; Ray is stopped on
exit (a trap), by ending the processes this job started, never with ``ray stop``.

Only the header (``#SBATCH`` lines) and the settings block are generated; the rest is fixed text.
``python -m mixture_ray.slurm.script`` prints the example kept in ``jobs/slurm/pipeline.sbatch``.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

#: Log folder, script and job folders of ``mixture-ray slurm`` when ``--out-dir`` is not given.
DEFAULT_OUT_DIR = Path("slurm-logs")


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """What one sbatch script asks Slurm for and runs.

    Attributes:
        command: the arguments after ``python -m mixture_ray`` (``pipeline --file FILE``, ``tile ...``).
        job_name: Slurm's job name (``--job-name``); also names the log files.
        nodes: nodes of the allocation: the head on the first, a Ray worker on each other.
        cpus_per_task: CPUs per node (one task per node), all offered to Ray.
        gpus_per_node: GPUs per node (``--gpus-per-node``); 0 asks for none.
        time: wall-time limit (``--time``, e.g. ``04:00:00``).
        out_dir: folder of the Slurm log (``<job_name>-<id>.out``) and each job's folder (token, Ray logs).
        grace_s: seconds before the time limit at which the command is asked to stop; 0 = not asked.
        partition: ``--partition`` (None: the cluster's default).
        account: ``--account`` (None: the user's default).
        mem: ``--mem`` per node (``64G``; None: the partition's default).
        workdir: folder the command runs in (None: the folder sbatch was called from).
        python_env: virtual environment (or conda prefix) with mixture_ray installed, activated first.
        env: variables exported before the command (``MIXTURE_RAY_ROOT``, ...).
    """

    command: tuple[str, ...]
    job_name: str = "mixture-ray"
    nodes: int = 1
    cpus_per_task: int = 8
    gpus_per_node: int = 0
    time: str = "04:00:00"
    out_dir: Path = DEFAULT_OUT_DIR
    grace_s: int = 180
    partition: str | None = None
    account: str | None = None
    mem: str | None = None
    workdir: Path | None = None
    python_env: Path | None = None
    env: tuple[tuple[str, str], ...] = ()


def render(job: SlurmJob) -> str:
    """The sbatch script of ``job`` (``#SBATCH`` header, settings, the fixed cluster part).

    Args:
        job: what to ask Slurm for and what to run.

    Returns:
        The script's text.
    """
    return "\n".join([*_header(job), "", *_settings(job), "", _BODY])


def _header(job: SlurmJob) -> list[str]:
    sbatch = [f"--job-name={job.job_name}", f"--nodes={job.nodes}", "--ntasks-per-node=1",
              f"--cpus-per-task={job.cpus_per_task}"]
    if job.gpus_per_node:
        sbatch.append(f"--gpus-per-node={job.gpus_per_node}")
    if job.mem:
        sbatch.append(f"--mem={job.mem}")
    sbatch.append(f"--time={job.time}")
    sbatch += [f"--{key}={value}" for key, value in (("partition", job.partition), ("account", job.account))
               if value]
    sbatch.append(f"--output={job.out_dir / '%x-%j.out'}")
    lines = [
        "#!/bin/bash",
        "# A Ray cluster inside this Slurm allocation, then one mixture-ray command on it (docs/slurm.md).",
        "# Written by `mixture-ray slurm`: edit the #SBATCH lines for your cluster, then `sbatch <file>`.",
        "# The head runs on the first node and a Ray worker on each other node, with the CPUs and GPUs",
        "# Slurm gives the job there. A rerun (the next job of a chain) skips every slide already committed.",
        *(f"#SBATCH {option}" for option in sbatch),
    ]
    if job.grace_s:
        lines += [f"# SIGUSR1 {job.grace_s} s before the time limit: the command stops, keeping its commits.",
                  f"#SBATCH --signal=B:USR1@{job.grace_s}"]
    return lines


def _settings(job: SlurmJob) -> list[str]:
    workdir = shlex.quote(str(job.workdir)) if job.workdir else '"$SLURM_SUBMIT_DIR"'
    lines = [
        "set -euo pipefail",
        "# ---- what runs (edit here) --------------------------------------------------------------------",
        f"cd {workdir}  # relative paths in the pipeline file and below are taken from here",
    ]
    if job.python_env:
        lines.append(f"source {shlex.quote(str(job.python_env / 'bin' / 'activate'))}"
                     "  # python and ray with mixture_ray installed")
    else:
        lines.append("# source /path/to/venv/bin/activate  # python and ray with mixture_ray installed")
    lines += [f"export {key}={shlex.quote(value)}" for key, value in job.env]
    lines += [
        f"COMMAND=(python -m mixture_ray {' '.join(shlex.quote(word) for word in job.command)})",
        f"LOG_DIR={shlex.quote(str(job.out_dir))}  # this job's folder: $LOG_DIR/<job name>-<job id>/",
    ]
    return lines


_BODY = r"""# ---- the Ray cluster (nothing to edit below) ---------------------------------------------------
JOB_DIR="$(realpath -m "$LOG_DIR")/$SLURM_JOB_NAME-$SLURM_JOB_ID"
mkdir -p "$JOB_DIR"
export RAY_TMP="/tmp/ray-$SLURM_JOB_ID"  # Ray's socket paths must stay short
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0  # at the end there is nothing to drain: stop at once
# Ray's default ports may be taken by another job on the same node: each port is picked free there.
export FREE_PORT='import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'

gpus_here() {  # the GPUs Slurm gave this job on this node
  local ids="${CUDA_VISIBLE_DEVICES:-}"
  if [[ -z "$ids" || "$ids" == NoDevFiles ]]; then echo 0; else echo "$ids" | tr ',' '\n' | grep -c .; fi
}

start_worker() {  # run by srun on each node after the first
  ray start --address="$RAY_ADDRESS" --num-cpus="$SLURM_CPUS_ON_NODE" --num-gpus="$(gpus_here)" \
    --temp-dir="$RAY_TMP" --dashboard-agent-listen-port="$(python -c "$FREE_PORT")" \
    --metrics-export-port="$(python -c "$FREE_PORT")" --disable-usage-stats --block
  rm -rf "$RAY_TMP"
}

# Token authentication: a new token for this job only, readable by its owner alone.
unset RAY_AUTH_TOKEN  # a token of the submitting shell would take precedence
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$JOB_DIR/ray_auth_token"
(umask 077 && python -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_AUTH_TOKEN_PATH")

mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_ip=$(hostname --ip-address | awk '{print $1}')
if [[ ${#nodes[@]} -gt 1 && "$head_ip" == 127.* ]]; then head_ip=$(hostname -I | awk '{print $1}'); fi
head_port=$(python -c "$FREE_PORT")
export RAY_ADDRESS="$head_ip:$head_port"

ray_pids=()
stop_ray() {  # end the Ray processes this job started (never `ray stop`: it ends every Ray of the user)
  set +e; trap - EXIT USR1 TERM
  [[ ${#ray_pids[@]} -eq 0 ]] || kill -TERM "${ray_pids[@]}" 2>/dev/null || true
  for _ in $(seq 30); do
    alive=0; for pid in "${ray_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 1 ]] || break; sleep 1
  done
  [[ ${#ray_pids[@]} -eq 0 ]] || kill -KILL "${ray_pids[@]}" 2>/dev/null || true
  rm -rf "$RAY_AUTH_TOKEN_PATH" "$RAY_TMP" 2>/dev/null
  echo "[slurm] Ray stopped; logs in $JOB_DIR"
}
trap stop_ray EXIT
trap 'echo "[slurm] time limit near before the command started"; exit 130' USR1 TERM

echo "[slurm] job $SLURM_JOB_ID: Ray head on ${nodes[0]} ($RAY_ADDRESS), $((${#nodes[@]} - 1)) worker node(s)"
ray start --head --node-ip-address="$head_ip" --port="$head_port" \
  --num-cpus="$SLURM_CPUS_ON_NODE" --num-gpus="$(gpus_here)" --temp-dir="$RAY_TMP" \
  --dashboard-host=127.0.0.1 --dashboard-port="$(python -c "$FREE_PORT")" \
  --ray-client-server-port="$(python -c "$FREE_PORT")" \
  --dashboard-agent-listen-port="$(python -c "$FREE_PORT")" \
  --metrics-export-port="$(python -c "$FREE_PORT")" --disable-usage-stats --block \
  > "$JOB_DIR/ray-head.log" 2>&1 &
ray_pids+=($!)
# The head first (its port answers), then a worker on each other node, then wait for all of them.
python -m mixture_ray.slurm.nodes --address "$RAY_ADDRESS" --count 0 --log "$JOB_DIR/ray-head.log"
for node in "${nodes[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" bash -c "$(declare -f gpus_here start_worker); start_worker" \
    > "$JOB_DIR/ray-worker-$node.log" 2>&1 &
  ray_pids+=($!)
done
python -m mixture_ray.slurm.nodes --address "$RAY_ADDRESS" --count "${#nodes[@]}" --timeout 300 \
  --log "$JOB_DIR/ray-head.log"

# The command, in the background so that the signals below reach it; SIGINT stops it as Ctrl-C does.
(trap - INT && exec "${COMMAND[@]}") &
command_pid=$!
ask_to_stop() {
  echo "[slurm] time limit near: asking the command to stop (committed slides are kept; rerun to resume)"
  kill -INT "$command_pid" 2>/dev/null || true
}
trap ask_to_stop USR1 TERM
while :; do
  status=0
  wait "$command_pid" || status=$?
  kill -0 "$command_pid" 2>/dev/null || break  # a trapped signal ends `wait` early: wait again
done
echo "[slurm] ${COMMAND[*]} exited with status $status"
exit "$status"
"""


def example() -> SlurmJob:
    """The job of ``jobs/slurm/pipeline.sbatch``: ``jobs/slurm/pipeline.yaml`` on 2 GPU nodes."""
    return SlurmJob(command=("pipeline", "--file", "jobs/slurm/pipeline.yaml"), job_name="mixture-ray",
                    nodes=2, cpus_per_task=16, gpus_per_node=1, time="04:00:00", partition="gpu",
                    python_env=Path(".venv"),
                    env=(("MIXTURE_RAY_ROOT", "/mnt/shared/mixture_ray"),))


if __name__ == "__main__":
    sys.stdout.write(render(example()))
