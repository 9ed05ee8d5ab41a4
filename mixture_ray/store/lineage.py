"""Lineage: which runs a stage's output was made from, carried in its end record (``_SUCCESS``).

Every end record holds ``run_id`` (this run: its MLflow run id where the run was tracked, else a
new random id) and ``lineage``: one entry (stage, run id, path, and the tracking URI where there is
one) for each finished stage folder that its settings or inputs name, and for every entry of
theirs. An input that is a file (an encoder's ``elex.pt``, a ``labels.parquet``) or a folder inside
a stage folder (one clustering) counts through the stage folder holding it. A statistics report
or a mapping file is thus traced, in one read, to the encoder, the clustering and the tile store
it was made on.

Example: the end record of a cases run made on one classify store::

    {"stage": "cases", "run_id": "5f0c...", "lineage": [
        {"stage": "classify", "run_id": "9a1e...", "path": "/runs/a/predictions"},
        {"stage": "finetune", "run_id": "<MLflow run id>", "path": "/runs/a/finetune/clf",
         "tracking_uri": "file:///runs/a/mlruns"},
        {"stage": "pretrain", ...}, {"stage": "tile", ...}]}
"""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING, Any

from mixture_ray.locations import Location, address_text, is_uri

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

RUN_ID, LINEAGE, TRACKING = "run_id", "lineage", "mlflow"
#: The end marker whose record is read, and how many folders up from an input it is looked for
#: (a clustering ``clusters/mag-20x/k-12`` counts through ``clusters``).
END_MARKER, UP = "_SUCCESS", 3


def new_run_id() -> str:
    """A fresh run id for a stage run that no experiment tracker named."""
    return uuid.uuid4().hex


def upstream(values: Iterable[Any]) -> list[dict[str, str]]:
    """The lineage entries of the finished stage folders that ``values`` name, and of theirs.

    Args:
        values: settings (nested mappings and lists are searched) and input paths; a string
            that is an object-store URI or holds a path separator is looked at.

    Returns:
        Entries ``{"stage", "run_id", "path"}`` (plus ``"tracking_uri"`` for a tracked run), one per
        run, sorted by stage and path. A folder without an end record, or with an unreadable one,
        adds nothing.
    """
    entries: dict[str, dict[str, str]] = {}
    for text in sorted(set(_path_strings(values))):
        found = _end_record(text)
        if found is None:
            continue
        where, record = found
        for entry in record.get(LINEAGE) or []:
            if isinstance(entry, dict):
                clean = {str(k): str(v) for k, v in entry.items()}
                entries.setdefault(clean.get(RUN_ID) or clean.get("path", ""), clean)
        own = {"stage": str(record.get("stage", "")), RUN_ID: str(record.get(RUN_ID, "")),
               "path": address_text(where)}
        tracking = record.get(TRACKING)
        if isinstance(tracking, dict) and tracking.get("tracking_uri"):
            own["tracking_uri"] = str(tracking["tracking_uri"])
        if own["stage"] or own[RUN_ID]:
            entries.setdefault(own[RUN_ID] or own["path"], own)
    return sorted(entries.values(), key=lambda e: (e.get("stage", ""), e.get("path", "")))


def lineage_fields(run_id: str | None, values: Iterable[Any]) -> dict[str, Any]:
    """``{"run_id": ..., "lineage": [...]}`` for an end record (a new id when ``run_id`` is None)."""
    return {RUN_ID: run_id or new_run_id(), LINEAGE: upstream(values)}


def _path_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if is_uri(value) or os.sep in value or "/" in value:
            yield value
    elif isinstance(value, os.PathLike):
        yield os.fspath(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _path_strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _path_strings(item)


def _end_record(text: str) -> tuple[Location, dict[str, Any]] | None:
    """The folder that ``text`` names (or that holds the file it names) and its end record."""
    try:
        where = Location.of(text)
        folder = where.parent if where.is_file() else where
        for _ in range(UP):
            marker = folder / END_MARKER
            if not marker.is_file():
                folder = folder.parent
                continue
            record = json.loads(marker.read_text() or "{}")
            return (folder, record) if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None
    return None
