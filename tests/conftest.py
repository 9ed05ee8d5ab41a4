"""Shared fixtures: real data folder, a Ray session per module."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixture_ray.faults import ENV

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
CMU_SVS = SHARED_DATA / "slides" / "CMU-1-Small-Region.svs"
TCGA_J2K_SVS = SHARED_DATA / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"
TILES_DIR = SHARED_DATA / "tiles"


def require_shared(path: Path) -> Path:
    """Skip (with the reason) when the shared data folder is not beside the repo."""
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (expected ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray session for a test module (start/stop costs seconds)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Ray session whose workers see the fault-injection folder."""
    import ray

    folder = tmp_path_factory.mktemp("faults")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {ENV: str(folder)}},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield folder
    ray.shutdown()
