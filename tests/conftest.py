"""Shared fixtures: the real data folder, a Ray session per module, faults, the gpu marker hook."""

from __future__ import annotations

import dataclasses
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip, with the reason, where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; torch sees none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _fault_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def ray_session(_fault_folder: Path) -> Iterator[None]:
    """A local Ray session per test module, its workers seeing the fault-injection folder.

    One session for the whole run was tried: a Ray Data actor pool of a later module then stayed
    pending forever after earlier modules' pipelines, so each module starts (about 3 s) and stops
    its own. With no token in the fault folder, nothing fails.
    """
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():  # started by a stage called outside this fixture: restart with faults
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {ENV: str(_fault_folder)}},
    )
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fault_dir(ray_session: None, _fault_folder: Path) -> Iterator[Path]:
    """The fault-injection folder the shared Ray session's workers see, emptied for each module."""
    for token in _fault_folder.iterdir():
        token.unlink()
    yield _fault_folder
    for token in _fault_folder.iterdir():
        token.unlink()


@dataclasses.dataclass(frozen=True)
class TiledCohort:
    """The shared synthetic cohort and its tile store (read-only: tests write elsewhere)."""

    root: Path
    cohort: Path
    manifest: Path
    masks: Path
    tiles: Path


@pytest.fixture(scope="session")
def tiled_cohort(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TiledCohort]:
    """Three one-slide synthetic cases (1024 px), up to 48 seeded tissue tiles per slide at 5x and 20x.

    32 px tiles, one commit chunk per slide. Made once per test session for the stages that read
    a tile store (embed, classify, maps, cases, pretrain, finetune, the actor-fault tests); the
    tiling stage has its own tests. Tiling starts a Ray session of its own, stopped afterwards.
    """
    import ray

    from mixture_ray.config import build_config
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.synth.config import SynthConfig
    from mixture_ray.tile.config import TileConfig
    from mixture_ray.tile.stage import run as run_tiling

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    root = tmp_path_factory.mktemp("cohort")
    written = write_cohort(build_config(
        SynthConfig, {"out_dir": root / "cohort", "n_cases": 3, "min_slides_per_case": 1,
                      "max_slides_per_case": 1, "width": 1024, "height": 1024, "seed": 11}))
    tiles = root / "tiles"
    report = run_tiling(build_config(
        TileConfig, {"manifest": written.manifest, "out_dir": tiles, "tile_size": 32,
                     "magnifications": [5.0, 20.0], "max_tiles_per_slide": 48, "pool.workers": 1,
                     "slides_per_commit": 1}))
    assert report.complete, report.summary()
    if started:
        ray.shutdown()
    yield TiledCohort(root, written.root, written.manifest, written.masks_dir, tiles)
