"""Round trips: each export read back with the library its users use (geojson/shapely, anndata, h5py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.export.config import ExportConfig
from mixture_ray.export.stage import run as run_export
from mixture_ray.palette import finding_colours
from mixture_ray.slides import open_slide
from mixture_ray.store.embeddings import load_embeddings
from mixture_ray.store.folder import SUCCESS, committed_files
from mixture_ray.store.predictions import load_predictions
from tests.conftest import AnalysedCohort, TiledCohort

pytestmark = pytest.mark.usefixtures("ray_session")
KEY = ["slide_id", "x", "y", "magnification"]


@pytest.fixture(scope="module")
def exported(
    tiled_cohort: TiledCohort, analysed_cohort: AnalysedCohort, tmp_path_factory: pytest.TempPathFactory,
    ray_session: None,
) -> dict[str, Path]:
    """The shared cohort's 20x predictions, random-init embeddings and k-means (k = 2, 3), exported."""
    root = tmp_path_factory.mktemp("export")
    stores = {"predictions": analysed_cohort.predictions, "clusters": analysed_cohort.clusters,
              "embeddings": analysed_cohort.embeddings, "tiles": tiled_cohort.tiles}
    report = run_export(build_config(ExportConfig, {"out_dir": root / "export", **stores}))
    assert report.complete and (root / "export" / SUCCESS).exists(), report.summary()
    return {"root": root, "tiles": tiled_cohort.tiles, "emb": analysed_cohort.embeddings,
            "pred": analysed_cohort.predictions, "clusters": analysed_cohort.clusters,
            "export": root / "export"}


def _assignments(clusters: Path, k: int) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in sorted(clusters.glob(f"mag-*/k-{k}/assignments.parquet"))]
    return pd.concat(frames)[[*KEY, "cluster"]]


def test_qupath_geojson_tiles_are_valid_and_match_the_prediction_store(exported: dict[str, Path]) -> None:
    import geojson
    from shapely.geometry import shape

    pred = load_predictions(exported["pred"], probabilities=True)
    rows = pred.rows
    colours = finding_colours(pred.classes)
    k2 = _assignments(exported["clusters"], 2)
    files = sorted((exported["export"] / "qupath").glob("*.geojson"))
    assert sorted(p.stem for p in files) == sorted(rows.slide_id.unique())
    for path in files:
        with path.open() as fh:
            collection = geojson.load(fh)
        assert collection.is_valid and collection["type"] == "FeatureCollection"
        mine = rows[rows.slide_id == path.stem].set_index(["x", "y"])
        assert len(collection["features"]) == len(mine) > 0
        for feature in collection["features"]:
            polygon = shape(feature["geometry"])
            assert polygon.is_valid and feature["properties"]["objectType"] == "tile"
            x0, y0, x1, y1 = polygon.bounds
            row = mine.loc[(int(x0), int(y0))]  # level-0 origin top-left, as in the tile store
            assert x1 - x0 == y1 - y0 == row.size_level0 and polygon.area == row.size_level0**2
            cls = feature["properties"]["classification"]
            assert cls["name"] == row.finding and tuple(cls["color"]) == colours[row.finding]
            numbers = feature["properties"]["measurements"]
            probs = [numbers[f"probability {c}"] for c in pred.classes]
            np.testing.assert_allclose(probs, row.probabilities, atol=1e-6)
            assert numbers["confidence"] == pytest.approx(max(probs), abs=1e-6)
            expected = k2[
                (k2.slide_id == path.stem) & (k2.x == x0) & (k2.y == y0) & (k2.magnification == 20.0)
            ]
            assert numbers["cluster k=2"] == expected.cluster.iloc[0]


def test_anndata_h5ad_reads_back_with_features_labels_and_spatial(exported: dict[str, Path]) -> None:
    import anndata as ad

    embeddings = load_embeddings(exported["emb"], "features")
    predictions = load_predictions(exported["pred"]).rows.set_index(["slide_id", "x", "y"]).finding
    k3 = _assignments(exported["clusters"], 3).set_index(KEY).cluster
    for mag, (keys, matrix) in embeddings.items():
        adata = ad.read_h5ad(exported["export"] / "anndata" / f"embeddings_mag-{mag:g}x.h5ad")
        assert adata.shape == matrix.shape and adata.obs_names.is_unique
        np.testing.assert_array_equal(adata.X, matrix)  # same row order as the store reader
        obs = adata.obs
        assert obs.slide_id.astype(str).tolist() == keys.slide_id.tolist()
        np.testing.assert_array_equal(adata.obsm["spatial"], keys[["x", "y"]].to_numpy())
        assert {
            "case_id",
            "magnification",
            "mpp",
            "size_level0",
            "cluster_k2",
            "cluster_k3",
            "finding",
        } <= set(obs)
        got = obs.set_index(["slide_id", "x", "y", "magnification"]).cluster_k3
        assert (got.to_numpy() == k3.loc[list(got.index)].to_numpy()).all()
        findings = obs.finding.astype(str)
        if mag == 20.0:
            index = pd.MultiIndex.from_arrays([obs.slide_id.astype(str), obs.x, obs.y])
            expected = predictions.reindex(index).fillna("unclassified")  # classify skips background tiles
            assert findings.tolist() == expected.tolist() and (expected != "unclassified").any()
        else:
            assert set(findings) == {"unclassified"}
        provenance = json.loads(adata.uns["mixture_ray"]["embedding_settings"])
        assert provenance["model"] == "random"


def test_trident_h5_coords_and_features_in_the_documented_layout(exported: dict[str, Path]) -> None:
    tiles = pq.read_table(committed_files(exported["tiles"])).to_pandas()
    features = {m: (k, x) for m, (k, x) in load_embeddings(exported["emb"], "features").items()}
    folder = exported["export"] / "h5" / "20x_32px_0px_overlap"
    coords_files = sorted((folder / "patches").glob("*_patches.h5"))
    assert len(coords_files) == tiles.slide_id.nunique()
    for path in coords_files:
        slide_id = path.name.removesuffix("_patches.h5")
        mine = tiles[(tiles.slide_id == slide_id) & (tiles.magnification == 20.0)]
        with h5py.File(path, "r") as fh:
            coords, attrs = fh["coords"][:], dict(fh["coords"].attrs)
        assert coords.dtype == np.int64 and coords.shape == (len(mine), 2)
        assert sorted(map(tuple, coords)) == sorted(zip(mine.x, mine.y, strict=True))
        reader = open_slide(Path(mine.source.iloc[0]))
        width, height = reader.level_dimensions[0]
        reader.close()
        size0 = int(mine.size_level0.iloc[0])
        assert attrs["patch_size"] == 32 and attrs["patch_size_level0"] == size0 and attrs["overlap"] == 0
        assert attrs["target_magnification"] == 20.0
        assert attrs["level0_magnification"] == pytest.approx(20.0 * size0 / 32)
        assert (attrs["level0_width"], attrs["level0_height"]) == (width, height) and attrs[
            "name"
        ] == slide_id
        assert attrs["patch_level"] == int(mine.level.iloc[0]) and len(attrs["downsample"]) == 2  # CLAM
        with h5py.File(folder / "features_mixture_ray_features" / f"{slide_id}.h5", "r") as fh:
            feats, fcoords = fh["features"][:], fh["coords"][:]
            assert fh["features"].attrs["encoder"] == "mixture_ray_features"
        keys, matrix = features[20.0]
        lookup = {(s, x, y): i for i, (s, x, y) in enumerate(zip(keys.slide_id, keys.x, keys.y, strict=True))}
        expected = matrix[[lookup[(slide_id, int(x), int(y))] for x, y in fcoords]]
        np.testing.assert_array_equal(feats, expected)


def test_ome_tiff_heatmaps_open_in_tiffslide_and_openslide(exported: dict[str, Path]) -> None:
    import openslide
    import tifffile
    import tiffslide

    pred = load_predictions(exported["pred"], probabilities=True)
    tiles = pq.read_table(committed_files(exported["tiles"])).to_pandas()
    slide_id = sorted(pred.rows.slide_id.unique())[0]
    rows = pred.rows[pred.rows.slide_id == slide_id]
    mine = tiles[(tiles.slide_id == slide_id) & (tiles.magnification == 20.0)]
    cell, mpp = int(mine.size_level0.iloc[0]), float(mine.mpp.iloc[0]) * 32
    reader = open_slide(Path(mine.source.iloc[0]))
    width, height = reader.level_dimensions[0]
    reader.close()
    for i, finding in enumerate(pred.classes):
        path = exported["export"] / "heatmaps" / slide_id / f"{finding}.ome.tif"
        with tifffile.TiffFile(path) as tif:
            assert tif.is_ome and f"{slide_id}: {finding}" in tif.ome_metadata
        for opener, prefix in ((tiffslide.TiffSlide, "tiffslide"), (openslide.OpenSlide, "openslide")):
            slide = opener(str(path))
            assert slide.level_dimensions[0] == (-(-width // cell), -(-height // cell))
            assert float(slide.properties[f"{prefix}.mpp-x"]) == pytest.approx(mpp, rel=1e-4)
            pixels = np.asarray(slide.read_region((0, 0), 0, slide.level_dimensions[0]))[..., 0]
            slide.close()
            for row in rows.itertuples():
                expected = 1 + round(254 * float(row.probabilities[i]))
                assert abs(int(pixels[row.y // cell, row.x // cell]) - expected) <= 1
            assert (pixels > 0).sum() == len(rows)  # 0 where no tile was classified


@pytest.fixture(scope="module")
def explained(explain_check: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory,
              ray_session: None) -> dict[str, Path]:
    """The session's known-truth explain run (fit and apply, K = 3, three 1024 px slides), the same
    slides tiled (64 px at 20x, up to 24 tiles each) and a hand-made k = 2 clustering of those tiles."""
    import pyarrow as pa

    from mixture_ray.tile.config import TileConfig
    from mixture_ray.tile.stage import run as run_tiling

    checked, _ = explain_check
    root = tmp_path_factory.mktemp("explained")
    tiles = root / "tiles"
    report = run_tiling(build_config(TileConfig, {
        "manifest": checked / "cohort" / "manifest.csv", "out_dir": tiles, "tile_size": 64,
        "magnifications": [20.0], "max_tiles_per_slide": 24, "pool.workers": 1}))
    assert report.complete, report.summary()
    keys = pq.read_table(committed_files(tiles), columns=KEY).to_pandas()
    keys["cluster"] = (np.arange(len(keys)) % 2).astype(np.int32)
    folder = root / "clusters" / "mag-20x" / "k-2"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(keys, preserve_index=False), folder / "assignments.parquet")
    return {"root": root, "explain": checked / "explain", "tiles": tiles, "clusters": root / "clusters"}


def test_ome_tiff_nmf_class_heatmaps_of_an_explain_apply(explained: dict[str, Path]) -> None:
    import tiffslide

    explain, out = explained["explain"], explained["root"] / "export_heatmaps"
    report = run_export(build_config(ExportConfig, {"out_dir": out, "explain": explain}))
    assert report.complete and "NMF class heatmaps" in report.summary()
    applied = json.loads((explain / "apply" / SUCCESS).read_text())
    mpp = json.loads((explain / "nmf" / "_settings.json").read_text())["grid"]["mpp"]
    for slide_id in applied["slides"]:
        count = np.load(explain / "grids" / slide_id / "count.npy")
        weights = np.load(explain / "apply" / slide_id / "k3_weights.npy")
        cell_px = json.loads((explain / "grids" / slide_id / "meta.json").read_text())["cell_px"]
        for c in range(3):
            slide = tiffslide.TiffSlide(out / "heatmaps" / slide_id / f"nmf_k3_class{c}.ome.tif")
            pixels = np.asarray(slide.read_region((0, 0), 0, slide.level_dimensions[0]))[..., 0]
            assert pixels.shape == count.shape
            assert float(slide.properties["tiffslide.mpp-x"]) == pytest.approx(mpp * cell_px, rel=1e-4)
            slide.close()
            w = np.where(count > 0, weights[..., c], 0.0)
            expected = np.where(count > 0, 1 + np.round(254 * w / w.max()), 0)
            assert np.abs(pixels.astype(int) - expected).max() <= 1


def test_qupath_tiles_carry_the_mean_nmf_class_weight_over_their_footprint(
    explained: dict[str, Path],
) -> None:
    """Each tile's ``nmf_k3_class<j>`` is the mean weight of the covered grid cells whose centre lies
    in the tile's level-0 square, computed here cell by cell from the apply's weight map."""
    import geojson
    from shapely.geometry import shape

    explain, out = explained["explain"], explained["root"] / "export_qupath"
    report = run_export(build_config(ExportConfig, {
        "out_dir": out, "formats": ["qupath"], "tiles": explained["tiles"],
        "clusters": explained["clusters"], "explain": explain}))
    assert report.complete and "NMF class weights of K=[3]" in report.summary()
    files = sorted((out / "qupath").glob("*.geojson"))
    applied = json.loads((explain / "apply" / SUCCESS).read_text())
    assert sorted(p.stem for p in files) == sorted(applied["slides"])
    checked = multi_cell = 0
    for path in files:
        with path.open() as fh:
            collection = geojson.load(fh)
        assert collection.is_valid and len(collection["features"]) > 0
        grid = explain / "grids" / path.stem
        cell = json.loads((grid / "meta.json").read_text())["cell_level0"]
        count = np.load(grid / "count.npy")
        weights = np.load(explain / "apply" / path.stem / "k3_weights.npy")
        rows, cols = np.mgrid[0 : count.shape[0], 0 : count.shape[1]]
        centre_x, centre_y = (cols + 0.5) * cell, (rows + 0.5) * cell
        for feature in collection["features"]:
            polygon = shape(feature["geometry"])
            assert polygon.is_valid and feature["properties"]["objectType"] == "tile"
            numbers = feature["properties"]["measurements"]
            assert numbers["cluster k=2"] in (0, 1)
            x0, y0, x1, y1 = polygon.bounds
            assert x1 - x0 > cell  # a tile spans several grid cells: the footprint is a mean
            inside = ((centre_x >= x0) & (centre_x < x1) & (centre_y >= y0) & (centre_y < y1)
                      & (count > 0))
            if not inside.any():
                assert "nmf_k3_class0" not in numbers
                continue
            expected = weights[inside].astype(np.float64).mean(axis=0)
            for j in range(3):
                assert numbers[f"nmf_k3_class{j}"] == pytest.approx(expected[j], rel=1e-6, abs=1e-9)
            checked += 1
            multi_cell += int(inside.sum() > 1)
    assert checked > 0 and multi_cell > 0


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="formats: no input"):
        build_config(ExportConfig, {"out_dir": tmp_path / "e"})
    values: dict[str, Any] = {"out_dir": tmp_path / "e", "formats": ["anndata", "h5"]}
    with pytest.raises(ConfigError, match="anndata needs embeddings; h5 needs tiles"):
        build_config(ExportConfig, values)
    with pytest.raises(ConfigError, match="qupath needs predictions, or clusters with tiles"):
        build_config(ExportConfig, {"out_dir": tmp_path / "e", "formats": ["qupath"], "clusters": tmp_path})
