"""classify (Ray Data actors) -> maps (Ray task per slide) -> cases (per-case frequencies, baseline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from mixture_ray.cases.config import CasesConfig
from mixture_ray.cases.frequencies import frequencies
from mixture_ray.cases.stage import run as run_cases
from mixture_ray.classify.classifier_actor import class_probabilities
from mixture_ray.classify.config import ClassifyConfig
from mixture_ray.classify.stage import run as run_classify
from mixture_ray.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_PARTIAL, main
from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.maps.config import MapsConfig
from mixture_ray.maps.draw import overlay_tiles
from mixture_ray.maps.stage import map_file
from mixture_ray.maps.stage import run as run_maps
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.backbone import Backbone
from mixture_ray.palette import finding_colours
from mixture_ray.store.codec import decode_tile
from mixture_ray.store.folder import INCOMPLETE, SUCCESS, committed_files, read_failures
from mixture_ray.store.predictions import load_predictions
from mixture_ray.store.schemas import TILE_KEY
from mixture_ray.synth.oracle import tile_truth
from tests.conftest import ANALYSIS_CLASSES, AnalysedCohort, TiledCohort

pytestmark = pytest.mark.usefixtures("ray_session")
CLASSES = list(ANALYSIS_CLASSES)


@pytest.fixture(scope="module")
def cohort(tiled_cohort: TiledCohort, analysed_cohort: AnalysedCohort,
           tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> dict[str, Path]:
    """The shared tiled cohort, its seeded random 20x classifier, and a folder for this module's outputs."""
    return {"root": tmp_path_factory.mktemp("classify"), "cohort": tiled_cohort.cohort,
            "manifest": tiled_cohort.manifest, "tiles": tiled_cohort.tiles,
            "classifier": analysed_cohort.classifier}


def classify_cfg(cohort: dict[str, Path], out: Path, **extra: Any) -> ClassifyConfig:
    values = {"tiles": cohort["tiles"], "classifier": cohort["classifier"], "out_dir": out,
              "pool.batch_size": 16, "max_background": 0.7, **extra}
    return build_config(ClassifyConfig, values)


@pytest.fixture(scope="module")
def predictions(cohort: dict[str, Path], analysed_cohort: AnalysedCohort) -> Path:
    """The shared prediction store (classify of the shared cohort; the settings of ``classify_cfg``)."""
    return analysed_cohort.predictions


def test_classify_matches_the_classifier_run_in_process_on_tissue_tiles(
    cohort: dict[str, Path], predictions: Path
) -> None:
    tiles = pq.read_table(committed_files(cohort["tiles"])).to_pandas()
    tiles = tiles[tiles.magnification == 20.0]  # the classifier's magnification
    tissue = tiles[tiles.background_fraction <= 0.7]
    assert len(tissue) < len(tiles)  # the cohort filter dropped some tiles
    pred = load_predictions(predictions, probabilities=True)
    assert pred.classes == tuple(CLASSES)
    rows = pred.rows.merge(tissue, on=list(TILE_KEY), validate="one_to_one")
    assert len(rows) == len(pred.rows) == len(tissue)
    net = Backbone("resnet18", len(CLASSES), classes=CLASSES)
    net.load_state_dict(ckpt.load(cohort["classifier"])["state_dict"])
    images = torch.from_numpy(np.stack([decode_tile(b) for b in rows.image]))
    expected = class_probabilities(net.eval(), images).numpy()
    got = np.stack(rows.probabilities.to_numpy())
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert list(rows.finding) == [CLASSES[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(rows.confidence, expected.max(axis=1), atol=1e-4)


def test_classify_rerun_skips_committed_slides(cohort: dict[str, Path], predictions: Path) -> None:
    before = load_predictions(predictions).rows.sort_values(["slide_id", "x", "y"]).reset_index(drop=True)
    report = run_classify(classify_cfg(cohort, predictions))
    assert report.complete and report.slides_skipped == report.slides_requested > 0
    after = load_predictions(predictions).rows.sort_values(["slide_id", "x", "y"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_classify_refuses_a_missing_classifier_and_other_settings(
    cohort: dict[str, Path], predictions: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        run_classify(classify_cfg(cohort, tmp_path / "p", classifier=tmp_path / "nope.pt"))
    with pytest.raises(ConfigError, match="max_background"):
        run_classify(classify_cfg(cohort, predictions, max_background=0.5))


def test_overlay_colours_each_tile_with_its_class() -> None:
    thumb = np.full((40, 80, 3), 200, np.uint8)
    tiles = np.array([[0, 0, 100], [400, 100, 100]])
    out = overlay_tiles(thumb, (800, 400), tiles, np.array([0, 1]), [(255, 0, 0), (0, 0, 255)], 0.5)
    assert tuple(out[5, 5]) == (228, 100, 100)  # (200 + 255) / 2, 200 / 2, 200 / 2
    assert tuple(out[15, 45]) == (100, 100, 228)
    assert tuple(out[35, 5]) == (200, 200, 200)  # no tile there


def test_palette_is_fixed_by_class_order_and_other_is_grey() -> None:
    colours = finding_colours(CLASSES)
    assert colours == finding_colours(CLASSES)
    assert colours["other"] == (150, 150, 150)
    assert len(set(colours.values())) == len(CLASSES)


def test_maps_draw_every_slide_and_score_agreement_with_truth(
    cohort: dict[str, Path], predictions: Path
) -> None:
    out = cohort["root"] / "maps"
    report = run_maps(build_config(MapsConfig, {"predictions": predictions, "manifest": cohort["manifest"],
                                                "out_dir": out, "thumbnail_px": 256,
                                                "truth_cohort": cohort["cohort"]}))
    pred = load_predictions(predictions).rows
    assert report.complete and (out / SUCCESS).exists()
    assert sorted(report.agreement.slide_id) == sorted(pred.slide_id.unique())
    for slide_id in pred.slide_id.unique():
        with Image.open(map_file(out, slide_id)) as image:
            assert image.width > 256 and image.height >= 256  # map + legend panel
    truth = tile_truth(cohort["cohort"], pred, 16)
    known = truth.isin(CLASSES)
    expected = (truth[known] == pred.finding[known]).groupby(pred.slide_id[known]).mean()
    got = report.agreement.set_index("slide_id").accuracy
    np.testing.assert_allclose(got.loc[expected.index], expected, atol=1e-12)
    legend = json.loads((out / "legend.json").read_text())
    assert [entry["finding"] for entry in legend] == CLASSES


def test_maps_record_a_slide_missing_from_the_manifest(
    cohort: dict[str, Path], predictions: Path, tmp_path: Path
) -> None:
    manifest = pd.read_csv(cohort["manifest"])
    dropped = str(manifest.slide_id.iloc[0])
    manifest["path"] = [str(cohort["manifest"].parent / p) for p in manifest.path]
    manifest.iloc[1:].to_csv(tmp_path / "manifest.csv", index=False)
    code = main(["maps", "--predictions", str(predictions), "--manifest", str(tmp_path / "manifest.csv"),
                 "--out-dir", str(tmp_path / "maps"), "--thumbnail-px", "128"])
    assert code == EXIT_PARTIAL
    record = json.loads((tmp_path / "maps" / INCOMPLETE).read_text())
    assert record["failed_items"] == [dropped]
    failures = read_failures(tmp_path / "maps")
    assert "not in the manifest" in failures.error.iloc[0]


def test_frequencies_normalise_within_each_magnification_after_exclusion() -> None:
    counts = pd.DataFrame({"5x/a": [2, 0], "5x/complete_normal": [6, 3], "20x/a": [1, 0], "20x/b": [3, 0]},
                          index=pd.Index(["c1", "c2"], name="case_id"))
    freq, empty = frequencies(counts, ["5x/complete_normal"])
    assert list(freq.columns) == ["5x/a", "20x/a", "20x/b"]
    assert freq.loc["c1"].tolist() == [1.0, 0.25, 0.75]
    assert empty == ["c2: 5x", "c2: 20x"] and freq.loc["c2"].tolist() == [0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def clustered(analysed_cohort: AnalysedCohort) -> dict[str, Path]:
    """Random-init 20x embeddings of the cohort tiles and their k-means for k = 2, 3 (shared)."""
    return {"embeddings": analysed_cohort.embeddings, "clusters": analysed_cohort.clusters}


def test_cases_counts_frequencies_and_nearest_centroid_baseline(
    cohort: dict[str, Path], predictions: Path, clustered: dict[str, Path]
) -> None:
    root = cohort["root"]
    report = run_cases(build_config(CasesConfig, {
        "predictions": [predictions], "out_dir": root / "cases", "exclude": ["20x/other"],
        "embeddings": [clustered["embeddings"]], "clusters": clustered["clusters"], "baseline_ks": [2, 3]}))
    pred = load_predictions(predictions).rows
    per_case = pred.groupby("case_id").size()
    assert report.counts.sum(axis=1).loc[per_case.index].tolist() == per_case.tolist()
    assert list(report.counts.columns) == [f"20x/{c}" for c in CLASSES]
    assert "20x/other" not in report.frequencies.columns
    np.testing.assert_allclose(report.frequencies.sum(axis=1), 1.0)
    written = pd.read_csv(root / "cases" / "frequencies.csv")
    assert written.case_id.tolist() == sorted(per_case.index)
    # The baseline assigns the clustered tiles themselves: it must reproduce k-means' own labels.
    for k in (2, 3):
        folder = clustered["clusters"] / "mag-20x" / f"k-{k}"
        assignments = pq.read_table(folder / "assignments.parquet").to_pandas()
        expected = pd.crosstab(assignments.case_id, assignments.cluster)
        expected = expected.div(expected.sum(axis=1), axis=0)
        table = report.baseline[k]
        assert list(table.columns) == [f"20x/c{c}" for c in range(k)]
        np.testing.assert_allclose(table.loc[expected.index].to_numpy(), expected.to_numpy(), atol=0.02)
        assert (root / "cases" / "baseline" / f"k{k}.csv").exists()
    assert (root / "cases" / SUCCESS).exists()


def test_cases_cli_refuses_bad_exclusions_and_a_missing_k(
    predictions: Path, clustered: dict[str, Path], tmp_path: Path
) -> None:
    code = main(["cases", "--predictions", f"[{predictions}]", "--out-dir", str(tmp_path / "a"),
                 "--exclude", "[complete_normal]"])
    assert code == EXIT_BAD_INPUT
    code = main(["cases", "--predictions", f"[{predictions}]", "--out-dir", str(tmp_path / "b")])
    assert code == EXIT_OK
    with pytest.raises(ConfigError, match="k-7"):
        run_cases(build_config(CasesConfig, {
            "predictions": [predictions], "out_dir": tmp_path / "c", "embeddings": [clustered["embeddings"]],
            "clusters": clustered["clusters"], "baseline_ks": [7]}))
