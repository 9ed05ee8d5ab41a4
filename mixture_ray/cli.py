"""One entry point: ``mixture-ray <stage> [--config FILE.yaml] [--set key=value ...] [--key value]``.

Every config key of a stage is also a ``--key`` flag; ``mixture-ray <stage> --help`` lists them
with their defaults. Exit status: 0 complete, 2 bad input or config, 3 partial (some items
failed; see the stage's failures table), 1 unexpected error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mixture_ray.config import DemoConfig, SynthConfig, TileConfig, config_fields, load_config
from mixture_ray.errors import MixtureRayError

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3


def run_synth(cfg: SynthConfig) -> int:
    """Write a synthetic cohort."""
    from mixture_ray.synth.cohort import write_cohort

    cohort = write_cohort(cfg)
    print(f"synthetic cohort written to {cfg.out_dir}: {cohort.n_cases} cases, {cohort.n_slides} slides")
    print(f"  manifest: {cohort.manifest}\n  clinical: {cohort.clinical}")
    return EXIT_OK


def run_tile(cfg: TileConfig) -> int:
    """Tile slides (or import an image folder) into a Parquet tile store."""
    if cfg.from_images is not None:
        from mixture_ray.tiling.images import import_image_folder

        report = import_image_folder(cfg)
    else:
        from mixture_ray.tiling.pipeline import run_tiling

        report = run_tiling(cfg)
    print(
        f"tile store {report.out_dir}: {report.tiles_written} tiles from {report.slides_committed} "
        f"items ({report.slides_skipped} already done before this run)"
    )
    if not report.complete:
        print(
            f"{len(report.failures)} of {report.slides_requested} items failed; "
            f"see {report.out_dir / 'failures.parquet'}:",
            file=sys.stderr,
        )
        for failure in report.failures[:20]:
            print(f"  {failure.item_id}: {failure.error}", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def run_demo(cfg: DemoConfig) -> int:
    """Run every stage on a small synthetic cohort."""
    from mixture_ray.demo import run_demo as demo

    return demo(cfg)


@dataclasses.dataclass(frozen=True)
class Stage:
    """A CLI verb: its config class and the function that runs it."""

    config: type
    run: Callable[[Any], int]
    summary: str


STAGES: dict[str, Stage] = {
    "synth": Stage(SynthConfig, run_synth, "write a synthetic cohort with planted findings"),
    "tile": Stage(TileConfig, run_tile, "tile slides or an image folder into Parquet"),
    "demo": Stage(DemoConfig, run_demo, "run the pipeline on a small synthetic cohort (local Ray)"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: one sub-command per stage, one flag per config key."""
    parser = argparse.ArgumentParser(prog="mixture-ray", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, stage in STAGES.items():
        doc = (stage.config.__doc__ or "").strip()
        p = sub.add_parser(name, help=stage.summary, description=doc)
        p.add_argument("--config", help="YAML file of config keys for this stage")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one config key (repeatable); values are YAML, e.g. magnifications=[5,20]",
        )
        for key, (_, field) in config_fields(stage.config).items():
            default = field.default if field.default is not dataclasses.MISSING else None
            if field.default_factory is not dataclasses.MISSING:
                default = list(field.default_factory())
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            text = field.metadata.get("help", "")
            text += " (required)" if required else f" (default: {default})"
            p.add_argument(_flag(key), dest=f"opt_{key}", metavar="VALUE", help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    stage = STAGES[args.stage]
    overrides = list(args.set)
    for key in config_fields(stage.config):
        value = getattr(args, f"opt_{key}")
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        cfg: Any = load_config(stage.config, args.config, overrides)
        return stage.run(cfg)
    except MixtureRayError as exc:
        print(f"mixture-ray {args.stage}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"mixture-ray {args.stage}: interrupted; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
