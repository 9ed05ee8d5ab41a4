"""`mixture-ray stats` end to end on a small simulated cohort: outputs, _SUCCESS last, an escaped report
(checked in real headless Chromium), and a failed rerun that leaves no _SUCCESS."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import norm

from mixture_ray.cli import EXIT_OK, main
from mixture_ray.config import build_config
from mixture_ray.errors import StageIncompleteError
from mixture_ray.stats.config import StatsConfig
from mixture_ray.stats.errors import ClinicalTableError
from mixture_ray.stats.features import load_frequencies
from mixture_ray.stats.outputs import TABLES
from mixture_ray.stats.simulate import simulate_cohort
from mixture_ray.stats.stage import PLOTS
from mixture_ray.stats.stage import run as run_stats

EVIL_FINDING = "<script>alert(1)</script>"
EVIL_CASE = "<img src=x onerror=alert(1)>"
EVIL_LEVEL = "<svg onload=alert(2)>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """Inputs in a folder whose name needs escaping; one evil finding, case id and subgroup level."""
    root = tmp_path_factory.mktemp("stats") / 'cohort<i>"&'
    sim = simulate_cohort(120, seed=5, tiles=200, baseline_ks=(4, 8))
    paths = sim.write(root)
    freq = sim.frequencies.rename(columns={"20x/fat": f"20x/{EVIL_FINDING}"})
    freq.loc[3, "case_id"] = EVIL_CASE
    freq.to_parquet(root / "frequencies.parquet")
    paths["frequencies"].unlink()
    with pytest.raises(StageIncompleteError, match="_SUCCESS"):  # a stage folder must be complete
        load_frequencies(root)
    (root / "_SUCCESS").write_text("{}")
    clinical = sim.clinical.assign(diagnosis=sim.clinical["diagnosis"].replace("non-UIP", EVIL_LEVEL))
    clinical["age"] = np.random.default_rng(0).normal(65, 8, len(clinical)).round(1)  # a null covariate
    clinical.loc[3, "case_id"] = EVIL_CASE
    clinical.to_csv(paths["clinical"], index=False)
    for k in (4, 8):
        table = sim.baselines[k]
        table.loc[3, "case_id"] = EVIL_CASE
        table.to_csv(paths["baseline_dir"] / f"k{k}.csv", index=False)
    out = root / "out"
    code = main(
        [
            "stats",
            "--frequencies",
            str(root),
            "--clinical",
            str(paths["clinical"]),
            "--baseline-dir",
            str(paths["baseline_dir"]),
            "--out-dir",
            str(out),
            "--rf-trees",
            "60",
            "--subgroup-column",
            "diagnosis",
            "--set",
            "baseline_ks=[4,8,10]",
            "--covariates",
            "[age]",
        ]
    )
    return root, out, code


def test_outputs_exist_and_success_is_written_last(run: tuple[Path, Path, int]) -> None:
    _, out, code = run
    assert code == EXIT_OK
    for name in TABLES:
        assert (out / f"{name}.csv").exists() and isinstance(
            json.loads((out / f"{name}.json").read_text()), list
        )
    for name in PLOTS:
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG" and min(image.size) > 200
    success = (out / "_SUCCESS").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= success for p in out.iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_cases"] == 120 and summary["n_test"] == 36
    assert summary["feature_sets"] == ["5x", "20x", "5x+20x"]
    assert any("'2.5x' skipped" in n for n in summary["notes"]) and any("k=10" in n for n in summary["notes"])
    best = summary["best_integrated"]
    assert best["auc"] > 0.7 and best["ci_low"] < best["auc"] <= best["ci_high"] <= 1.0
    assert summary["best_baseline"]["feature_set"] in ("k=4", "k=8")
    versus = pd.read_csv(out / "delong_comparisons.csv").iloc[-1]  # best integrated vs best baseline
    assert versus["comparison"] == "best integrated vs best baseline"
    assert f" {summary['best_baseline']['feature_set']} " in versus["model_b"]
    assert summary["delong_p_best_integrated_vs_best_baseline"] == pytest.approx(versus["p"])
    assert versus["p"] == pytest.approx(2 * norm.sf(abs(versus["z"])))  # two-sided normal p of z
    assert summary["cox_univariable"]["20x/fibroblastic_foci"]["hr"] > 1
    multi = pd.read_csv(out / "cox_multivariable.csv").set_index("feature")
    assert multi.loc["age", "kind"] == "covariate" and (multi.drop(index="age")["kind"] == "finding").all()
    dropped = pd.read_csv(out / "collinearity.csv").set_index("feature")
    most_common = dropped.groupby(dropped.index.str.split("/").str[0])["mean"].idxmax()
    assert set(dropped.query("step == 'reference'").index) == set(most_common)  # one per magnification
    assert set(pd.read_csv(out / "ph_check.csv")["feature"]) == set(multi.index)
    auc = pd.read_csv(out / "diagnosis_auc.csv")
    assert len(auc) == 6 and set(auc["model"]) == {"random_forest", "svm"}
    delong = pd.read_csv(out / "delong_comparisons.csv")
    assert (delong["comparison"] == "random_forest vs svm").sum() == 3
    assert delong["comparison"].iloc[-1] == "best integrated vs best baseline"
    cases = pd.read_csv(out / "cases.csv", keep_default_na=False)
    assert EVIL_CASE in set(cases["case_id"]) and (cases["split"] == "test").sum() == 36
    assert set(pd.read_csv(out / "subgroups.csv")["level"]) == {"UIP", EVIL_LEVEL}


def test_diagnosis_names_and_sentences(run: tuple[Path, Path, int]) -> None:
    _, out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == {"positive": "UIP", "negative": EVIL_LEVEL}  # the diagnosis column's names
    cases = pd.read_csv(out / "cases.csv", keep_default_na=False)
    assert set(cases["diagnosis"]) == {"UIP", EVIL_LEVEL}
    named = cases["predicted_out_of_fold"].map({1: "UIP", 0: EVIL_LEVEL})
    assert (cases["predicted_diagnosis"] == named).all()
    assert set(pd.read_csv(out / "km_survival.csv")["group"]) == {"predicted UIP", f"predicted {EVIL_LEVEL}"}
    sentences = summary["sentences"]
    assert set(sentences) == {"integrated_vs_baseline", "best_model", "survival", "cox"}
    assert sentences["integrated_vs_baseline"].startswith("integrated vs baseline: ")
    assert f"for UIP vs {EVIL_LEVEL} on 36 test cases" in sentences["best_model"]
    assert "predicted UIP (" in sentences["survival"] and "log-rank p" in sentences["survival"]
    assert sentences["cox"].startswith("Multivariable Cox")
    text = (out / "report.html").read_text()
    assert "<h2>Headline results</h2>" in text
    for sentence in sentences.values():
        assert text.count(html.escape(sentence)) == 2  # among the headline results and leading its section


def test_report_escapes_every_data_string(run: tuple[Path, Path, int]) -> None:
    root, out, _ = run
    text = (out / "report.html").read_text()
    for evil in (EVIL_FINDING, EVIL_CASE, EVIL_LEVEL, str(root)):
        assert evil not in text and html.escape(evil) in text
    assert "<script" not in text and "http://" not in text and "https://" not in text


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make test installs the Debian package)")
def test_report_in_chromium_shows_data_as_text(run: tuple[Path, Path, int]) -> None:
    from playwright.sync_api import sync_playwright

    root, out, _ = run
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        tab = browser.new_page()
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        tab.goto((out / "report.html").as_uri())
        tab.wait_for_load_state("load")
        body = tab.inner_text("body")
        scripts = tab.evaluate("document.querySelectorAll('script').length")
        sources = tab.evaluate("[...document.images].map(i => i.getAttribute('src').slice(0, 22))")
        svgs = tab.evaluate("document.querySelectorAll('svg').length")
        browser.close()
    assert dialogs == [] and scripts == 0 and svgs == 0
    assert sources == ["data:image/png;base64,"] * len(PLOTS)
    for evil in (EVIL_FINDING, EVIL_CASE, EVIL_LEVEL, str(root)):
        assert evil in body


def test_failed_rerun_leaves_no_success(run: tuple[Path, Path, int]) -> None:
    root, out, _ = run
    bad = pd.read_csv(root / "clinical.csv", dtype=str, keep_default_na=False)
    bad.loc[7, "time"] = "-1"
    bad.to_csv(root / "bad_clinical.csv", index=False)
    cfg = build_config(
        StatsConfig, {"frequencies": root, "clinical": root / "bad_clinical.csv", "out_dir": out}
    )
    assert (out / "_SUCCESS").exists()
    with pytest.raises(ClinicalTableError, match=r"row 8 \(case 'case-0007'\)"):
        run_stats(cfg)
    assert not (out / "_SUCCESS").exists()
