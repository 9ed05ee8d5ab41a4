"""A stage output folder of per-item results: settings check, failures table, _SUCCESS written last."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mixture_ray.errors import ConfigError, StageIncompleteError
from mixture_ray.report import Failure
from mixture_ray.store.folder import INCOMPLETE, SUCCESS, write_json_atomic
from mixture_ray.store.schemas import FAILURE_SCHEMA


def prepare(root: Path, settings: Mapping[str, Any], *, stage: str) -> None:
    """Create ``root``; refuse output made with other settings; clear the completion markers."""
    root.mkdir(parents=True, exist_ok=True)
    wanted = json.loads(json.dumps(dict(settings), default=str))
    path = root / "settings.json"
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in set(previous) | set(wanted) if previous.get(k) != wanted.get(k))
        if changed:
            detail = "; ".join(f"{k}: {previous.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
            raise ConfigError(f"{root} holds {stage} output made with other settings ({detail}); "
                              "use a new out_dir or the same settings")
    write_json_atomic(path, wanted)
    for marker in (SUCCESS, INCOMPLETE):
        (root / marker).unlink(missing_ok=True)


def finish(root: Path, *, stage: str, requested: Sequence[str], failures: Sequence[Failure],
           extra: Mapping[str, Any]) -> bool:
    """Write failures.parquet, then _SUCCESS (all items done) or _INCOMPLETE.json; True if done."""
    table = pa.table({"stage": [stage] * len(failures), "item_id": [f.item_id for f in failures],
                      "source": [f.source for f in failures], "error": [f.error for f in failures]},
                     schema=FAILURE_SCHEMA)
    tmp = root / ".failures.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, root / "failures.parquet")
    summary = {"stage": stage, "items": len(requested), "items_failed": len(failures), **extra}
    if failures:
        write_json_atomic(root / INCOMPLETE, {**summary, "failed": [f.item_id for f in failures]})
        return False
    write_json_atomic(root / SUCCESS, summary)
    return True


def require_complete(root: Path, what: str) -> None:
    """Raise unless ``root`` carries _SUCCESS."""
    if not (root / SUCCESS).exists():
        raise StageIncompleteError(f"{root}: {what} is not complete (no _SUCCESS); run it first")
