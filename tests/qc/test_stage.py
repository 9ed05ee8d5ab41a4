"""`mixture-ray qc` on doctored synthetic slides: decisions, outputs, the tile API, the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.qc.config import QcConfig
from mixture_ray.qc.stage import QcReport, run
from mixture_ray.slides import open_slide
from mixture_ray.store.folder import INCOMPLETE, SUCCESS, read_failures
from mixture_ray.store.qc_table import QC_SCHEMA, read_qc
from mixture_ray.synth.cohort import write_cohort
from mixture_ray.synth.config import SynthConfig
from tests.qc import helpers

pytestmark = pytest.mark.usefixtures("ray_session")

EVIL = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIZE = 512


@pytest.fixture(scope="module")
def qc_run(tmp_path_factory: pytest.TempPathFactory) -> QcReport:
    """Two good synthetic slides and doctored copies of the first, QC'd once for the module."""
    root = tmp_path_factory.mktemp("qc")
    cohort = write_cohort(build_config(SynthConfig, {
        "out_dir": root / "cohort", "n_cases": 2, "min_slides_per_case": 1, "max_slides_per_case": 1,
        "width": SIZE, "height": SIZE, "levels": 2, "tile_px": 128, "seed": 3}))
    images = {}
    for slide_id in ("case000_s0", "case001_s0"):
        reader = open_slide(cohort.slides_dir / f"{slide_id}.svs")
        images[slide_id] = reader.read_region((0, 0), 0, (SIZE, SIZE))
        reader.close()
    base = images["case000_s0"]
    doctored = root / "doctored"
    doctored.mkdir()
    rows = [{"slide_id": s, "case_id": s[:7], "path": cohort.slides_dir / f"{s}.svs", "mpp": 0.5}
            for s in images]
    for slide_id, image in {"faded": helpers.faded(base), "blurred": helpers.blurred(base),
                            "pen": helpers.with_pen(base), "fold": helpers.with_fold(base),
                            "fluorescence": helpers.fluorescence_like(base), "ihc": helpers.ihc_like(base),
                            EVIL: base}.items():
        path = helpers.write_like_svs(doctored / f"{len(rows)}.svs", image)
        rows.append({"slide_id": slide_id, "case_id": "doctored", "path": path, "mpp": 0.5})
    rows.append({"slide_id": "no_mpp", "case_id": "doctored", "mpp": None,
                 "path": helpers.write_plain_tiff(doctored / "no_mpp.tif", base)})
    broken = doctored / "broken.svs"
    broken.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    rows.append({"slide_id": "broken", "case_id": "doctored", "path": broken, "mpp": 0.5})
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    cfg = build_config(QcConfig, {"manifest": manifest, "out_dir": root / "qc", "tile_px": 64,
                                  "tiles_per_slide": 8, "magnifications": [5.0, 20.0]})
    return run(cfg)


def by_id(report: QcReport) -> dict[str, pd.Series]:
    return {str(r.slide_id): r for _, r in report.table.iterrows()}


def test_decisions_of_good_and_doctored_slides(qc_run: QcReport) -> None:
    rows = by_id(qc_run)
    expected = {"case000_s0": "pass", "case001_s0": "pass", EVIL: "pass", "faded": "flag",
                "blurred": "flag", "pen": "flag", "fold": "flag", "no_mpp": "flag",
                "fluorescence": "fail", "ihc": "fail", "broken": "fail"}
    assert {s: r.decision for s, r in rows.items()} == expected
    assert rows["case000_s0"].reason == ""
    reasons = {s: str(r.reason) for s, r in rows.items()}
    assert reasons["faded"].startswith("faded stain") and "blur" not in reasons["faded"]
    assert reasons["blurred"].startswith("blur: 100% of 8 sampled tiles")
    assert reasons["pen"].startswith("pen marks") and "fold" not in reasons["pen"]
    assert reasons["fold"].startswith("tissue folds")
    assert reasons["no_mpp"].startswith("mpp missing") and "manifest's mpp column" in reasons["no_mpp"]
    assert reasons["fluorescence"].startswith("not H&E: fluorescence")
    assert reasons["ihc"].startswith("not H&E: IHC")
    assert reasons["broken"].startswith("unreadable:")
    assert rows["faded"].stain_intensity < 0.6 < rows["case000_s0"].stain_intensity
    assert rows["blurred"].laplacian_var_median < 40 < rows["case000_s0"].laplacian_var_median


def test_metrics_tables_and_completion_markers(qc_run: QcReport) -> None:
    out = qc_run.out_dir
    table = pd.read_parquet(out / "qc.parquet")
    csv = pd.read_csv(out / "qc.csv", keep_default_na=False)
    assert list(table.columns) == QC_SCHEMA.names and list(csv.columns) == QC_SCHEMA.names
    assert sorted(csv.slide_id) == sorted(table.slide_id) and len(table) == 11
    good = table.set_index("slide_id").loc["case000_s0"]
    # 512 px at 0.5 um/px: 0.065536 mm2 of slide
    assert good.tissue_area_mm2 == pytest.approx(good.tissue_fraction * 0.065536, rel=1e-6)
    assert 0.3 < good.tissue_fraction < 0.9 and good.mpp == 0.5 and good.tiles_sampled == 8
    assert np.isnan(table.set_index("slide_id").loc["no_mpp"].tissue_area_mm2)
    assert not qc_run.complete and not (out / SUCCESS).exists()
    marker = json.loads((out / INCOMPLETE).read_text())
    assert marker["failed_items"] == ["broken"] and marker["decisions"] == {"pass": 3, "flag": 5, "fail": 3}
    failures = read_failures(out)
    assert list(failures.item_id) == ["broken"] and failures.error[0]
    thumbnails = sorted(p.name for p in (out / "thumbnails").glob("*.png"))
    assert len(thumbnails) == 10  # every readable slide, the script-tag id percent-encoded
    assert "broken" in qc_run.summary() and "3 pass, 5 flag, 3 fail" in qc_run.summary()


def test_tile_api_failed_slides_and_exclusion_masks(qc_run: QcReport) -> None:
    qc = read_qc(qc_run.out_dir)
    assert qc.failed_slides() == {"fluorescence", "ihc", "broken"}
    assert qc.decision("faded") == "flag" and qc.decision("unknown") is None
    assert qc.exclusion_mask("case000_s0") is None and qc.exclusion_mask("fluorescence") is None
    pen = qc.exclusion_mask("pen")
    assert pen is not None
    mask, downsample = pen
    assert downsample == pytest.approx(1.0) and mask.shape == (SIZE, SIZE)
    # the stroke runs from (0.1, 0.15) to (0.9, 0.35) of the slide: its midpoint is masked
    assert mask[round(0.25 * SIZE), round(0.5 * SIZE)] and not mask[-20:, :20].any()
    assert 0.01 < mask.mean() < 0.1
    blurred = qc.exclusion_mask("blurred")
    assert blurred is not None and blurred[0].mean() > 0.1  # the blurry sampled tiles


def test_tile_skips_failed_slides_and_leaves_out_flagged_regions(qc_run: QcReport, tmp_path: Path) -> None:
    from mixture_ray.tile.config import TileConfig
    from mixture_ray.tile.coords import estimated_background
    from mixture_ray.tile.stage import run as run_tiling

    keep = ["case000_s0", "pen", EVIL, "fluorescence", "ihc", "broken"]
    table = qc_run.table.set_index("slide_id").loc[keep].reset_index()
    manifest = tmp_path / "manifest.csv"
    table.assign(mpp=0.5)[["slide_id", "case_id", "path", "mpp"]].to_csv(manifest, index=False)
    report = run_tiling(build_config(TileConfig, {
        "manifest": manifest, "out_dir": tmp_path / "tiles", "qc": qc_run.out_dir, "tile_size": 32,
        "magnifications": [20.0], "max_tiles_per_slide": 0, "pool.workers": 1}))
    assert report.complete, report.failures
    assert set(report.excluded_by_qc) == {"fluorescence", "ihc", "broken"}
    assert report.excluded_by_qc["broken"].startswith("failed QC: ")
    marker = json.loads((tmp_path / "tiles" / SUCCESS).read_text())
    assert set(marker["excluded_by_qc"]) == {"fluorescence", "ihc", "broken"}
    tiles = pd.read_parquet(tmp_path / "tiles", columns=["slide_id", "x", "y", "size_level0"])
    assert set(tiles.slide_id) == {"case000_s0", "pen", EVIL}
    pen = read_qc(qc_run.out_dir).exclusion_mask("pen")
    assert pen is not None
    pen_tiles = tiles[tiles.slide_id == "pen"]
    inside = estimated_background(pen[0], pen[1], pen_tiles.x.to_numpy(), pen_tiles.y.to_numpy(), 32)
    assert (inside <= 0.5).all()
    # The same pixels without the pen stroke keep the tiles under it.
    assert len(pen_tiles) < (tiles.slide_id == EVIL).sum() == (tiles.slide_id == "case000_s0").sum()


def test_other_settings_in_the_same_folder_are_refused(qc_run: QcReport) -> None:
    cfg = build_config(QcConfig, {"manifest": qc_run.out_dir / "qc.csv", "out_dir": qc_run.out_dir,
                                  "tile_px": 32})
    with pytest.raises(ConfigError, match="tile_px"):
        run(cfg)


def test_page_is_self_contained_and_escapes_data(qc_run: QcReport) -> None:
    text = qc_run.page.read_text()
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "http://" not in text and "https://" not in text
    assert text.count('<tr class="slide') == 11 and text.count("data:image/png;base64,") == 10


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make test installs the Debian package)")
def test_page_in_chromium_filters_by_decision(qc_run: QcReport) -> None:
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        tab = browser.new_page()
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        tab.goto(qc_run.page.as_uri())
        assert EVIL in tab.inner_text("body")  # shown as text, not run
        assert tab.inner_text("#shown") == "11 slide(s) shown"
        tab.click("button[data-show='fail']")
        assert tab.inner_text("#shown") == "3 slide(s) shown"
        visible = tab.eval_on_selector_all(
            "tr.slide",
            "rows => rows.filter(r => r.offsetParent !== null).map(r => r.querySelector('.id').textContent)")
        assert sorted(visible) == ["broken", "fluorescence", "ihc"]
        loaded = tab.eval_on_selector_all(
            "img", "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")
        assert loaded == 10
        browser.close()
    assert dialogs == []
