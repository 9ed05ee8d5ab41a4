"""Review stage: export in real headless Chromium, mapping validation, integration, oracle, montages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from mixture_ray.config import build_config
from mixture_ray.review.config import IntegrateConfig, ReviewConfig
from mixture_ray.review.integrate import run_integrate
from mixture_ray.review.mapping import MappingError, load_mapping
from mixture_ray.review.stage import run as run_review
from mixture_ray.store.folder import committed_files
from mixture_ray.store.schemas import TILE_ID_COLUMNS
from mixture_ray.synth.config import SynthConfig
from mixture_ray.tile.config import TileConfig
from mixture_ray.tile.stage import run as run_tiling
from tests.conftest import TiledCohort
from tests.review.conftest import EVIL, Lung, images_the_old_way, needs_chromium, write_clustering

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.usefixtures("ray_session")


@needs_chromium
def test_review_in_chromium_exports_a_mapping_that_integrates(
    page: Path, lung: Lung, browser: Browser, tmp_path: Path
) -> None:
    _, _, truth = lung
    dialogs: list[str] = []
    context = browser.new_context()
    tab = context.new_page()
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.goto(page.as_uri())
    assert EVIL in tab.inner_text("body")  # shown as text, not run
    tab.click("#export")
    assert "Not assigned yet: cluster(s) 0, 1, 2" in tab.inner_text("#status")
    tab.select_option("select[data-cluster='0']", "LUAD")
    tab.select_option("select[data-cluster='1']", "LUSC")
    tab.select_option("select[data-cluster='2']", "exclude")
    tab.click("#export")
    assert "All 3 clusters assigned" in tab.inner_text("#status")
    exported = tab.input_value("#mapping-output")
    tab.screenshot(path=str(tmp_path / "review.png"), full_page=False)
    context.close()
    assert dialogs == []
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(exported)
    mapping = load_mapping(mapping_file, ["LUAD", "LUSC"])
    assert mapping.clusters == {0: "LUAD", 1: "LUSC", 2: "exclude"} and mapping.k == 3
    report = run_integrate(
        build_config(
            IntegrateConfig,
            {"mappings": [mapping_file], "out_dir": tmp_path / "labels", "findings": ["LUAD", "LUSC"]},
        )
    )
    labels = pq.read_table(report.path).to_pandas()
    expected = truth[truth.cluster != 2]
    assert len(labels) == len(expected)
    assert report.counts == expected.label.value_counts().to_dict()


def test_invalid_mapping_lists_every_problem_and_writes_nothing(
    lung: Lung, tmp_path: Path
) -> None:
    clusters, _, _ = lung
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"clustering: {clusters / 'mag-unknown' / 'k-3'}\nk: 3\nclusters:\n"
        "  0: LUAD\n  0: LUSC\n  7: LUSC\n  1: adenoma\n"
    )
    with pytest.raises(MappingError) as info:
        run_integrate(
            build_config(
                IntegrateConfig,
                {"mappings": [bad], "out_dir": tmp_path / "labels", "findings": ["LUAD", "LUSC"]},
            )
        )
    message = str(info.value)
    assert "cluster 0 assigned twice (lines 4 and 5)" in message
    assert "unknown finding 'adenoma'" in message
    assert "cluster id(s) 7 are not in the clustering" in message
    assert "cluster(s) 2 left unassigned" in message
    assert not (tmp_path / "labels").exists()


def test_later_mappings_and_corrections_override(
    lung: Lung, tmp_path: Path
) -> None:
    clusters, _, truth = lung
    folder = clusters / "mag-unknown" / "k-3"
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(
        yaml.safe_dump({"clustering": str(folder), "k": 3, "clusters": {0: "LUAD", 1: "LUSC", 2: "other"}})
    )
    second.write_text(
        yaml.safe_dump({"clustering": str(folder), "k": 3, "clusters": {0: "LUAD", 1: "LUSC", 2: "exclude"}})
    )
    row = truth[truth.cluster == 0].iloc[0]
    corrections = tmp_path / "fix.csv"
    corrections.write_text(f"slide_id,x,y,magnification,finding\n{row.slide_id},{row.x},{row.y},,LUSC\n")
    report = run_integrate(
        build_config(
            IntegrateConfig,
            {
                "mappings": [first, second],
                "corrections": corrections,
                "out_dir": tmp_path / "labels",
                "findings": ["LUAD", "LUSC"],
            },
        )
    )
    labels = pq.read_table(report.path).to_pandas()
    assert "other" not in set(labels.finding)  # the later mapping excluded cluster 2
    fixed = labels[labels.slide_id == row.slide_id]
    assert fixed.finding.tolist() == ["LUSC"] and fixed.source.str.startswith("corrections").all()


def test_oracle_mapping_from_synthetic_truth(tmp_path: Path) -> None:
    from mixture_ray.synth.cohort import write_cohort
    from mixture_ray.synth.oracle import ORACLE_SOURCE, tile_truth

    cohort = write_cohort(
        build_config(
            SynthConfig,
            {
                "out_dir": tmp_path / "cohort",
                "n_cases": 2,
                "width": 1024,
                "height": 1024,
                "max_slides_per_case": 1,
                "seed": 2,
            },
        )
    )
    tiles_dir = tmp_path / "tiles"
    run_tiling(
        build_config(
            TileConfig,
            {
                "manifest": cohort.manifest,
                "out_dir": tiles_dir,
                "tile_size": 64,
                "magnifications": [20.0],
                "max_tiles_per_slide": 80,
            },
        )
    )
    tiles = pq.read_table(committed_files(tiles_dir)).to_pandas()
    truth = tile_truth(cohort.root, tiles)
    codes = {name: i for i, name in enumerate(sorted(set(truth)))}
    clusters = truth.map(codes).to_numpy().astype(np.int32)
    mixed = len(codes)
    clusters[np.random.default_rng(0).random(len(tiles)) < 0.3] = mixed  # a mixed cluster
    keys = tiles[list(TILE_ID_COLUMNS)]
    write_clustering(tmp_path / "clusters" / "mag-20x" / f"k-{mixed + 1}", keys, clusters, mixed + 1)
    names = [f["name"] for f in json.loads(cohort.findings.read_text())]
    report = run_review(
        build_config(
            ReviewConfig,
            {
                "clusters": tmp_path / "clusters",
                "tiles": tiles_dir,
                "out_dir": tmp_path / "review",
                "findings": names,
                "per_cluster": 10,
                "oracle_cohort": cohort.root,
            },
        )
    )
    text = report.pages[0].read_text()  # no site column in the tile store and no manifest: no site line
    assert 'data-kind="slides"' in text and 'data-kind="cases"' in text and 'data-kind="sites"' not in text
    mapping = load_mapping(report.oracle_mappings[0], names)
    assert mapping.source == ORACLE_SOURCE
    assert mapping.clusters[mixed] == "exclude"
    assert {c: mapping.clusters[c] for c in codes.values()} == {i: n for n, i in codes.items()}


def test_montages_read_only_the_sampled_tiles_and_equal_the_old_full_read(
    page: Path, lung: Lung, tiled_cohort: TiledCohort
) -> None:
    """The pushdown read returns exactly the old full-slide read's rows (imported tiles with no
    magnification, and a tiled store at two magnifications with a key that is not stored), and the
    montages on the page are the ones the old read gives."""
    from mixture_ray.review.montage import montage_png, sample_per_cluster
    from mixture_ray.review.tile_parts import TileParts, fetch_images, read_images

    clusters, tiles, truth = lung
    files = [str(f) for f in committed_files(tiles)]
    assignments = pq.read_table(clusters / "mag-unknown" / "k-3" / "assignments.parquet").to_pandas()
    sample = sample_per_cluster(assignments, 20, 0)[["slide_id", "x", "y", "magnification", "cluster"]]
    new, old = fetch_images(TileParts.open(tiles), sample), images_the_old_way(files, sample)
    pd.testing.assert_frame_equal(new, old)
    assert len(read_images(files, sample)) == sample.slide_id.ne(EVIL).sum() < len(truth)
    for cluster, rows in old.groupby("cluster", sort=True):
        png = montage_png([b for b in rows["image"] if isinstance(b, bytes)], thumb=96)
        assert (page.parent / "montages" / "unknown" / "k3" / f"cluster-{cluster}.png").read_bytes() == png

    cohort_files = [str(f) for f in committed_files(tiled_cohort.tiles)]
    stored = pq.read_table(cohort_files, columns=["slide_id", "x", "y", "magnification"]).to_pandas()
    keys = stored.sample(n=25, random_state=1).reset_index(drop=True)
    keys.loc[0, "x"] = -1  # not stored: no image, as before
    keys.loc[1, "magnification"] = 7.0  # a stored position at another magnification: no image either
    new, old = fetch_images(TileParts.open(tiled_cohort.tiles), keys), images_the_old_way(cohort_files, keys)
    pd.testing.assert_frame_equal(new, old)
    assert new.image.isna().sum() == 2 and new.image.iloc[2:].map(lambda b: isinstance(b, bytes)).all()
    stored_rows = len(read_images(cohort_files, keys))
    assert 23 <= stored_rows < len(stored) // 10  # the sampled positions only, not their slides
