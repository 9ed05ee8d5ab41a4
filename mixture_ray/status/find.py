"""Find the stage folders of a run folder with as few file-system calls as a 10,000-slide run allows.

A stage folder is one that holds a marker the run report looks for
(:data:`mixture_ray.run_report.locate.MARKERS`). The search does not enter a stage folder: what is
inside one is its data (chunks, maps, montages) or its items (``explain/grids/<slide>/``), never
another stage's output, so a run's cost is one listing per plain folder, not one per slide. Hidden
folders and committed chunks are never entered.
"""

from __future__ import annotations

import os
from pathlib import Path

from mixture_ray.run_report.locate import MARKERS
from mixture_ray.store.folder import SUCCESS

SKIPPED = (".", "chunk-")


def _subfolders(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(SKIPPED)]
    except OSError:
        return []


def is_stage_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a stage marker (settings, end marker or failures table)."""
    return any((folder / name).is_file() for name in MARKERS)


def stage_folders(root: Path, depth: int) -> list[Path]:
    """The stage folders at most ``depth`` levels below ``root`` (``root`` itself included), sorted."""
    found, stack = [], [(root, 0)]
    while stack:
        folder, level = stack.pop()
        if is_stage_folder(folder):
            found.append(folder)
        elif level < depth:
            stack.extend((child, level + 1) for child in _subfolders(folder))
    return sorted(found)


def item_folders(folder: Path) -> list[Path]:
    """The items of a stage that writes one folder per item: its subfolders holding ``_SUCCESS``."""
    return [child for child in _subfolders(folder) if (child / SUCCESS).is_file()]
