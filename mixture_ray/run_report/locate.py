"""Find the stage outputs of a run folder by what they hold, not by where a pipeline put them.

A stage folder carries ``_settings.json``, ``_SUCCESS``, ``_INCOMPLETE.json`` or ``_failures.csv``;
its stage is the ``stage`` recorded in its marker (or failures table). The demo nests the clinical
stages under ``analysis/`` and explain under ``explain/explain/``; a search a few levels deep finds
them wherever they are. Hidden folders and committed chunks are never entered.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mixture_ray.store.folder import FAILURES, INCOMPLETE, SETTINGS, SUCCESS, read_failures

MARKERS = (SETTINGS, SUCCESS, INCOMPLETE, FAILURES)
TILE_STAGES = ("tile", "import-images")


def stage_of(folder: Path) -> str:
    """The stage that wrote ``folder`` (from its marker or failures table), or ``""``."""
    for name in (SUCCESS, INCOMPLETE):
        path = folder / name
        if path.is_file():
            try:
                record = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("stage"):
                return str(record["stage"])
    failures = read_failures(folder) if (folder / FAILURES).is_file() else None
    if failures is not None and len(failures):
        return str(failures["stage"].iloc[0])
    return ""


def _folders(root: Path, depth: int) -> list[Path]:
    found, stack = [], [(root, 0)]
    while stack:
        folder, level = stack.pop()
        found.append(folder)
        if level >= depth:
            continue
        try:
            children = [c for c in folder.iterdir() if c.is_dir()]
        except OSError:
            continue
        stack.extend((c, level + 1) for c in children if not c.name.startswith((".", "chunk-")))
    return sorted(found)


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """The outputs found in a run folder, each list sorted by path."""

    root: Path
    stage_dirs: dict[Path, str]
    tiles: list[Path]
    qc: list[Path]
    review: list[Path]
    maps: list[Path]
    stats: list[Path]
    explain: list[Path]

    def label(self, path: Path) -> str:
        """``path`` relative to the run folder (``.`` for the folder itself)."""
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(path)


def find_layout(root: Path, depth: int = 4) -> RunLayout:
    """Every stage output under ``root`` (``depth`` folder levels at most).

    Args:
        root: the run folder.
        depth: how many levels below ``root`` are searched.

    Returns:
        The folders by kind: tile stores, QC, review (montages), maps, stats and explain roots.
    """
    folders = _folders(Path(root), depth)
    stages = {f: stage_of(f) for f in folders if any((f / m).is_file() for m in MARKERS)}
    return RunLayout(
        root=Path(root),
        stage_dirs=stages,
        tiles=[f for f, s in stages.items() if s in TILE_STAGES],
        qc=[f for f in folders if (f / "qc.parquet").is_file()],
        review=[f for f in folders if (f / "montages").is_dir()],
        maps=[f for f, s in stages.items() if s == "maps"],
        stats=[f for f in folders if stages.get(f) == "stats" or (f / "diagnosis_auc.csv").is_file()],
        explain=[f.parent for f, s in stages.items() if s == "explain-apply" and f.name == "apply"],
    )
