"""Fault injection for reliability tests: crash a process once at a named point.

Set ``MIXTURE_RAY_FAULTS`` to a folder (for Ray workers, through the job's runtime_env) and put
an empty file named after a point (e.g. ``tile.pixels``) in it. The first process that reaches
that point claims the file by renaming it and exits at once, as a killed worker would; later
arrivals (Ray's retry) run normally. Without the variable this is a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "MIXTURE_RAY_FAULTS"


def crash_once(point: str) -> None:
    """Exit the current process abruptly the first time ``point`` is reached under injection.

    Args:
        point: the name of the place, e.g. ``tile.pixels`` or ``pretrain.step-5``.

    Returns:
        None; without the variable or the token this is a no-op.
    """
    folder = os.environ.get(ENV)
    if not folder:
        return
    token = Path(folder) / point
    try:
        os.rename(token, token.with_name(f"{point}.claimed-{os.getpid()}"))
    except FileNotFoundError:
        return
    os._exit(137)
