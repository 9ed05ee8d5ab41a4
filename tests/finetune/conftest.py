"""The labelled tile set shared by the fine-tuning test modules (one per module)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mixture_ray.store.folder import committed_files
from mixture_ray.store.schemas import TILE_ID_COLUMNS
from tests.conftest import TiledCohort
from tests.finetune.support import write_labels


@pytest.fixture(scope="module")
def labelled(tiled_cohort: TiledCohort, tmp_path_factory: pytest.TempPathFactory,
             ray_session: None) -> tuple[Path, Path]:
    """Ground-truth labels of the 20x tiles of the shared tiled cohort."""
    from mixture_ray.synth.oracle import tile_truth

    tiles = pq.read_table(committed_files(tiled_cohort.tiles)).to_pandas()
    tiles = tiles[tiles.magnification == 20.0]
    frame = tiles[list(TILE_ID_COLUMNS)].assign(
        magnification=tiles.magnification.astype(float),
        finding=tile_truth(tiled_cohort.cohort, tiles).to_numpy())
    return write_labels(tmp_path_factory.mktemp("finetune") / "labels", frame), tiled_cohort.tiles
