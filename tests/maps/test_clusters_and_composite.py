"""maps: raw k-means cluster maps (non-integrated baseline) and the composite slide figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mixture_ray.cli import EXIT_OK, main
from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.maps.composite import panel_origin
from mixture_ray.maps.config import MapsConfig
from mixture_ray.maps.draw import MAP_ORIGIN
from mixture_ray.maps.layers import cluster_colours, grid_edges
from mixture_ray.maps.stage import map_file
from mixture_ray.maps.stage import run as run_maps
from mixture_ray.palette import finding_colours
from mixture_ray.slides.factory import open_slide
from mixture_ray.store.folder import SUCCESS, committed_files
from mixture_ray.store.manifest import read_manifest
from mixture_ray.store.predictions import load_predictions
from mixture_ray.store.schemas import TILE_KEY
from tests.conftest import ANALYSIS_CLASSES, AnalysedCohort, TiledCohort, classify_with_random_network

pytestmark = pytest.mark.usefixtures("ray_session")
THUMB = 256
#: The classes of a seeded random 5x classifier (``other`` shared with the 20x one).
CLASSES_5X = ("acellular_fibrosis", "edge", "other")


def slide_view(manifest: Path, slide_id: str) -> tuple[np.ndarray, float]:
    """The slide's thumbnail as the maps stage reads it, and thumbnail pixels per level-0 pixel."""
    path = read_manifest(manifest).set_index("slide_id").loc[slide_id, "path"]
    reader = open_slide(str(path), "auto")
    try:
        thumbnail = reader.thumbnail(THUMB)
        width = reader.level_dimensions[0][0]
    finally:
        reader.close()
    return thumbnail, thumbnail.shape[1] / width


def tile_centres(tiles: pd.DataFrame, scale: float, origin: tuple[int, int]) -> list[tuple[int, int]]:
    """(column, row) in the PNG of each tile's centre, for a map whose image starts at ``origin``."""
    return [(origin[0] + int((x + e / 2) * scale), origin[1] + int((y + e / 2) * scale))
            for x, y, e in tiles[["x", "y", "size_level0"]].itertuples(index=False)]


def maps_cfg(tiled: TiledCohort, out: Path, **values: Any) -> MapsConfig:
    return build_config(MapsConfig, {"manifest": tiled.manifest, "out_dir": out, "thumbnail_px": THUMB,
                                     "alpha": 1.0, **values})


@pytest.fixture(scope="module")
def geometry(tiled_cohort: TiledCohort) -> pd.DataFrame:
    """Tile key -> level-0 edge, as the tile store wrote them (the truth for inferred edges)."""
    table = pq.read_table([str(f) for f in committed_files(tiled_cohort.tiles)],
                          columns=[*TILE_KEY, "size_level0"])
    return table.to_pandas()


def test_cluster_map_colours_each_tile_with_its_cluster(
    tiled_cohort: TiledCohort, analysed_cohort: AnalysedCohort, geometry: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "maps"
    report = run_maps(maps_cfg(tiled_cohort, out, clusters=analysed_cohort.clusters, k=3, magnification=20))
    labels = pq.read_table(analysed_cohort.clusters / "mag-20x" / "k-3" / "assignments.parquet").to_pandas()
    assert report.complete and (out / SUCCESS).exists()
    assert sorted(report.agreement.slide_id) == sorted(labels.slide_id.unique())
    assert dict(zip(report.agreement.slide_id, report.agreement.tiles, strict=True)) == \
        labels.slide_id.value_counts().to_dict()
    colours = cluster_colours(3)
    legend = json.loads((out / "legend.json").read_text())
    assert legend == [{"finding": f"c{i}", "cluster": i, "rgb": list(colours[f"c{i}"])} for i in range(3)]
    tiles = labels.merge(geometry, on=list(TILE_KEY), validate="one_to_one")
    assert len(tiles) == len(labels)
    checked = 0
    for slide_id, rows in tiles.groupby("slide_id"):
        _, scale = slide_view(tiled_cohort.manifest, str(slide_id))
        with Image.open(map_file(out, str(slide_id))) as image:
            pixels = np.asarray(image.convert("RGB"))
        for (col, row), cluster in zip(tile_centres(rows, scale, MAP_ORIGIN), rows.cluster, strict=True):
            assert tuple(pixels[row, col]) == colours[f"c{cluster}"], (slide_id, cluster)
            checked += 1
    assert checked == len(labels) and labels.cluster.nunique() > 1


def test_tile_edges_of_cluster_labels_are_the_tiling_stride(
    analysed_cohort: AnalysedCohort, geometry: pd.DataFrame
) -> None:
    labels = pq.read_table(analysed_cohort.clusters / "mag-20x" / "k-2" / "assignments.parquet").to_pandas()
    tiles = labels.merge(geometry, on=list(TILE_KEY))
    np.testing.assert_array_equal(grid_edges(tiles, where="test"), tiles.size_level0)
    one = tiles.iloc[:1].assign(slide_id="lonely")  # a slide with one tile takes the others' edge
    edges = grid_edges(pd.concat([tiles, one], ignore_index=True), where="test")
    assert edges[-1] == tiles.size_level0.iloc[0]
    with pytest.raises(ConfigError, match="single tile"):
        grid_edges(one, where="test")


def test_cluster_colours_are_fixed_by_cluster_id() -> None:
    small, large = cluster_colours(5), cluster_colours(120)
    assert small == {c: large[c] for c in small}  # c3 has one colour whatever k is
    assert small == finding_colours([f"c{i}" for i in range(5)])
    assert len(set(list(large.values())[:60])) == 60


def test_maps_take_exactly_one_of_predictions_and_clusters(
    tiled_cohort: TiledCohort, analysed_cohort: AnalysedCohort, tmp_path: Path
) -> None:
    both = {"predictions": analysed_cohort.predictions, "clusters": analysed_cohort.clusters,
            "k": 2, "magnification": 20}
    with pytest.raises(ConfigError, match=r"predictions, clusters: give exactly one.*both"):
        maps_cfg(tiled_cohort, tmp_path, **both)
    with pytest.raises(ConfigError, match=r"predictions, clusters: give exactly one.*neither"):
        maps_cfg(tiled_cohort, tmp_path)
    with pytest.raises(ConfigError, match="magnification: required with clusters"):
        maps_cfg(tiled_cohort, tmp_path, clusters=analysed_cohort.clusters, k=2)
    with pytest.raises(ConfigError, match="k, magnification"):
        maps_cfg(tiled_cohort, tmp_path, predictions=analysed_cohort.predictions, k=2)
    with pytest.raises(ConfigError, match="truth_cohort"):
        maps_cfg(tiled_cohort, tmp_path, clusters=analysed_cohort.clusters, k=2, magnification=20,
                 truth_cohort=tiled_cohort.cohort)
    missing = maps_cfg(tiled_cohort, tmp_path / "m", clusters=analysed_cohort.clusters, k=7, magnification=20)
    with pytest.raises(ConfigError, match=r"k-7 holds no clustering \(found mag-20x/k-2, mag-20x/k-3\)"):
        run_maps(missing)


@pytest.fixture(scope="module")
def predictions_5x(tiled_cohort: TiledCohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cohort's 5x tiles classified by a seeded random classifier of other findings."""
    return classify_with_random_network(tiled_cohort.tiles, tmp_path_factory.mktemp("maps5x"), CLASSES_5X,
                                        magnification=5.0, seed=5)


def test_composite_shows_the_slide_then_each_magnification_with_one_legend(
    tiled_cohort: TiledCohort, analysed_cohort: AnalysedCohort, predictions_5x: Path, tmp_path: Path
) -> None:
    out = tmp_path / "composite"
    code = main(["maps", "--predictions", f"{analysed_cohort.predictions},{predictions_5x}",
                 "--manifest", str(tiled_cohort.manifest), "--out-dir", str(out),
                 "--thumbnail-px", str(THUMB), "--alpha", "1", "--truth-cohort", str(tiled_cohort.cohort)])
    assert code == EXIT_OK
    stores = {5.0: load_predictions(predictions_5x).rows,
              20.0: load_predictions(analysed_cohort.predictions).rows}
    union = [*CLASSES_5X, *(c for c in ANALYSIS_CLASSES if c not in CLASSES_5X)]  # lowest magnification first
    colours = finding_colours(union)
    assert [entry["finding"] for entry in json.loads((out / "legend.json").read_text())] == union
    agreement = pd.read_csv(out / "agreement.csv")
    for mag, rows in stores.items():
        part = agreement[agreement.magnification == mag].set_index("slide_id").tiles
        assert part.to_dict() == rows.slide_id.value_counts().to_dict()
    slide_id = str(stores[20.0].slide_id.iloc[0])
    thumbnail, scale = slide_view(tiled_cohort.manifest, slide_id)
    height, width = thumbnail.shape[:2]
    with Image.open(map_file(out, slide_id)) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert 3 * width <= pixels.shape[1] < 4 * width  # original, 5x, 20x, then a legend narrower than a panel
    x0, y0 = panel_origin(0, width)
    np.testing.assert_array_equal(pixels[y0:y0 + height, x0:x0 + width], thumbnail)  # panel 0: the slide
    for panel, mag in enumerate(sorted(stores), start=1):
        rows = stores[mag][stores[mag].slide_id == slide_id]
        assert len(rows) > 0
        for (col, row), finding in zip(tile_centres(rows, scale, panel_origin(panel, width)), rows.finding,
                                       strict=True):
            assert tuple(pixels[row, col]) == colours[finding], (mag, finding)
