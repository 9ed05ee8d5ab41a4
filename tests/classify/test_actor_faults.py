"""Embedding and classification survive a killed actor: Ray retries, the output equals a clean run's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from mixture_ray.classify.config import ClassifyConfig
from mixture_ray.classify.stage import run as run_classify
from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig
from mixture_ray.embed.stage import run as run_embedding
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.backbone import Backbone
from mixture_ray.models.classifier import classifier_payload
from mixture_ray.store.folder import committed_files
from tests.conftest import TiledCohort


@pytest.fixture(scope="module")
def tiles(fault_dir: Path, tiled_cohort: TiledCohort) -> Path:
    """The shared tiled cohort's store (one commit chunk per slide)."""
    return tiled_cohort.tiles


def rows(store: Path) -> pd.DataFrame:
    frame = pq.read_table(committed_files(store)).to_pandas()
    return frame.sort_values(["slide_id", "x", "y"]).reset_index(drop=True)


def run_twice(fault_dir: Path, point: str, run: Any, out: Path) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """A clean run, then a run whose first actor batch kills its process; both outputs."""
    clean = run(out / "clean")
    assert clean.complete
    (fault_dir / point).touch()
    faulted = run(out / "faulted")
    assert not (fault_dir / point).exists(), "the fault was never triggered"
    assert list(fault_dir.glob(f"{point}.claimed-*")), "no actor claimed the fault"
    return faulted, rows(out / "clean"), rows(out / "faulted")


@pytest.mark.slow
def test_killed_embedding_actor_is_retried_and_output_is_unchanged(
    fault_dir: Path, tiles: Path, tmp_path: Path
) -> None:
    def embed(out: Path) -> Any:
        return run_embedding(build_config(EmbedConfig, {"tiles": tiles, "out_dir": out, "model": "random",
                                                        "pool.batch_size": 16}))

    report, clean, faulted = run_twice(fault_dir, "embed.batch", embed, tmp_path)
    assert report.complete, report.failures
    assert len(faulted) == len(clean) == len(rows(tiles))
    pd.testing.assert_frame_equal(faulted.drop(columns="features").drop(columns="head"),
                                  clean.drop(columns="features").drop(columns="head"))
    for column in ("head", "features"):
        diff = (faulted[column].explode().astype(float) - clean[column].explode().astype(float)).abs()
        assert diff.max() < 1e-5, column


@pytest.mark.slow
def test_killed_classifier_actor_is_retried_and_output_is_unchanged(
    fault_dir: Path, tiles: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    classifier = tmp_path / "classifier.pt"
    ckpt.save(classifier_payload(Backbone("resnet18", 3, classes=["a", "b", "c"]), magnification=20.0,
                                 image_size=0), classifier)

    def classify(out: Path) -> Any:
        return run_classify(build_config(ClassifyConfig, {"tiles": tiles, "classifier": classifier,
                                                          "out_dir": out, "pool.batch_size": 16}))

    report, clean, faulted = run_twice(fault_dir, "classify.batch", classify, tmp_path)
    assert report.complete, report.failures
    assert len(faulted) == len(clean) > 0
    pd.testing.assert_series_equal(faulted.finding, clean.finding)
    diff = (faulted.probabilities.explode().astype(float) - clean.probabilities.explode().astype(float)).abs()
    assert diff.max() < 1e-5
