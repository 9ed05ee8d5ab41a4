"""`mixture-ray report` on a small run folder: sections, self-containment, escaping, Chromium."""

from __future__ import annotations

import base64
import io
import json
import shutil
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mixture_ray.config import build_config, load_config
from mixture_ray.report import Failure
from mixture_ray.run_report import cohort
from mixture_ray.run_report.cohort import tile_counts
from mixture_ray.run_report.config import RunReportConfig
from mixture_ray.run_report.stage import run as run_report
from mixture_ray.store.folder import StageFolder
from tests.conftest import TiledCohort

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SLIDES = ("s1", "s2", EVIL)
SECTIONS = ["cohort", "qc", "failures", "montages", "maps", "roc", "comparison", "survival", "explain",
            "settings"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
JOBS = Path(__file__).resolve().parents[2] / "jobs"


def _png(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _tile_store(root: Path) -> None:
    """Committed tiles of three slides at 5x and 20x (metadata columns), and one failed slide."""
    folder = StageFolder(root, stage="tile", item_column="slide_id")
    folder.prepare({"tile_size": 32, "magnifications": [5.0, 20.0]})
    tmp = folder.new_tmp_dir()
    tmp.mkdir()
    rows = [(s, f"case-{s}", m, i) for s in SLIDES for m, n in ((5.0, 2), (20.0, 5)) for i in range(n)]
    pq.write_table(pa.table({
        "slide_id": [r[0] for r in rows], "case_id": [r[1] for r in rows],
        "magnification": pa.array([r[2] for r in rows], pa.float32()),
        "x": [r[3] * 32 for r in rows], "y": [0] * len(rows), "error": pa.nulls(len(rows), pa.string())}),
        tmp / "part-0.parquet")
    folder.commit(tmp, {s: f"{s}.svs" for s in SLIDES})
    failed = [Failure("s4", "s4.svs", "cannot open <b>s4</b>")]
    folder.finish(requested=[*SLIDES, "s4"], failures=failed, extra={})


def _stats(out: Path, work: Path) -> None:
    """The real stats stage on a small simulated cohort."""
    from mixture_ray.stats.config import StatsConfig
    from mixture_ray.stats.simulate import simulate_cohort
    from mixture_ray.stats.stage import run as run_stats

    paths = simulate_cohort(80, seed=3, tiles=100, baseline_ks=(4,)).write(work)
    (work / "_SUCCESS").write_text("{}")
    run_stats(build_config(StatsConfig, {
        "frequencies": work, "clinical": paths["clinical"], "baseline_dir": paths["baseline_dir"],
        "baseline_ks": [4], "out_dir": out, "feature_sets": ["20x"], "rf_trees": 20, "min_events": 5}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder laid out like the demo's (clinical stages under analysis/, explain nested)."""
    root = tmp_path_factory.mktemp("run")
    _tile_store(root / "tiles")
    (root / "qc").mkdir()
    pd.DataFrame({"slide_id": list(SLIDES), "decision": ["pass", "pass", "exclude"],
                  "reason": ["", "", "pen <marks>"]}).to_parquet(root / "qc" / "qc.parquet")
    for cluster in range(3):
        _png(root / "review" / "montages" / "20x" / "k3" / f"cluster-{cluster}.png", (1152, 480), cluster)
    (root / "review" / "review-20x-k3.html").write_text("<html></html>")
    maps = StageFolder(root / "analysis" / "maps", stage="maps", item_column=None)
    maps.prepare({"thumbnail_px": 512})
    for i, slide in enumerate(SLIDES):
        _png(root / "analysis" / "maps" / f"{urllib.parse.quote(slide, safe='')}.png", (700, 512), i)
    pd.DataFrame({"slide_id": list(SLIDES), "accuracy": [0.9, 0.8, 0.7]}).to_csv(
        root / "analysis" / "maps" / "agreement.csv", index=False)
    maps.finish(requested=[*SLIDES, "s4"], failures=[Failure("s4", "", "no predictions for s4")], extra={})
    _stats(root / "analysis" / "stats", root / "analysis" / "cases")
    apply = StageFolder(root / "explain" / "explain" / "apply", stage="explain-apply", item_column=None)
    apply.prepare({"n_classes": [4]})
    for kind in ("heatmaps", "overlay"):
        _png(apply.root / "s1" / f"k4_{kind}.png", (900, 300))
    _png(root / "explain" / "explain" / "analysis" / "k4" / "truth_iou.png", (400, 400))
    apply.finish(requested=["s1"], failures=[], extra={"n_classes": [4]})
    (root / "summary.json").write_text(json.dumps({"auc_integrated": 0.9, "note": EVIL}))
    return root


@pytest.fixture(scope="module")
def page(run_dir: Path) -> Path:
    report = run_report(build_config(RunReportConfig, {"run_dir": run_dir, "thumb_px": 160}))
    assert report.out == run_dir / "report.html" and report.complete
    assert report.missing == () and list(report.shown) == SECTIONS, report.summary()
    return report.out


class Page(HTMLParser):
    """Section ids, image sources, link targets, script elements and the text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0
        self.missing = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.sections.append(values["id"])
        self.images += [values["src"]] if tag == "img" else []
        self.links += [values["href"]] if tag == "a" else []
        self.scripts += tag == "script"
        self.missing += "missing" in values.get("class", "").split()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> Page:
    parsed = Page()
    parsed.feed(path.read_text(encoding="utf-8"))
    return parsed


def test_every_section_is_there_and_the_page_is_self_contained(page: Path) -> None:
    parsed = parse(page)
    assert parsed.sections == SECTIONS and parsed.scripts == 0 and parsed.missing == 0
    assert parsed.images and all(src.startswith(("data:image/jpeg;base64,", "data:image/png;base64,"))
                                 for src in parsed.images)
    # 3 montages, 3 maps, 3 stats figures (ROC, integrated vs baseline, KM + forest = 4), 3 explain figures
    assert len(parsed.images) >= 3 + 3 + 4 + 3
    for src in parsed.images:
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert max(image.size) <= 2 * 160  # thumbnails (the drawn ROC is 2 x thumb_px at most)
    for href in parsed.links:
        if href.startswith("#"):
            assert href[1:] in SECTIONS
            continue
        assert "://" not in href and (page.parent / urllib.parse.unquote(href)).is_file(), href
    text = page.read_text()
    assert "http://" not in text and "https://" not in text
    assert page.stat().st_size < 2_000_000


def test_hostile_ids_appear_only_escaped(page: Path) -> None:
    text = page.read_text()
    assert EVIL not in text and "<b>" not in text and "<marks>" not in text
    assert text.count(ESCAPED) >= 4  # tiles, qc, a map caption, summary.json
    assert "cannot open &lt;b&gt;s4&lt;/b&gt;" in text and "pen &lt;marks&gt;" in text
    quoted = urllib.parse.quote(urllib.parse.quote(EVIL, safe=""))  # the map file name, as a link
    assert f'href="../../analysis/maps/{quoted}.png"' not in text  # links are relative to the report
    assert f'href="analysis/maps/{quoted}.png"' in text


def test_cohort_counts_failures_and_stats_tables(page: Path, run_dir: Path) -> None:
    counts = tile_counts(run_dir / "tiles").set_index("magnification")
    assert counts.loc["5x", "tiles"] == 6 and counts.loc["20x", "tiles"] == 15
    assert list(counts.loc["all"]) == [21, 3, 3]
    text = " ".join(parse(page).text)
    for phrase in ("Tile store tiles (incomplete)", "QC decisions", "exclude", "Failed items",
                   "no predictions for s4", "AUC per feature set and model", "Best models", "DeLong p",
                   "Log-rank test", "Univariable Cox", "cluster 2", "review page", "K = 4", "s1: heatmaps",
                   "Versions", "timm", "analysis/maps (maps)"):
        assert phrase in text, phrase


def test_an_empty_run_folder_says_what_is_missing(tmp_path: Path) -> None:
    cfg = build_config(RunReportConfig, {"run_dir": tmp_path, "out": tmp_path / "out" / "r.html"})
    report = run_report(cfg)
    assert report.shown == ("settings",) and len(report.missing) == len(SECTIONS) - 1
    parsed = parse(report.out)
    assert parsed.sections == SECTIONS and parsed.missing == len(SECTIONS)  # settings: no _settings.json
    assert "missing (the page says what each needs)" in report.summary()
    assert "No tile store found" in report.out.read_text()


def test_unreadable_inputs_are_named_and_curve_points_are_drawn(tmp_path: Path) -> None:
    (tmp_path / "qc").mkdir()
    (tmp_path / "qc" / "qc.parquet").write_bytes(b"not parquet")
    stats = tmp_path / "stats"
    stats.mkdir()
    aucs = {"feature_set": ["20x"], "model": ["svm"], "auc": [0.8], "ci_low": [0.7], "ci_high": [0.9]}
    pd.DataFrame(aucs).to_csv(stats / "diagnosis_auc.csv", index=False)
    curve = {"feature_set": ["20x"] * 3, "model": ["svm"] * 3, "fpr": [0, 0.2, 1], "tpr": [0, 0.7, 1]}
    pd.DataFrame(curve).to_csv(stats / "roc_curves.csv", index=False)
    report = run_report(build_config(RunReportConfig, {"run_dir": tmp_path}))
    text = report.out.read_text()
    assert "could not be read: " in text and "qc" in report.missing
    assert "roc" in report.shown and "ROC per feature set and model" in text
    assert any(src.startswith("data:image/png;base64,") for src in parse(report.out).images)


def test_example_job_config_and_default_output(tmp_path: Path) -> None:
    cfg = load_config(RunReportConfig, JOBS / "report.yaml")
    assert cfg.target() == Path("/mnt/shared/mixture_ray/report.html")
    assert build_config(RunReportConfig, {"run_dir": tmp_path}).target() == tmp_path / "report.html"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make test installs the Debian package)")
def test_report_in_chromium_renders_images_and_runs_nothing(page: Path) -> None:
    from playwright.sync_api import Dialog, sync_playwright

    dialogs: list[str] = []
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        tab = browser.new_page()
        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        tab.on("dialog", on_dialog)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.on("request", lambda r: requests.append(r.url))
        tab.goto(page.as_uri())
        body = tab.inner_text("body")
        broken = tab.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        count = tab.evaluate("document.images.length")
        browser.close()
    assert EVIL in body  # shown as text, never run
    assert dialogs == [] and errors == [] and broken == 0 and count > 10
    assert all(url.startswith(("file://", "data:")) for url in requests)


def _no_data_read(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"a data file was read: {args}")


def test_counts_of_a_real_tile_store(tiled_cohort: TiledCohort, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mixture_ray.store.folder import committed_files

    files = committed_files(tiled_cohort.tiles)
    tiles = pq.read_table(files, columns=["slide_id", "case_id", "magnification"]).to_pandas()
    monkeypatch.setattr(cohort.pq, "read_table", _no_data_read)  # counted from the store's index
    counts = tile_counts(tiled_cohort.tiles).set_index("magnification")
    monkeypatch.undo()
    assert counts.loc["5x", "tiles"] == (tiles.magnification == 5.0).sum() > 0
    assert counts.loc["20x", "slides"] == tiles[tiles.magnification == 20.0].slide_id.nunique() > 0
    assert counts.loc["all", "tiles"] == len(tiles)
    assert counts.loc["all", "slides"] == tiles.slide_id.nunique()
    assert counts.loc["all", "cases"] == tiles.case_id.nunique() > 1
    shutil.copytree(tiled_cohort.tiles, tmp_path / "tiles")  # read-only fixture: report a copy
    report = run_report(build_config(RunReportConfig, {"run_dir": tmp_path}))
    assert report.shown == ("cohort", "failures", "settings")
    assert "Tile store tiles (complete)" in report.out.read_text()
