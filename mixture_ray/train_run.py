"""Ray Train helpers shared by pretrain and finetune: report with a checkpoint, a fault hook."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mixture_ray.models.checkpoint import save


def report_to_ray_train(metrics: dict[str, Any], state: Mapping[str, Any] | None, filename: str) -> None:
    """``ray.train.report`` the metrics, with ``state`` saved as ``filename`` in a checkpoint if given."""
    import tempfile

    import ray.train

    if state is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        save(state, Path(folder) / filename)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def crash_once_at_step(run_dir: Path, fail_at_step: int, step: int, marker: str = ".fail_injected") -> None:
    """Testing hook: kill this worker process once per run folder when ``step == fail_at_step``."""
    import time

    flag = run_dir / marker
    if fail_at_step and step == fail_at_step and not flag.exists():
        flag.parent.mkdir(parents=True, exist_ok=True)
        flag.write_text(str(step))
        time.sleep(2.0)  # let the controller register the last reported checkpoint first
        os._exit(1)
