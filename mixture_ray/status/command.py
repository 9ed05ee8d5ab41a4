"""`mixture-ray status DIR [--json] [--depth N]`: print the state of every stage folder of a run folder.

Exit status: 0 when the table is printed (whatever the stages' states), 2 when ``DIR`` is not a folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

VERB = "status"
HELP = "one table of a run folder: each stage folder's state, items done and failed, when, settings, ETA"


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the verb's arguments to ``parser`` (the CLI's sub-command, or :func:`main`'s own parser)."""
    parser.add_argument("run_dir", metavar="DIR", type=Path, help="the run folder (or one stage folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--depth", type=int, default=4, metavar="N",
                        help="folder levels below DIR searched for stage folders (default: 4)")
    return parser


def main(argv: Sequence[str]) -> int:
    """Print the status of the run folder named in ``argv`` (the arguments after ``status``).

    Args:
        argv: ``DIR [--json] [--depth N]``.

    Returns:
        The exit status: 0 printed, 2 when DIR is not a folder.
    """
    from mixture_ray.errors import MixtureRayError
    from mixture_ray.status.read import read_status
    from mixture_ray.status.table import format_json, format_table

    parser = configure(argparse.ArgumentParser(prog=f"mixture-ray {VERB}", description=HELP))
    args = parser.parse_args(list(argv))
    now = time.time()
    try:
        rows = read_status(args.run_dir, depth=args.depth, now=now)
    except MixtureRayError as exc:
        print(f"mixture-ray {VERB}: error: {exc}", file=sys.stderr)
        return 2
    text = format_json if args.json else format_table
    print(text(args.run_dir, rows, now=now))
    return 0
