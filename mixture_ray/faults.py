"""Fault injection for reliability tests: crash a process, or fail a write, once at a named point.

Set ``MIXTURE_RAY_FAULTS`` to a folder (for Ray workers, through the job's runtime_env) and put
a file named after a point (e.g. ``tile.pixels``) in it. The first process that reaches that point
claims the file by renaming it and fails there; later arrivals (Ray's retry, the next run) run
normally. :func:`crash_once` exits at once, as a killed worker would; :func:`fail_once` raises the
``OSError`` whose errno name the file holds (``ENOSPC``: a full disk; empty: ``EIO``), as a failed
write would; :func:`hold_once` stalls for the seconds the file holds, as a run that outlasts its
wall time would. Without the variable this is a no-op.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

ENV = "MIXTURE_RAY_FAULTS"


def _claim(point: str) -> Path | None:
    """The claimed token of ``point`` (renamed, so no other process claims it); None when not injected."""
    folder = os.environ.get(ENV)
    if not folder:
        return None
    token = Path(folder) / point
    claimed = token.with_name(f"{point}.claimed-{os.getpid()}")
    try:
        os.rename(token, claimed)
    except FileNotFoundError:
        return None
    return claimed


def crash_once(point: str) -> None:
    """Exit the current process abruptly the first time ``point`` is reached under injection.

    Args:
        point: the name of the place, e.g. ``tile.pixels`` or ``pretrain.step-5``.

    Returns:
        None; without the variable or the token this is a no-op.
    """
    if _claim(point) is not None:
        os._exit(137)


def hold_once(point: str) -> None:
    """Stall the current process the first time ``point`` is reached under injection.

    Args:
        point: the name of the place, e.g. ``tile.driver-hold`` (after a driver's commit).

    Returns:
        None, after sleeping the seconds the token file holds (empty: 600); without the variable
        or the token this is a no-op.
    """
    claimed = _claim(point)
    if claimed is not None:
        text = claimed.read_text().strip()
        time.sleep(float(text) if text else 600.0)


def fail_once(point: str) -> None:
    """Raise ``OSError`` the first time ``point`` is reached under injection.

    Args:
        point: the name of the place, e.g. ``write._COMMITTED.json`` (a local store's commit marker).

    Returns:
        None; without the variable or the token this is a no-op.

    Raises:
        OSError: with the errno named in the token file (``ENOSPC``, ``EIO``, ...; empty: ``EIO``).
    """
    claimed = _claim(point)
    if claimed is None:
        return
    name = claimed.read_text().strip() or "EIO"
    code = getattr(errno, name, None)
    if not isinstance(code, int):
        raise ValueError(f"fault {point}: {name!r} is not an errno name (e.g. ENOSPC, EIO)")
    raise OSError(code, os.strerror(code), point)
