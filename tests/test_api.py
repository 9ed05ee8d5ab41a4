"""The Python API: stages as keyword functions with the CLI's checks, stores opened with their committed
rows only, and the example notebook (a jupytext script) run end to end on a small run folder."""

from __future__ import annotations

import json
import runpy
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from mixture_ray import api
from mixture_ray.errors import ConfigError
from mixture_ray.stats.simulate import simulate_cohort
from mixture_ray.store.folder import StageFolder
from mixture_ray.synth.cohort import Cohort

if TYPE_CHECKING:
    from tests.conftest import AnalysedCohort, TiledCohort

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "demo_tour.py"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory, tiled_cohort: TiledCohort,
               analysed_cohort: AnalysedCohort) -> Path:
    """A run folder laid out as the demo's: analysis/{tiles,predictions,embeddings,stats}."""
    run = tmp_path_factory.mktemp("run")
    analysis = run / "analysis"
    analysis.mkdir()
    for name, store in (("tiles", tiled_cohort.tiles), ("predictions", analysed_cohort.predictions),
                        ("embeddings", analysed_cohort.embeddings)):
        (analysis / name).symlink_to(store, target_is_directory=True)
    paths = simulate_cohort(60, seed=5, tiles=200, baseline_ks=(4,)).write(run / "simulated")
    (run / "simulated" / "_SUCCESS").write_text("{}")
    report = api.stats(frequencies=run / "simulated", clinical=paths["clinical"],
                       baseline_dir=paths["baseline_dir"], baseline_ks=[4], out_dir=analysis / "stats",
                       rf_trees=30, bootstrap_iterations=0)
    assert report.complete
    return run


def test_the_notebook_walks_a_run(run_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXTURE_RAY_RUN", str(run_folder))
    monkeypatch.setenv("MIXTURE_RAY_TOUR_OUT", str(tmp_path / "figures"))
    found: dict[str, Any] = runpy.run_path(str(NOTEBOOK), run_name="__main__")
    analysis = run_folder / "analysis"
    tile_rows = sum(StageFolder(analysis / "tiles", stage="").committed_items().values())
    assert len(found["tiles"]) == tile_rows and tile_rows > 0
    predicted = sum(StageFolder(analysis / "predictions", stage="").committed_items().values())
    assert len(found["predictions"]) == predicted == found["dataset"].count()
    assert found["finding_share"].sum() == pytest.approx(1.0)
    image = np.asarray(Image.open(found["map_png"]).convert("RGB"))
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # a drawn map, not a blank page
    embedded = sum(StageFolder(analysis / "embeddings", stage="").committed_items().values())
    adata = found["embeddings"]
    assert adata.n_obs == embedded and adata.X.shape == (embedded, 512)
    assert adata.obsm["spatial"].shape == (embedded, 2)
    summary = json.loads((analysis / "stats" / "summary.json").read_text())
    assert found["best"] == summary["best_integrated"] and 0.0 <= found["best"]["auc"] <= 1.0


def test_stages_take_keywords_with_the_cli_checks(tmp_path: Path) -> None:
    assert "tile" in api.stage_names() and "explain_fit" in api.stage_names()
    assert callable(api.tile) and "tile store" in (api.tile.__doc__ or "").lower()
    with pytest.raises(ConfigError, match="nonsense"):
        api.tile(manifest=tmp_path / "m.csv", out_dir=tmp_path / "t", nonsense=1)
    with pytest.raises(ConfigError, match="unknown stage 'tiling'"):
        api.run("tiling")
    with pytest.raises(AttributeError, match="stages: synth"):
        api.tiling  # noqa: B018
    cohort = api.synth(out_dir=tmp_path / "cohort", n_cases=1, width=512, height=512, seed=1)
    again = api.run("synth", out_dir=str(tmp_path / "cohort2"), n_cases=1, width=512, height=512, seed=1)
    assert isinstance(cohort, Cohort) and isinstance(again, Cohort) and cohort.manifest.exists()
    assert again.n_slides == cohort.n_slides >= 1 and again.n_cases == 1


def test_a_partial_store_shows_only_its_whole_slides(analysed_cohort: AnalysedCohort, tmp_path: Path) -> None:
    store = tmp_path / "predictions"
    shutil.copytree(analysed_cohort.predictions, store)
    full = api.read_store(store, columns=["slide_id", "x", "y"])
    for name in ("_SUCCESS", "_index.json"):  # a run stopped part-way: only markers remain
        (store / name).unlink(missing_ok=True)
    marker = sorted(store.rglob("_COMMITTED*.json"))[0]
    payload = json.loads(marker.read_text())
    cut = sorted(payload["totals"])[0]
    payload["totals"][cut] += 5  # that slide's last rows never came
    marker.write_text(json.dumps(payload))
    partial = api.read_store(store, columns=["slide_id", "x", "y"])
    assert cut not in set(partial["slide_id"]) and cut in set(full["slide_id"])
    assert len(partial) == int((full["slide_id"] != cut).sum())
    assert list(partial.columns) == ["slide_id", "x", "y"]
    only = api.read_store(store, columns=["x"], magnification=20.0)
    assert list(only.columns) == ["x"] and len(only) == len(partial)
    with pytest.raises(ConfigError, match="no committed rows"):
        api.read_store(tmp_path / "nothing")
