"""Stores and slides on an S3-compatible object store: moto's server on loopback, started here.

The slides are uploaded to a bucket, tiled from there into a tile store in the bucket, embedded
into an embedding store in the bucket, and clustered from it; the outputs equal a run on local
files. Commits rename nothing on the store (S3 has no rename): a chunk counts once its marker is
written, and files that no marker lists are removed by the next run.

The server and the module's Ray session come from :mod:`tests.cluster_path.s3_server` (Ray is
started after the S3 settings are in the environment, so its workers inherit them). The stages
that only read stores are tested on the same server in ``test_object_store_readers.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.cluster.stage import run as run_cluster
from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig
from mixture_ray.embed.stage import run as run_embed
from mixture_ray.errors import ConfigError, FolderBusyError, SlideError
from mixture_ray.locations import Location, Uri, read_parquet_files
from mixture_ray.slides.factory import open_slide
from mixture_ray.store.embeddings import fixed_list_to_matrix
from mixture_ray.store.folder import COMMITTED, StageFolder, committed_locations
from mixture_ray.store.folder_lease import LEASE, Holder
from mixture_ray.synth.cohort import write_cohort
from mixture_ray.synth.config import SynthConfig
from mixture_ray.tile.config import TileConfig
from mixture_ray.tile.stage import run as run_tile
from tests.cluster_path.s3_server import loopback_s3

pytestmark = pytest.mark.object_store

BUCKET = "cohort"
TILING = {"tile_size": 32, "magnifications": [20.0], "max_tiles_per_slide": 40, "seed": 0,
          "pool.workers": 1}
KEY = ["slide_id", "magnification", "x", "y"]


@dataclasses.dataclass(frozen=True)
class S3:
    """The server's endpoint and the local cohort uploaded to it."""

    endpoint: str
    cohort: Path
    slides: dict[str, str]  # slide id -> its URI


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 with a bucket holding a 3-slide synthetic cohort; Ray started after."""
    import boto3

    root = tmp_path_factory.mktemp("object_store")
    written = write_cohort(build_config(SynthConfig, {
        "out_dir": root / "cohort", "n_cases": 3, "min_slides_per_case": 1, "max_slides_per_case": 1,
        "width": 1024, "height": 1024, "levels": 2, "seed": 11}))
    with loopback_s3(BUCKET, {"MIXTURE_RAY_SLIDE_CACHE": str(root / "slide-cache")}) as endpoint:
        client = boto3.client("s3")
        slides = {}
        for svs in sorted((written.root / "slides").glob("*.svs")):
            client.upload_file(str(svs), BUCKET, f"slides/{svs.name}")
            slides[svs.stem] = f"s3://{BUCKET}/slides/{svs.name}"
        yield S3(endpoint, written.root, slides)


def _manifest(s3: S3, folder: Path, *, remote: bool) -> Path:
    """A manifest of the cohort's slides: their URIs, or the local files."""
    path = folder / ("remote.csv" if remote else "local.csv")
    rows = ["slide_id,case_id,path"]
    for slide, uri in s3.slides.items():
        where = uri if remote else str(s3.cohort / "slides" / f"{slide}.svs")
        rows.append(f"{slide},{slide},{where}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _rows(store: str | Path) -> pa.Table:
    table = read_parquet_files(committed_locations(store))
    return table.sort_by([(c, "ascending") for c in KEY])


def _objects(prefix: str) -> list[str]:
    return [f.path for f in Location.of(f"s3://{BUCKET}/{prefix}").files_below()]


def test_tile_embed_cluster_on_s3_equal_a_local_run(s3: S3, tmp_path: Path) -> None:
    tiles, embeddings = f"s3://{BUCKET}/runs/tiles", f"s3://{BUCKET}/runs/embeddings"
    report = run_tile(build_config(TileConfig, {"manifest": _manifest(s3, tmp_path, remote=True),
                                                "out_dir": tiles, **TILING}))
    assert report.complete and report.out_dir == Uri(tiles)
    run_tile(build_config(TileConfig, {"manifest": _manifest(s3, tmp_path, remote=False),
                                       "out_dir": tmp_path / "tiles", **TILING}))
    remote, local = _rows(tiles), _rows(tmp_path / "tiles")
    assert remote.num_rows == local.num_rows > 0
    assert remote["image"].to_pylist() == local["image"].to_pylist()  # the same JPEG bytes
    assert set(remote["source"].to_pylist()) == set(s3.slides.values())
    assert sorted(os.listdir(os.environ["MIXTURE_RAY_SLIDE_CACHE"]))  # read from the node's copies
    # No object of the store is left outside a committed chunk: every data file is listed.
    listed = {loc.path for loc in committed_locations(tiles)}
    data = [p for p in _objects("runs/tiles") if p.endswith(".parquet")]
    assert data and set(data) == listed

    embed = {"model": "random", "magnification": 20.0, "torch_threads": 1, "pool.workers": 1,
             "pool.gpus": "0"}
    assert run_embed(build_config(EmbedConfig, {"tiles": tiles, "out_dir": embeddings, **embed})).complete
    run_embed(build_config(EmbedConfig, {"tiles": tmp_path / "tiles", "out_dir": tmp_path / "emb", **embed}))
    got, want = _rows(embeddings), _rows(tmp_path / "emb")
    assert got.select(KEY).equals(want.select(KEY))
    np.testing.assert_allclose(fixed_list_to_matrix(got["features"]), fixed_list_to_matrix(want["features"]),
                               atol=1e-5, rtol=0)

    for store, out in ((embeddings, tmp_path / "clu-s3"), (tmp_path / "emb", tmp_path / "clu-local")):
        run_cluster(build_config(ClusterConfig, {"embeddings": store, "out_dir": out, "ks": [3],
                                                 "engine": "sklearn", "silhouette_sample": 0}))
    metrics = [json.loads((d / "_SUCCESS").read_text())["clusterings"] for d in (tmp_path / "clu-s3",
                                                                                 tmp_path / "clu-local")]
    assert metrics[0] == metrics[1] == 1
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("clu-s3", "clu-local"))
    assert a["inertia"].tolist() == pytest.approx(b["inertia"].tolist(), rel=1e-5)


def _chunk(staging: Location, slide: str, rows: int, *, error: str | None = None) -> Location:
    folder = staging / slide
    table = pa.table({"slide_id": [slide] * rows, "x": list(range(rows)),
                      "error": pa.array([error] * rows, pa.string())})
    (folder / "part-0.parquet").write_parquet(table)
    return folder


def test_commits_rename_nothing_and_a_killed_runs_objects_are_removed(s3: S3) -> None:
    uri = f"s3://{BUCKET}/commits/store"
    store = StageFolder(uri, stage="demo", item_column="slide_id")
    store.prepare({"v": 1})
    staging = store.new_staging()
    assert staging.path.startswith(f"{BUCKET}/commits/store/chunk-")  # written in place: no rename
    done = store.commit(_chunk(staging, "a", 3), {"a": "src-a"})
    failed = store.commit(_chunk(staging, "b", 2, error="bad tile"), {"b": "src-b"})
    assert done.rows == {"a": 3} and not done.failures
    assert failed.rows == {} and "bad tile" in failed.failures[0].error
    killed = _chunk(store.new_staging(), "c", 4)  # written, never committed: a killed run
    assert store.committed_items() == {"a": 3}
    assert [loc.path for loc in store.data_locations()] == [(staging / "a" / "part-0.parquet").path]
    assert (killed / "part-0.parquet").exists()
    assert store.finish(requested=["a", "b"], failures=failed.failures, extra={}) is False
    assert json.loads((store.where / "_INCOMPLETE.json").read_text())["failed_items"] == ["b"]

    rerun = StageFolder(uri, stage="demo", item_column="slide_id")
    rerun.prepare({"v": 1})
    assert not (killed / "part-0.parquet").exists()
    left = _objects("commits/store")
    assert sorted(p.rsplit("/", 1)[1] for p in left) == sorted(
        ["_settings.json", "_failures.csv", COMMITTED, "part-0.parquet", LEASE])  # the rerun holds it
    with pytest.raises(ConfigError, match="made with other settings"):
        StageFolder(uri, stage="demo", item_column="slide_id").prepare({"v": 2})


@pytest.mark.safety
def test_a_leased_store_on_s3_refuses_a_second_run(s3: S3) -> None:
    uri = f"s3://{BUCKET}/leased/store"
    first = StageFolder(uri, stage="tile", item_column="slide_id")
    first.prepare({"v": 1})  # PUT, settle, read back: this run's lease
    holder = Holder.parse((first.where / LEASE).read_text())
    assert holder is not None and holder.pid == os.getpid()
    foreign = dataclasses.replace(holder, owner="other-run", host="gpu-node-3", pid=77)
    (first.where / LEASE).write_text(foreign.to_json())  # as if another host's run held it
    with pytest.raises(FolderBusyError, match=r"in use by a tile run on host gpu-node-3 \(pid 77"):
        StageFolder(uri, stage="tile", item_column="slide_id").prepare({"v": 1})
    first.release()  # not this run's lease any more: left in place
    assert Holder.parse((first.where / LEASE).read_text()) == foreign


def test_uri_errors_name_the_key_and_the_object(s3: S3, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"manifest: 's3://cohort/m.csv' is an object-store URI"):
        build_config(TileConfig, {"manifest": f"s3://{BUCKET}/m.csv", "out_dir": tmp_path / "t"})
    missing = f"s3://{BUCKET}/slides/absent.svs"
    with pytest.raises(SlideError, match=r"s3://cohort/slides/absent.svs: not found; check the path"):
        open_slide(missing)
    cfg: Any = build_config(EmbedConfig, {"tiles": f"s3://{BUCKET}/nothing", "out_dir": tmp_path / "e",
                                          "model": "random"})
    assert cfg.tiles == Uri(f"s3://{BUCKET}/nothing") and cfg.out_dir == (tmp_path / "e").absolute()


@pytest.mark.safety
def test_a_store_behind_failing_requests_commits_every_slide_once(s3: S3,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A fifth of the requests throttled (503), failed (500) or cut off: retries absorb them all."""
    from tests.cluster_path.faulty_s3 import FaultyProxy

    with FaultyProxy(s3.endpoint, rate=0.2, seed=5) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        uri = f"s3://{BUCKET}/faulty/store"
        store = StageFolder(uri, stage="demo", item_column="slide_id")
        store.prepare({"v": 1})
        staging = store.new_staging()
        slides = [f"s{i}" for i in range(12)]
        for i, slide in enumerate(slides):
            assert store.commit(_chunk(staging, slide, 5 + i), {slide: f"src-{slide}"}).rows == {slide: 5 + i}
        assert store.finish(requested=slides, failures=[], extra={})
        faults = dict(proxy.injected)
        monkeypatch.setenv("MIXTURE_RAY_S3_ATTEMPTS", "1")  # no retries: the same faults now surface
        with pytest.raises(OSError):
            for _ in range(40):
                Location.of(f"{uri}/_SUCCESS").read_text()
    assert sum(faults.values()) >= 10 and set(faults) == {"slowdown", "internal", "drop"}, faults
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    clean = StageFolder(uri, stage="demo", item_column="slide_id")
    assert clean.committed_items() == {s: 5 + i for i, s in enumerate(slides)}
    table = read_parquet_files(committed_locations(uri))
    assert table.num_rows == sum(5 + i for i in range(12))  # every row once
    print(f"faults injected and survived: {faults}")
