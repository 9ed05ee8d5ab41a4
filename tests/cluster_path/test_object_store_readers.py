"""Every stage that reads a store reads it from an S3 URI as from a local folder.

The shared cohort's stores (tiles, 20x predictions, embeddings; tests/conftest.py) are copied
file by file into a bucket of moto's S3 server on loopback; maps, cases (with the nearest-centroid
baseline), export, evaluate-embeddings, pretrain, finetune and review then read the copies by URI
and write what they write from the local stores. Clusterings and every output folder stay local
paths (a URI there is refused: tests/test_config.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest

from mixture_ray.cases.config import CasesConfig
from mixture_ray.cases.stage import run as run_cases
from mixture_ray.config import build_config
from mixture_ray.embed.config import EvaluateEmbeddingsConfig
from mixture_ray.embed.evaluate import evaluate_embeddings
from mixture_ray.export.config import ExportConfig
from mixture_ray.export.stage import run as run_export
from mixture_ray.finetune.config import FinetuneConfig
from mixture_ray.locations import Uri, read_parquet_files
from mixture_ray.maps.config import MapsConfig
from mixture_ray.maps.stage import run as run_maps
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.pretrain.config import PretrainConfig
from mixture_ray.review.config import ReviewConfig
from mixture_ray.store.folder import SUCCESS, committed_locations, read_settings, write_json_atomic
from mixture_ray.store.schemas import TILE_ID_COLUMNS, TILE_KEY
from tests.cluster_path.s3_server import loopback_s3, upload_folder
from tests.conftest import ANALYSIS_CLASSES, AnalysedCohort, TiledCohort

pytestmark = pytest.mark.object_store

BUCKET = "stores"
KEY = list(TILE_KEY)


@dataclasses.dataclass(frozen=True)
class Stores:
    """Each store as a local folder and as the URI of its copy in the bucket."""

    tiled: TiledCohort
    analysed: AnalysedCohort
    remote: dict[str, Uri]

    def local(self, name: str) -> Path:
        """The local folder of the store ``name`` (tiles, predictions, embeddings)."""
        return self.tiled.tiles if name == "tiles" else Path(getattr(self.analysed, name))


@pytest.fixture(scope="module")
def stores(tiled_cohort: TiledCohort, analysed_cohort: AnalysedCohort) -> Iterator[Stores]:
    """The shared stores copied into a bucket of a loopback S3 server; Ray started after its settings."""
    with loopback_s3(BUCKET):
        local = {"tiles": tiled_cohort.tiles, "predictions": analysed_cohort.predictions,
                 "embeddings": analysed_cohort.embeddings}
        remote = {name: Uri(upload_folder(folder, f"s3://{BUCKET}/run/{name}"))
                  for name, folder in local.items()}
        yield Stores(tiled_cohort, analysed_cohort, remote)


#: Markers that name the inputs or the folder (compared apart where it matters).
MARKERS = ("_settings.json", "_SUCCESS", "_failures.csv")


def _files(root: Path) -> list[str]:
    """Every file below ``root`` (relative names), but the markers."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.name not in MARKERS and "_logs" not in p.parts)


def _assert_same_files(got: Path, want: Path, *, skip_bytes: tuple[str, ...] = ()) -> list[str]:
    """The same files, byte for byte (but those ending in ``skip_bytes``); returns their names."""
    names = _files(got)
    assert names == _files(want) and names
    for name in names:
        if not name.endswith(skip_bytes):
            assert (got / name).read_bytes() == (want / name).read_bytes(), name
    return names


def test_uri_stores_are_copies_of_the_local_ones(stores: Stores) -> None:
    for name, uri in stores.remote.items():
        remote = read_parquet_files(committed_locations(uri))
        local = read_parquet_files(committed_locations(stores.local(name)))
        order = [(c, "ascending") for c in KEY]
        assert remote.num_rows == local.num_rows > 0
        assert remote.sort_by(order).equals(local.sort_by(order))


def test_maps_of_uri_predictions_equal_a_local_run(stores: Stores, tmp_path: Path) -> None:
    reports = {}
    for where, predictions in (("s3", stores.remote["predictions"]), ("local", stores.local("predictions"))):
        reports[where] = run_maps(build_config(MapsConfig, {
            "manifest": stores.tiled.manifest, "out_dir": tmp_path / where, "predictions": [predictions],
            "thumbnail_px": 128}))
        assert reports[where].complete, reports[where].summary()
    names = _assert_same_files(tmp_path / "s3", tmp_path / "local", skip_bytes=("agreement.csv",))
    assert len([n for n in names if n.endswith(".png")]) == 3
    a, b = (reports[w].agreement.drop(columns="map") for w in ("s3", "local"))
    pd.testing.assert_frame_equal(a, b)
    assert read_settings(tmp_path / "s3")["predictions"] == stores.remote["predictions"]  # the URI as given


def test_cases_and_their_baseline_from_uri_stores_equal_a_local_run(stores: Stores, tmp_path: Path) -> None:
    for where in ("s3", "local"):
        store = stores.remote if where == "s3" else {n: stores.local(n) for n in stores.remote}
        report = run_cases(build_config(CasesConfig, {
            "predictions": [store["predictions"]], "embeddings": [store["embeddings"]],
            "clusters": stores.analysed.clusters, "baseline_ks": [2, 3], "out_dir": tmp_path / where}))
        assert report.complete and sorted(report.baseline) == [2, 3]
    names = _assert_same_files(tmp_path / "s3", tmp_path / "local")
    assert {"counts.csv", "frequencies.parquet", "baseline/k2.csv", "baseline/k3.parquet"} <= set(names)
    assert read_settings(tmp_path / "s3")["predictions"] == [stores.remote["predictions"]]


def _h5_contents(path: Path) -> dict[str, Any]:
    """Datasets and attributes of an .h5 file, but the attribute that names its output folder."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as h5:
        def visit(name: str, item: Any) -> None:
            attrs = {k: str(v) for k, v in item.attrs.items() if k != "savetodir"}
            out[name] = (np.asarray(item[()]).tolist() if isinstance(item, h5py.Dataset) else None, attrs)

        h5.visititems(visit)
    return out


def _features(path: Path) -> list[dict[str, Any]]:
    """The objects of a GeoJSON feature collection, without their ids."""
    return [{k: v for k, v in f.items() if k != "id"} for f in json.loads(path.read_text())["features"]]


def _tiff_pages(path: Path) -> list[bytes]:
    """The pixels of every level of the pyramid (SubIFDs) and of every top-level page."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        levels = [level.asarray() for level in tif.series[0].levels]
        return [array.tobytes() for array in [*levels, *(page.asarray() for page in tif.pages)]]


def test_export_from_uri_stores_equals_a_local_run(stores: Stores, tmp_path: Path) -> None:
    import anndata

    for where in ("s3", "local"):
        store = stores.remote if where == "s3" else {n: stores.local(n) for n in stores.remote}
        report = run_export(build_config(ExportConfig, {
            "out_dir": tmp_path / where, "clusters": stores.analysed.clusters, **store,
            "formats": ["qupath", "anndata", "h5", "heatmaps"]}))
        assert report.complete, report.summary()
    names = _assert_same_files(tmp_path / "s3", tmp_path / "local",
                               skip_bytes=(".geojson", ".h5", ".h5ad", ".tif"))
    kinds = {Path(n).parts[0] for n in names}
    assert kinds == {"qupath", "anndata", "h5", "heatmaps"}
    for name in (n for n in names if n.endswith(".geojson")):  # each object has a fresh UUID
        assert _features(tmp_path / "s3" / name) == _features(tmp_path / "local" / name), name
    for name in (n for n in names if n.endswith(".tif")):  # the OME-XML holds a fresh UUID
        assert _tiff_pages(tmp_path / "s3" / name) == _tiff_pages(tmp_path / "local" / name), name
    for name in (n for n in names if n.endswith(".h5")):
        assert _h5_contents(tmp_path / "s3" / name) == _h5_contents(tmp_path / "local" / name), name
    for name in (n for n in names if n.endswith(".h5ad")):
        got, want = (anndata.read_h5ad(tmp_path / w / name) for w in ("s3", "local"))
        np.testing.assert_array_equal(got.X, want.X)
        pd.testing.assert_frame_equal(got.obs, want.obs)
        np.testing.assert_array_equal(got.obsm["spatial"], want.obsm["spatial"])
        assert json.loads(got.uns["mixture_ray"]["embeddings"]) == stores.remote["embeddings"]


def test_evaluate_embeddings_reads_uri_stores(stores: Stores) -> None:
    results = []
    for where in ("s3", "local"):
        store = stores.remote if where == "s3" else {n: stores.local(n) for n in stores.remote}
        results.append(evaluate_embeddings(build_config(EvaluateEmbeddingsConfig, {
            "embeddings": store["embeddings"], "baseline": store["embeddings"], "tiles": store["tiles"],
            "masks": stores.tiled.masks, "magnification": 20.0, "min_purity": 0.5})))
    assert results[0].to_dict() == results[1].to_dict() and results[0].n_tiles > 0


def test_pretrain_reads_a_uri_tile_store(stores: Stores, tmp_path: Path) -> None:
    """The same decoded tiles from the bucket as from the folder; a 1-step run on them exports its encoder."""
    from mixture_ray.pretrain.data import tile_dataset
    from mixture_ray.pretrain.stage import run as run_pretrain

    def config(tiles: Path | str, **extra: Any) -> PretrainConfig:
        return build_config(PretrainConfig, {
            "tiles": tiles, "out_dir": tmp_path / "pretrain", "name": "run", "magnification": 20.0,
            "batch_size": 8, "queue_size": 16, "split_bn": 2, "max_steps": 1, "train.checkpoint_every": 1,
            "train.log_every": 1, "train.cpus_per_worker": 1.0, **extra})

    decoded = [tile_dataset(config(t, cache_tiles=False)).take_all()
               for t in (stores.remote["tiles"], stores.local("tiles"))]
    got, want = ([np.asarray(row["image"]).tobytes() for row in rows] for rows in decoded)
    assert sorted(got) == sorted(want) and got
    report = run_pretrain(config(stores.remote["tiles"]))
    assert report.step == 1 and report.encoder.is_file()
    assert ckpt.load(report.encoder)["tiles"] == stores.remote["tiles"]


def _labels(stores: Stores, folder: Path) -> Path:
    """Ground-truth labels of the 20x tiles, as `mixture-ray integrate` writes them."""
    from mixture_ray.synth.oracle import tile_truth

    tiles = read_parquet_files(committed_locations(stores.local("tiles"))).to_pandas()
    tiles = tiles[tiles.magnification == 20.0]
    frame = tiles[list(TILE_ID_COLUMNS)].assign(finding=tile_truth(stores.tiled.cohort, tiles).to_numpy(),
                                                source="test")
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "labels.parquet", index=False)
    write_json_atomic(folder / SUCCESS, {"tiles": len(frame)})
    return folder


def test_finetune_reads_a_uri_tile_store(stores: Stores, tmp_path: Path) -> None:
    """The same split and the same decoded training and validation tiles from the bucket as from the folder.

    These datasets are all the Ray Train loop reads (a loop on a URI store runs in the pretrain test).
    """
    from mixture_ray.finetune.stage import prepare

    labels = _labels(stores, tmp_path / "labels")
    prepared = [prepare(build_config(FinetuneConfig, {
        "labels": labels, "tiles": tiles, "out_dir": tmp_path / "finetune", "model": "random",
        "magnification": 20.0, "val_fraction": 0.34}))
        for tiles in (stores.remote["tiles"], stores.local("tiles"))]
    assert prepared[0].split == prepared[1].split and prepared[0].classes == prepared[1].classes
    np.testing.assert_array_equal(prepared[0].train_targets, prepared[1].train_targets)
    def rows(prep: Any, part: str) -> list[dict[str, Any]]:
        source = getattr(prep, part)  # the training feed (epoch 0), or the validation dataset
        return list((source.dataset(0) if hasattr(source, "dataset") else source).take_all())

    for part in ("train", "val"):
        got, want = ({int(r["row"]): (np.asarray(r["image"]).tobytes(), int(r["target"]))
                      for r in rows(p, part)} for p in prepared)
        assert got == want and got, part


def test_review_montages_from_a_uri_tile_store_equal_a_local_run(stores: Stores, tmp_path: Path) -> None:
    """Montages of the same tiles, and the same pages, from the bucket as from the folder."""
    from mixture_ray.review.stage import run as run_review

    for where, tiles in (("s3", stores.remote["tiles"]), ("local", stores.local("tiles"))):
        report = run_review(build_config(ReviewConfig, {
            "clusters": stores.analysed.clusters, "tiles": tiles, "out_dir": tmp_path / where,
            "findings": list(ANALYSIS_CLASSES[:-1]), "per_cluster": 8, "thumb_px": 32}))
        assert len(report.pages) == 2  # k = 2 and 3 at 20x
    names = _assert_same_files(tmp_path / "s3", tmp_path / "local")
    assert sum(n.endswith(".png") for n in names) >= 5

