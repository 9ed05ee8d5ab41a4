"""What every benchmark script shares: a local Ray session of its own, and its JSON record saved and shown."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

HEADLINE = ("name", "value", "baseline_value", "ratio")


def start_local_ray(cpus: int) -> None:
    """A fresh local Ray of ``cpus`` CPUs (never joining another), quiet logs, no progress bars."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False


def save_record(out: Path, result: dict[str, Any], shown: Sequence[str] = HEADLINE) -> None:
    """Write ``result`` as JSON to ``out`` (folders made) and print its ``shown`` keys."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in shown if k in result}, indent=2))
