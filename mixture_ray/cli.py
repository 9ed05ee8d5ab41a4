"""One entry point: ``mixture-ray <stage> [--config FILE.yaml] [--set key=value ...] [--key value]``.

Generated from the stage list (:mod:`mixture_ray.stages`): every config key of a stage is also a
``--key`` flag, and ``mixture-ray <stage> --help`` lists them with their defaults. The stage's
``run(cfg)`` returns a report whose ``summary()`` is printed. Exit status: 0 complete, 2 bad
input or config, 3 partial (some items failed; see the stage's failures table), 1 unexpected error.
``mixture-ray status DIR`` (:mod:`mixture_ray.status`) takes no config: it reads a run folder's markers.
``mixture-ray slurm`` (:mod:`mixture_ray.slurm`) writes and submits an sbatch script that runs a pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TYPE_CHECKING, Any

from mixture_ray.config import load_config, option_keys
from mixture_ray.errors import MixtureRayError
from mixture_ray.slurm import command as slurm_command
from mixture_ray.stages import BY_NAME, STAGES, StageSpec
from mixture_ray.status import command as status_command

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_stage_options(parser: argparse.ArgumentParser, config: type) -> None:
    parser.add_argument("--config", help="YAML file of config keys for this stage")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's own log lines and progress bars (default: they go to <out_dir>/_logs/ray.log)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable); values are YAML, e.g. magnifications=[5,20]",
    )
    for key, (_, field) in option_keys(config).items():
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.default_factory is not dataclasses.MISSING:
            default = list(field.default_factory())
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        text = field.metadata.get("help", "")
        text += " (required)" if required else f" (default: {default})"
        parser.add_argument(_flag(key), dest=f"opt_{key}", metavar="VALUE", help=text)


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """One sub-command per stage; the flags of ``chosen`` (all stages when None) are added.

    A stage named with two words (``explain fit``) is a sub-command of the first word.

    Args:
        chosen: the verb being run; only its config module is imported (fast start, clear help).

    Returns:
        The argument parser.
    """
    parser = argparse.ArgumentParser(prog="mixture-ray", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for spec in STAGES:
        verb, _, action = spec.name.partition(" ")
        where = sub
        if action:
            if verb not in groups:
                words = [s.name.partition(" ")[2] for s in STAGES if s.name.startswith(verb + " ")]
                group = sub.add_parser(verb, help=f"{verb} {'|'.join(words)}")
                groups[verb] = group.add_subparsers(dest="action", required=True, metavar="ACTION")
            where = groups[verb]
        name = action or verb
        if chosen is None or spec.name == chosen:
            config = spec.config()
            p = where.add_parser(name, help=spec.help, description=(config.__doc__ or "").strip())
            _add_stage_options(p, config)
        else:
            where.add_parser(name, help=spec.help)
    status_command.configure(sub.add_parser(status_command.VERB, help=status_command.HELP,
                                            description=status_command.HELP))
    slurm_command.configure(sub.add_parser(slurm_command.VERB, help=slurm_command.HELP,
                                           description=slurm_command.HELP))
    return parser


def chosen_stage(argv: Sequence[str]) -> str | None:
    """The stage named by the first one or two words of ``argv`` (None when there is none)."""
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in BY_NAME:
            return name
    return None


def run_stage(spec: StageSpec, cfg: Any, *, verbose: bool = False) -> int:
    """Run one stage with its Ray logs routed, print its summary; returns the exit status.

    Args:
        spec: the stage.
        cfg: its validated config.
        verbose: keep Ray's own console output.

    Returns:
        0 when the report is complete, 3 when some items failed.
    """
    from mixture_ray.ray_runtime import route_ray_logs
    from mixture_ray.store.folder import FAILURES

    out_dir = getattr(cfg, "out_dir", None)
    route_ray_logs(out_dir / "_logs" / "ray.log" if out_dir is not None else None, verbose=verbose)
    report = spec.runner()(cfg)
    print(report.summary())
    if report.complete:
        return EXIT_OK
    where = getattr(report, "out_dir", None)
    table = where / FAILURES if where is not None else "the stage's failures table"
    print(f"{len(report.failures)} items failed; see {table}:", file=sys.stderr)
    print("\n".join(report.failure_lines()), file=sys.stderr)
    return EXIT_PARTIAL


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0 complete, 2 bad input or config, 3 partial, 130 interrupted).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [status_command.VERB]:  # reads a run folder; no config, no Ray
        return status_command.main(argv[1:])
    if argv[:1] == [slurm_command.VERB]:  # writes and submits an sbatch script; no config, no Ray
        return slurm_command.main(argv[1:])
    args = build_parser(chosen_stage(argv)).parse_args(argv)
    action = getattr(args, "action", None)
    spec = BY_NAME[f"{args.stage} {action}" if action else args.stage]
    config = spec.config()
    overrides = list(args.set)
    for key in option_keys(config):
        value = getattr(args, f"opt_{key}")
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        cfg: Any = load_config(config, args.config, overrides)
        return run_stage(spec, cfg, verbose=args.verbose)
    except MixtureRayError as exc:
        print(f"mixture-ray {spec.name}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"mixture-ray {spec.name}: interrupted; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
