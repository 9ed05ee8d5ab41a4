"""`mixture-ray slurm`: write the sbatch script of a pipeline (or one stage) and optionally submit it.

``mixture-ray slurm --pipeline jobs/pipeline.yaml --nodes 2 --gpus-per-node 1 --time 04:00:00 --submit
--resume-chain 3`` checks every stage's config (as ``mixture-ray pipeline`` does before it starts),
writes ``<out-dir>/<job-name>.sbatch`` (:mod:`mixture_ray.slurm.script`) and submits it. With
``--resume-chain N`` it submits N jobs, each after the one before with ``--dependency=afternotok:<id>``:
the next job starts only when the one before did not finish (time limit, stopped, failed) and resumes
from the committed slides; a job that finishes the pipeline cancels the rest (``--kill-on-invalid-dep``).

Exit status: 0 written (and submitted), 2 bad arguments, a config that does not validate, or an
sbatch that refused the script (its message is printed).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mixture_ray.slurm.script import DEFAULT_OUT_DIR, SlurmJob, render

if TYPE_CHECKING:
    from collections.abc import Sequence

VERB = "slurm"
HELP = "write (and submit) an sbatch script: a Ray cluster in a Slurm allocation runs a pipeline or a stage"

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


class SlurmError(RuntimeError):
    """Bad arguments, a config that does not validate, or sbatch refused the script."""


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the verb's arguments to ``parser`` (the CLI's sub-command, or :func:`main`'s own parser)."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--pipeline", type=Path, metavar="FILE", help="pipeline YAML file to run (`mixture-ray "
                      "pipeline --file`)")
    what.add_argument("--stage", metavar="VERB", help="one stage to run instead, e.g. tile or embed")
    parser.add_argument("--config", type=Path, metavar="FILE", help="the stage's YAML config (with --stage)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key of the stage (with --stage; repeatable)")
    parser.add_argument("--from-stage", type=int, default=1, metavar="N",
                        help="start the pipeline at this stage number (default: 1)")
    slurm = parser.add_argument_group("the allocation (the #SBATCH lines)")
    slurm.add_argument("--nodes", type=int, default=1, help="nodes: head on the first, workers on the others "
                       "(default: 1)")
    slurm.add_argument("--cpus-per-task", type=int, default=8, metavar="N",
                       help="CPUs per node, all given to Ray (default: 8)")
    slurm.add_argument("--gpus-per-node", type=int, default=0, metavar="N", help="GPUs per node (default: 0)")
    slurm.add_argument("--mem", help="memory per node, e.g. 64G (default: the partition's)")
    slurm.add_argument("--time", default="04:00:00", help="wall-time limit of each job (default: 04:00:00)")
    slurm.add_argument("--partition", help="partition (default: the cluster's default)")
    slurm.add_argument("--account", help="account to charge (default: yours)")
    slurm.add_argument("--job-name", default="mixture-ray", help="job name (default: mixture-ray)")
    slurm.add_argument("--grace", type=int, default=180, metavar="S",
                       help="ask the command to stop S seconds before the time limit (0 = no; default: 180)")
    place = parser.add_argument_group("files and environment")
    place.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                       help=f"folder of the script, the Slurm logs and each job's Ray logs (default: "
                            f"{DEFAULT_OUT_DIR}); on storage every node sees")
    place.add_argument("--script", type=Path,
                       help="where to write the script (default: <out-dir>/<job-name>.sbatch)")
    place.add_argument("--workdir", type=Path, default=Path.cwd(),
                       help="folder the command runs in (default: the current one)")
    place.add_argument("--python-env", type=Path, default=_current_env(),
                       help="virtual environment activated in the job (default: the one running this)")
    place.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                       help="export a variable in the job, e.g. MIXTURE_RAY_ROOT=/scratch/run (repeatable)")
    submit = parser.add_argument_group("submitting")
    submit.add_argument("--submit", action="store_true", help="submit the script with sbatch")
    submit.add_argument("--resume-chain", type=int, default=1, metavar="N",
                        help="submit N jobs, each resuming the one before if it did not finish (default: 1)")
    submit.add_argument("--dependency", metavar="JOBID", help="start the first job after this one ends "
                        "(afterany), e.g. the last job of an earlier chain")
    return parser


def main(argv: Sequence[str]) -> int:
    """Write the sbatch script named in ``argv`` and submit it when asked.

    Args:
        argv: the arguments after ``slurm``.

    Returns:
        The exit status: 0 written (and submitted), 2 bad arguments, config or sbatch refusal.
    """
    parser = configure(argparse.ArgumentParser(prog=f"mixture-ray {VERB}", description=HELP))
    args = parser.parse_args(list(argv))
    from mixture_ray.errors import MixtureRayError

    try:
        job = build_job(args)
        script = (args.script or args.out_dir / f"{args.job_name}.sbatch").absolute()
        job.out_dir.mkdir(parents=True, exist_ok=True)  # Slurm does not create the --output folder
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(render(job))
        print(f"[slurm] wrote {script}")
        if not (args.submit or args.resume_chain > 1):
            print(f"[slurm] submit with: sbatch {script}")
            return 0
        ids = submit_chain(script, count=args.resume_chain, after=args.dependency)
    except (SlurmError, MixtureRayError) as exc:
        print(f"mixture-ray {VERB}: error: {exc}", file=sys.stderr)
        return 2
    for number, job_id in enumerate(ids, start=1):
        after = f" (runs if job {ids[number - 2]} does not finish)" if number > 1 else ""
        print(f"[slurm] submitted job {job_id}{after}; log {job.out_dir / f'{args.job_name}-{job_id}.out'}")
    print(f"[slurm] watch: squeue -j {','.join(ids)}; stop: scancel {' '.join(ids)}")
    return 0


def build_job(args: argparse.Namespace) -> SlurmJob:
    """Check the arguments and the configs they name; the job with absolute paths.

    Raises:
        SlurmError: a bad count, time, variable or option combination.
        MixtureRayError: the pipeline file or the stage's config does not validate.
    """
    for name in ("nodes", "cpus_per_task", "resume_chain", "from_stage"):
        if getattr(args, name) < 1:
            raise SlurmError(f"--{name.replace('_', '-')}: must be >= 1 (got {getattr(args, name)})")
    if args.gpus_per_node < 0 or args.grace < 0:
        raise SlurmError("--gpus-per-node and --grace: must be >= 0")
    limit = time_limit_s(args.time)
    if args.grace >= limit:
        raise SlurmError(f"--grace {args.grace}: must be shorter than --time {args.time} ({limit} s); "
                         "0 turns the early stop off")
    env = []
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SlurmError(f"--env {item!r}: expected NAME=VALUE")
        env.append((key, value))
    return SlurmJob(command=_command(args), job_name=args.job_name, nodes=args.nodes,
                    cpus_per_task=args.cpus_per_task, gpus_per_node=args.gpus_per_node, time=args.time,
                    out_dir=args.out_dir.absolute(), grace_s=args.grace, partition=args.partition,
                    account=args.account, mem=args.mem, workdir=args.workdir.absolute(),
                    python_env=args.python_env.absolute() if args.python_env else None, env=tuple(env))


def time_limit_s(text: str) -> int:
    """Seconds of a Slurm time limit: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``."""
    found = _TIME.match(text)
    if found is None:
        raise SlurmError(f"--time {text!r}: expected minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]")
    days, first, second, third = (int(part) if part else 0 for part in found.groups())
    if found.group(1):  # D-H[:M[:S]]
        return ((days * 24 + first) * 60 + second) * 60 + third
    if found.group(4):  # H:M:S
        return (first * 60 + second) * 60 + third
    return first * 60 + second  # M or M:S


def _command(args: argparse.Namespace) -> tuple[str, ...]:
    """The arguments after ``python -m mixture_ray``, once the configs they name validate."""
    from mixture_ray.config import load_config
    from mixture_ray.stages import BY_NAME

    if args.pipeline is not None:
        from mixture_ray.pipeline.config import PipelineConfig

        if args.config is not None or args.set:
            raise SlurmError("--config and --set go with --stage; put a pipeline's keys in its file")
        pipeline = args.pipeline.absolute()
        load_config(PipelineConfig, None, {"file": pipeline, "from_stage": args.from_stage})
        extra = ("--from-stage", str(args.from_stage)) if args.from_stage > 1 else ()
        return ("pipeline", "--file", str(pipeline), *extra)
    if args.stage not in BY_NAME or args.stage in ("demo", "pipeline"):
        verbs = [name for name in BY_NAME if name not in ("demo", "pipeline")]
        raise SlurmError(f"--stage {args.stage!r}: expected one of {', '.join(verbs)}")
    config = args.config.absolute() if args.config is not None else None
    load_config(BY_NAME[args.stage].config(), config, list(args.set))
    words = (*args.stage.split(), *(("--config", str(config)) if config else ()))
    return (*words, *(word for item in args.set for word in ("--set", item)))


def submit_chain(script: Path, *, count: int, after: str | None) -> list[str]:
    """Submit ``script`` ``count`` times, each job after the one before unless that one finished.

    Args:
        script: the sbatch script.
        count: jobs in the chain.
        after: a job id the first job waits for (``afterany``), or None.

    Returns:
        The job ids in order.

    Raises:
        SlurmError: sbatch is missing or refused a job (its message is included).
    """
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SlurmError("sbatch not found: submit from a Slurm login node, or run the script written above "
                         "there with `sbatch <script>`")
    ids: list[str] = []
    for number in range(count):
        options = ["--parsable"]
        if ids:
            options += [f"--dependency=afternotok:{ids[-1]}", "--kill-on-invalid-dep=yes"]
        elif after:
            options.append(f"--dependency=afterany:{after}")
        done = subprocess.run([sbatch, *options, str(script)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            already = f" (jobs {', '.join(ids)} were submitted)" if ids else ""
            raise SlurmError(f"sbatch refused job {number + 1} of {count}{already}: "
                             f"{(done.stderr or done.stdout).strip()}")
        ids.append(done.stdout.strip().split(";")[0])
    return ids


def _current_env() -> Path | None:
    """The virtual environment running this command (None outside one)."""
    return Path(sys.prefix) if sys.prefix != sys.base_prefix else None
