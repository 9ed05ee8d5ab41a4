"""Shared fixtures: the real data folder, a Ray session per module, faults, the gpu marker hook."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        address="local",
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

    started = _start_ray()
    root = tmp_path_factory.mktemp("cohort")
    written = write_cohort(build_config(
        SynthConfig, {"out_dir": root / "cohort", "n_cases": 3, "min_slides_per_case": 1,
                      "max_slides_per_case": 1, "width": 1024, "height": 1024, "seed": 11}))
    tiles = root / "tiles"
    report = run_tiling(build_config(
        TileConfig, {"manifest": written.manifest, "out_dir": tiles, "tile_size": 32,
                     "magnifications": [5.0, 20.0], "max_tiles_per_slide": 48, "pool.workers": 1}))
    assert report.complete, report.summary()
    if started:
        ray.shutdown()
    yield TiledCohort(root, written.root, written.manifest, written.masks_dir, tiles)


def classify_with_random_network(tiles: Path, root: Path, classes: tuple[str, ...], *, magnification: float,
                                 seed: int) -> Path:
    """``tiles`` classified by a seeded random ResNet18 over ``classes`` (tiles <= 70 % background).

    Writes ``root/classifier.pt`` and the prediction store ``root/predictions`` (returned).
    """
    import torch

    from mixture_ray.classify.config import ClassifyConfig
    from mixture_ray.classify.stage import run as run_classify
    from mixture_ray.config import build_config
    from mixture_ray.models import checkpoint as ckpt
    from mixture_ray.models.backbone import Backbone
    from mixture_ray.models.classifier import classifier_payload

    torch.manual_seed(seed)
    net = Backbone("resnet18", len(classes), classes=classes).eval()
    ckpt.save(classifier_payload(net, magnification=magnification, image_size=0), root / "classifier.pt")
    report = run_classify(build_config(ClassifyConfig, {
        "tiles": tiles, "classifier": root / "classifier.pt", "out_dir": root / "predictions",
        "pool.batch_size": 16, "max_background": 0.7}))
    assert report.complete and report.magnification == magnification, report.summary()
    return root / "predictions"


def _start_ray() -> bool:
    """Start a local Ray session for a session fixture unless one is up; True if started here."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        return False
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    return True


#: The outputs of a seeded random 20x finding classifier (class order fixed here).
ANALYSIS_CLASSES = ("normal_alveolar", "dense_fibrosis", "fibroblastic_foci", "other")


@dataclasses.dataclass(frozen=True)
class AnalysedCohort:
    """The shared cohort run through classify, embed and cluster (read-only: tests write elsewhere)."""

    root: Path
    classifier: Path
    predictions: Path
    embeddings: Path
    clusters: Path


@pytest.fixture(scope="session")
def analysed_cohort(
    tiled_cohort: TiledCohort, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnalysedCohort]:
    """The shared tiled cohort's 20x tiles classified by a seeded random classifier (tiles with at most
    70 % background), embedded by a random ResNet18, and clustered with k = 2 and 3.

    Made once for the classify, maps, cases and export tests.
    """
    import ray

    from mixture_ray.cluster.config import ClusterConfig
    from mixture_ray.cluster.stage import run as run_cluster
    from mixture_ray.config import build_config
    from mixture_ray.embed.config import EmbedConfig
    from mixture_ray.embed.stage import run as run_embedding

    started = _start_ray()
    root = tmp_path_factory.mktemp("analysed")
    classify_with_random_network(tiled_cohort.tiles, root, ANALYSIS_CLASSES, magnification=20.0, seed=3)
    embedded = run_embedding(build_config(EmbedConfig, {
        "tiles": tiled_cohort.tiles, "out_dir": root / "embeddings", "model": "random",
        "pool.batch_size": 32, "magnification": 20.0}))
    assert embedded.complete, embedded.summary()
    run_cluster(build_config(ClusterConfig, {"embeddings": root / "embeddings", "out_dir": root / "clusters",
                                             "ks": [2, 3], "silhouette_sample": 0}))
    if started:
        ray.shutdown()
    yield AnalysedCohort(root, root / "classifier.pt", root / "predictions", root / "embeddings",
                         root / "clusters")


@pytest.fixture(scope="session")
def explain_check(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The activation-clustering known-truth check (3 one-slide cases of 1024 px, K = 3), run once for
    the explain and export tests. Its folder is read-only to them: they write into their own folders."""
    import ray

    from mixture_ray.pipeline.explain_truth import known_truth_check

    started = _start_ray()
    out = tmp_path_factory.mktemp("explain")
    result = known_truth_check(out, n_cases=3, slide_px=1024, n_classes=(3,), per_slide=120, epochs=2)
    if started:
        ray.shutdown()
    yield out, result
