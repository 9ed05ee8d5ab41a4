"""A stage folder read as it is by the tools users point at it: pandas, pyarrow, DuckDB, Ray Data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mixture_ray.report import Failure
from mixture_ray.store.folder import (
    FAILURES,
    OLD_FAILURES,
    OLD_SETTINGS,
    SETTINGS,
    StageFolder,
    committed_files,
    read_failures,
    read_settings,
)
from mixture_ray.store.schemas import TILE_KEY
from tests.conftest import TiledCohort

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def store(tiled_cohort: TiledCohort, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A copy of the shared tile store with a recorded failure and a killed run's leftovers."""
    root = tmp_path_factory.mktemp("readers") / "tiles"
    shutil.copytree(tiled_cohort.tiles, root)
    expected = pq.read_table(committed_files(root)).to_pandas()
    folder = StageFolder(root, stage="tile")
    folder.finish(
        requested=sorted(set(expected.slide_id)), failures=[Failure("gone", "/x/gone.svs", "no")], extra={}
    )
    killed = folder.new_tmp_dir()  # a chunk a killed run was writing: beside the store, hidden
    killed.mkdir()
    expected.head(5).to_parquet(killed / "part-0.parquet")
    return root, expected


def _keys(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    return sorted(frame[list(TILE_KEY)].astype(str).itertuples(index=False, name=None))


def test_pandas_and_pyarrow_read_exactly_the_committed_rows(store: tuple[Path, pd.DataFrame]) -> None:
    root, expected = store
    assert (root / FAILURES).exists() and (root / SETTINGS).exists()
    frame = pd.read_parquet(root)
    assert len(frame) == len(expected) > 0 and _keys(frame) == _keys(expected)
    table = pq.read_table(root)
    assert table.num_rows == len(expected)


def test_duckdb_glob_reads_exactly_the_committed_rows(store: tuple[Path, pd.DataFrame]) -> None:
    duckdb = pytest.importorskip("duckdb", reason="duckdb is a dev dependency (pip install -e '.[dev]')")
    root, expected = store
    query = f"select slide_id, x, y, magnification from read_parquet('{root}/**/*.parquet')"
    frame = duckdb.sql(query).df()
    assert len(frame) == len(expected) and _keys(frame) == _keys(expected)


def test_ray_data_reads_exactly_the_committed_rows(store: tuple[Path, pd.DataFrame]) -> None:
    import ray.data

    root, expected = store
    frame = ray.data.read_parquet(str(root), columns=list(TILE_KEY)).to_pandas()
    assert len(frame) == len(expected) and _keys(frame) == _keys(expected)


def test_failures_table_and_a_folder_of_an_earlier_version(
    tmp_path: Path, store: tuple[Path, pd.DataFrame]
) -> None:
    root, _ = store
    failures = read_failures(root)
    assert failures.to_dict("records") == [
        {"stage": "tile", "item_id": "gone", "source": "/x/gone.svs", "error": "no"}
    ]
    old = tmp_path / "old"
    old.mkdir()
    (old / OLD_SETTINGS).write_text('{"tile_size": 32}')
    (old / OLD_FAILURES).write_bytes(b"PAR1 of an earlier run")
    assert read_settings(old) == {"tile_size": 32}  # read as it is
    folder = StageFolder(old, stage="tile")
    killed = folder.new_tmp_dir()
    killed.mkdir()
    folder.prepare({"tile_size": 32})  # the next run renames the settings, drops the old table
    assert (old / SETTINGS).exists() and not (old / OLD_SETTINGS).exists()
    assert not (old / OLD_FAILURES).exists() and not killed.exists()  # and a killed run's chunk
    assert read_settings(old) == {"tile_size": 32}


def test_a_store_on_its_own_mount_writes_its_chunks_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    folder = StageFolder(tmp_path / "store", stage="tile")
    assert folder.new_tmp_dir().parent == tmp_path  # beside the store: outside what readers see
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode)
    )
    inside = folder.new_tmp_dir()  # no rename across devices or into a read-only parent
    assert inside.parent == tmp_path / "store" and inside.name.startswith(".tmp-")
