"""Montage pixels from the parts that hold the sampled slides only, and store sites, read in Ray tasks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixture_ray.config import build_config
from mixture_ray.review import tile_parts
from mixture_ray.review.config import ReviewConfig
from mixture_ray.review.mix import read_sites
from mixture_ray.review.montage import montage_png
from mixture_ray.review.stage import run as run_review
from mixture_ray.review.tile_parts import TileParts, fetch_images, join_images, read_images
from mixture_ray.store.folder import committed_files
from mixture_ray.store.schemas import TILE_ID_COLUMNS
from tests.conftest import TiledCohort
from tests.review.conftest import images_the_old_way, repartition, write_clustering

pytestmark = pytest.mark.usefixtures("ray_session")
KEY = ["slide_id", "x", "y", "magnification"]


@pytest.fixture(scope="module")
def spanning(tiled_cohort: TiledCohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared cohort's tiles in 40-row parts: each slide spans parts, parts hold two slides."""
    return repartition(tiled_cohort.tiles, tmp_path_factory.mktemp("spanning") / "tiles", part_rows=40)


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The part addresses handed to read tasks."""
    seen: list[str] = []
    original = tile_parts.per_part

    def recording(task: Any, calls: Any) -> Any:
        seen.extend(str(call[0]) for call in calls)
        return original(task, calls)

    monkeypatch.setattr(tile_parts, "per_part", recording)
    return seen


def test_the_index_names_each_slides_parts(spanning: Path, tiled_cohort: TiledCohort) -> None:
    parts = TileParts.open(spanning)
    stored = pq.read_table(committed_files(spanning), columns=["slide_id"]).to_pandas()
    assert parts.slide_parts is not None and len(parts.files) > 3
    for slide in stored.slide_id.unique():
        holding = {str(f) for f in parts.holding([slide])}
        truly = {str(f) for f in committed_files(spanning)
                 if slide in set(pq.read_table(f, columns=["slide_id"])["slide_id"].to_pylist())}
        assert holding == truly and 1 < len(holding) < len(parts.files)
    assert parts.holding(["not-stored"]) == []
    legacy = TileParts.of_files(committed_files(tiled_cohort.tiles))  # no index: every part
    assert legacy.holding(["not-stored"]) == list(legacy.files)


def test_slides_whose_parts_the_index_does_not_name_are_read_from_every_part(
    spanning: Path, tmp_path: Path, submitted: list[str]
) -> None:
    """A slide listed without parts, or with a part the store does not have, is looked for in every
    part; an index that lists no slides at all sends every slide to every part."""
    copy = shutil.copytree(spanning, tmp_path / "tiles")
    index = json.loads((copy / "_index.json").read_text())
    first, second, third = sorted(index["slides"])
    index["slides"][first]["files"] = []
    index["slides"][second]["files"] = ["chunk-gone/part-000000.parquet"]
    (copy / "_index.json").write_text(json.dumps(index))
    parts = TileParts.open(copy)
    assert parts.parts_of(first) is None and parts.parts_of(second) is None
    assert parts.holding([first]) == list(parts.files) and 0 < len(parts.holding([third])) < len(parts.files)
    stored = pq.read_table(committed_files(spanning), columns=KEY).to_pandas()
    keys = stored.groupby("slide_id").head(3).reset_index(drop=True)
    reference = join_images(keys, read_images(committed_files(spanning), keys))
    pd.testing.assert_frame_equal(fetch_images(parts, keys), reference)
    assert submitted == [str(f) for f in parts.files]
    index["slides"] = {}
    (copy / "_index.json").write_text(json.dumps(index))
    assert TileParts.open(copy).slide_parts is None
    assert TileParts.open(copy).holding(["not-stored"]) == list(parts.files)


def test_the_montage_read_opens_only_the_parts_of_the_sampled_slides(
    spanning: Path, tmp_path: Path, submitted: list[str]
) -> None:
    """The other parts are overwritten with junk: reading one of them would fail."""
    stored = pq.read_table(committed_files(spanning), columns=KEY).to_pandas()
    slide = sorted(stored.slide_id.unique())[1]  # the middle slide shares parts with both others
    keys = stored[stored.slide_id == slide].sample(n=12, random_state=0).reset_index(drop=True)
    keys.loc[0, "x"] = -1  # not stored: no image
    keys = pd.concat([keys, keys.iloc[[3]].assign(slide_id="not-stored")], ignore_index=True)
    reference = join_images(keys, read_images(committed_files(spanning), keys))
    assert reference.image.isna().sum() == 2

    copy = shutil.copytree(spanning, tmp_path / "tiles")
    parts = TileParts.open(copy)
    holding = parts.holding([slide])
    for part in parts.files:
        if part not in holding:
            Path(part.path).write_bytes(b"not a parquet file")
    assert 1 < len(holding) < len(parts.files)

    pd.testing.assert_frame_equal(fetch_images(parts, keys), reference)
    assert submitted == [str(f) for f in holding]  # one task per part, in store order
    submitted.clear()
    assert fetch_images(parts, keys.iloc[-1:]).image.isna().all() and submitted == []  # nothing to read
    with pytest.raises(Exception, match=r"(?i)parquet|magic"):  # the junk is really unreadable
        fetch_images(parts, stored[stored.slide_id != slide].head(2))


def test_review_of_a_store_whose_slides_span_parts_draws_the_same_montages(
    spanning: Path, tiled_cohort: TiledCohort, tmp_path: Path
) -> None:
    """The same montages, byte for byte, from one part per run and from parts spanning slides, and
    the ones the old whole-store read gave."""
    stored = pq.read_table(committed_files(tiled_cohort.tiles), columns=list(TILE_ID_COLUMNS)).to_pandas()
    keys = stored[stored.magnification == 20.0].reset_index(drop=True)
    clusters = np.random.default_rng(4).integers(0, 3, len(keys)).astype(np.int32)
    write_clustering(tmp_path / "clusters" / "mag-20x" / "k-3", keys, clusters, 3)
    pages = {}
    for name, store in [("original", tiled_cohort.tiles), ("spanning", spanning)]:
        cfg = build_config(ReviewConfig, {"clusters": tmp_path / "clusters", "tiles": store,
                                          "out_dir": tmp_path / name, "findings": ["a", "b"],
                                          "per_cluster": 9, "seed": 3})
        pages[name] = run_review(cfg).pages[0].read_text()
    assert pages["original"] == pages["spanning"]
    montages = sorted((tmp_path / "original" / "montages" / "20x" / "k3").glob("cluster-*.png"))
    assert [m.name for m in montages] == ["cluster-0.png", "cluster-1.png", "cluster-2.png"]
    from mixture_ray.review.montage import sample_per_cluster

    sample = sample_per_cluster(keys.assign(cluster=clusters), 9, 3)[[*KEY, "cluster"]]
    old = images_the_old_way([str(f) for f in committed_files(tiled_cohort.tiles)], sample)
    for montage in montages:
        again = tmp_path / "spanning" / "montages" / "20x" / "k3" / montage.name
        assert again.read_bytes() == montage.read_bytes()
        rows = old[old.cluster == int(montage.stem.split("-")[1])]
        assert montage.read_bytes() == montage_png([b for b in rows.image if isinstance(b, bytes)], thumb=96)


def old_store_sites(tile_files: list[str]) -> dict[str, str] | None:
    """The driver-side scan review used before (a Python step per distinct pair of each batch)."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(tile_files, format="parquet")
    if "site" not in dataset.schema.names:
        return None
    found: dict[str, str] = {}
    for batch in dataset.to_batches(columns=["slide_id", "site"], batch_size=7):
        pairs = batch.to_pandas().dropna().drop_duplicates()
        for slide, site in zip(pairs["slide_id"], pairs["site"], strict=True):
            found.setdefault(str(slide), str(site))
    return found


def test_store_sites_read_in_tasks_equal_the_driver_scan(tmp_path: Path) -> None:
    """The first non-null site of each slide in scan order, blanks kept as stored (tile_sites
    blanks them), a part without the column contributing nothing."""
    parts = [
        {"slide_id": ["a", "a", "b", None, "c"], "site": [None, "north", "  ", "west", "east"]},
        {"slide_id": ["d", "e"], "x": [1, 2]},
        {"slide_id": ["b", "a", "e", "f", "f"], "site": ["south", "south", None, None, "\tnorth"]},
    ]
    files = []
    for i, columns in enumerate(parts):
        files.append(str(tmp_path / f"part-{i}.parquet"))
        pq.write_table(pa.table(columns), files[-1])
    assert read_sites(None, files) == old_store_sites(files) == {
        "a": "north", "b": "  ", "c": "east", "f": "\tnorth"}
    assert read_sites(None, files[1:2]) is None and old_store_sites(files[1:2]) is None
    assert read_sites(None, []) is None
