"""explain fit / apply / analyse end to end on a tiny synthetic cohort (known-truth check)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mixture_ray.cli import main
from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError, StageIncompleteError
from mixture_ray.explain.config import ExplainApplyConfig, ExplainFitConfig
from mixture_ray.explain.plots import COLOUR_BAR_PX
from mixture_ray.explain.stage import run_apply
from mixture_ray.store.folder import read_failures


@pytest.fixture(scope="module")
def checked(explain_check: tuple[Path, dict[str, Any]], ray_session: None) -> tuple[Path, dict[str, Any]]:
    """The session's known-truth check (tests/conftest.py), with this module's Ray session up."""
    return explain_check


def test_outputs_per_slide_and_markers(checked: tuple[Path, dict[str, Any]]) -> None:
    out, _ = checked
    root = out / "explain"
    for stage in ("grids", "nmf", "apply", "analysis"):
        assert (root / stage / "_SUCCESS").exists(), stage
    assert read_failures(root / "grids").empty
    slides = sorted(p.name for p in (root / "apply").iterdir() if p.is_dir())
    assert len(slides) == 3
    for slide in slides:
        grid = np.load(root / "grids" / slide / "grid.npy")
        count = np.load(root / "grids" / slide / "count.npy")
        assert grid.shape[:2] == count.shape == (32, 32) and grid.shape[2] == 256
        assert (grid >= 0).all() and count.max() >= 1  # stride = kept cells here
        assert count.max() <= 4  # 50 % overlap: a cell is seen at most 4 times
        weights = np.load(root / "apply" / slide / "k3_weights.npy")
        classes = np.load(root / "apply" / slide / "k3_classes.npy")
        assert weights.shape == (32, 32, 3) and (weights >= 0).all()
        covered = count > 0
        assert (classes[covered] == weights.argmax(-1)[covered]).all()
        assert (classes[~covered] == -1).all()
        for png in ("k3_heatmaps.png", "k3_overlay.png", "k3_multiclass.png"):
            assert (root / "apply" / slide / png).stat().st_size > 1000
        with Image.open(root / "grids" / slide / "thumb.png") as thumb, \
                Image.open(root / "apply" / slide / "k3_multiclass.png") as heatmap, \
                Image.open(root / "apply" / slide / "gradcam.png") as cam, \
                Image.open(root / "apply" / slide / "k3_gradcam_compare.png") as compare:
            assert heatmap.size == thumb.size  # the slide's aspect
            w, h = thumb.size
            assert cam.size == (w, h + COLOUR_BAR_PX)  # the map at the thumbnail's size, its colour bar
            assert compare.size == (3 * w + 16, 18 + h + COLOUR_BAR_PX)  # slide | classes | GradCAM
        slide_cam = np.load(root / "apply" / slide / "gradcam.npy")
        assert slide_cam.shape == count.shape and (slide_cam[~covered] == 0).all()
        assert slide_cam.max() > 0


def test_analyses_and_known_truth(checked: tuple[Path, dict[str, Any]]) -> None:
    out, result = checked
    k3 = result["analysis"]["k3"]
    assert np.allclose(np.diag(np.array(k3["h_cosine"])), 1.0, atol=1e-5)
    corr = np.array(k3["weight_corr_mean"])
    assert corr.shape == (3, 3)
    lr = k3["logistic"]
    assert lr["n_tiles"] > 20
    if "auc" in lr:
        assert 0.0 <= lr["auc"] <= 1.0 and len(lr["coefficients"]) == 3
    assert {row["pred"] for row in k3["gradcam"]} <= {0, 1}
    truth = k3["truth"]
    assert np.array(truth["iou"]).shape == (3, 7)
    foci = truth["findings"].index("fibroblastic_foci")
    best_foci = max(row[foci] for row in truth["iou"])
    assert best_foci > 0.3, truth  # a class of the foci detector lines up with the planted foci
    corr = np.array(truth["corr"])
    assert corr.shape == (3, 7) and np.nanmax(corr[:, foci]) > 0.3
    assert [row["corr"] for row in truth["per_class"]] == pytest.approx(
        [corr[row["cls"], truth["findings"].index(row["best_finding"])] for row in truth["per_class"]],
        nan_ok=True)
    assert {"iou_std", "corr_std"} <= set(k3["gradcam"][0])
    for name in ("weight_correlation.png", "h_cosine.png", "truth_iou.png", "truth_corr.png"):
        assert (out / "explain" / "analysis" / "k3" / name).exists()


def test_cli_explain_word_and_settings_guard(checked: tuple[Path, dict[str, Any]]) -> None:
    out, _ = checked
    root = out / "explain"
    code = main(["explain", "analyse", "--out-dir", str(root), "--n-classes", "[3]",
                 "--masks-dir", str(out / "cohort" / "masks")])
    assert code == 0
    assert "k3" in json.loads((root / "analysis" / "summary.json").read_text())
    assert main(["explain", "apply", "--out-dir", str(root)]) == 2  # manifest is required
    with pytest.raises(SystemExit) as usage:  # argparse: not an action of explain
        main(["explain", "transform", "--out-dir", str(root)])
    assert usage.value.code == 2
    # apply takes the network, layer and tiling from the fit; a K that was not fitted is named
    with pytest.raises(ConfigError, match=r"K=\[5\] not fitted"):
        run_apply(build_config(ExplainApplyConfig, {
            "out_dir": root, "manifest": out / "cohort" / "manifest.csv", "n_classes": [5]}))
    with pytest.raises(StageIncompleteError, match="explain fit is not complete"):  # no fit here
        run_apply(build_config(ExplainApplyConfig, {"out_dir": out / "elsewhere",
                                                     "manifest": out / "cohort" / "manifest.csv"}))


def test_a_broken_slide_is_a_recorded_failure(checked: tuple[Path, dict[str, Any]],
                                              tmp_path: Path) -> None:
    from mixture_ray.explain.stage import build_grids

    out, _ = checked
    bad = tmp_path / "bad.svs"
    bad.write_bytes(b"not a slide")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"slide_id,case_id,path,mpp\nbad,c0,{bad},0.5\n")
    cfg = build_config(ExplainFitConfig, {
        "out_dir": tmp_path / "ex", "manifest": manifest,
        "checkpoint": out / "detector.pt", "layer": "layer3", "mpp": 1.0, "tile_size": 128,
        "stride": 64, "device": "cpu"})
    ids, failures = build_grids(cfg.grid_spec(), cfg.run_settings(), manifest, tmp_path / "ex" / "grids")
    assert ids == [] and [f.item_id for f in failures] == ["bad"]
    table = read_failures(tmp_path / "ex" / "grids")
    assert table.item_id.tolist() == ["bad"] and (tmp_path / "ex" / "grids" / "_INCOMPLETE.json").exists()


def test_fit_and_apply_ran_in_ray_tasks(checked: tuple[Path, dict[str, Any]]) -> None:
    """The check ran in the session fixture's own Ray session: its tasks recorded Ray node ids."""
    out, _ = checked
    for stage in ("nmf", "apply"):
        devices = json.loads((out / "explain" / stage / "_SUCCESS").read_text())["devices"]
        assert len(devices["nodes"]) == 1, (stage, devices)  # one local node
        assert all(re.fullmatch(r"[0-9a-f]{56}", node) for node in devices["nodes"]), devices
        assert devices["nmf"] == "cpu"  # device: cpu in the known-truth check
        assert devices["num_gpus_per_task"] == 0.0


def test_fit_in_a_task_equals_an_in_process_fit(checked: tuple[Path, dict[str, Any]],
                                                tmp_path: Path) -> None:
    import torch

    from mixture_ray.explain.fitting import fit_grids

    out, _ = checked
    nmf = out / "explain" / "nmf"
    fitted = json.loads((nmf / "_settings.json").read_text())
    done = json.loads((nmf / "_SUCCESS").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the task (task_cpus: 1)
    try:
        rows, device = fit_grids(out / "explain" / "grids", done["slides"], fitted["n_classes"],
                                 n_vectors=fitted["sample_vectors"], max_iter=fitted["max_iter"],
                                 tol=fitted["tol"], seed=fitted["seed"], device="cpu", out=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert device == "cpu"
    for row, recorded in zip(rows, done["fits"], strict=True):
        k = row["k"]
        for key in ("n_iter", "reconstruction_err", "relative_err"):
            assert row[key] == recorded[key], key
        here = torch.load(tmp_path / f"k{k}.pt", weights_only=True)["H"]
        there = torch.load(nmf / f"k{k}.pt", weights_only=True)["H"]
        assert torch.equal(here, there)


def test_a_slide_failing_in_apply_is_recorded_while_the_others_finish(
        checked: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    import shutil

    out, _ = checked
    grids = tmp_path / "ex" / "grids"
    shutil.copytree(out / "explain" / "grids", grids)
    slides = sorted(p.name for p in grids.iterdir() if p.is_dir())
    (grids / slides[0] / "grid.npy").write_bytes(b"not a grid")  # its grid task is done (_SUCCESS)
    report = run_apply(build_config(ExplainApplyConfig, {
        "out_dir": tmp_path / "ex", "manifest": out / "cohort" / "manifest.csv",
        "nmf_dir": out / "explain" / "nmf", "device": "cpu"}))
    apply = tmp_path / "ex" / "apply"
    assert not report.complete and [f.item_id for f in report.failures] == [slides[0]]
    assert read_failures(apply).item_id.tolist() == [slides[0]]
    assert (apply / "_INCOMPLETE.json").exists() and not (apply / "_SUCCESS").exists()
    for slide in slides[1:]:
        assert (apply / slide / "k3_classes.npy").exists()
        line = next(text for text in report.lines if text.startswith(f"  {slide}: "))
        assert "GradCAM: gradcam.png, k3_gradcam_compare.png" in line  # the figures, by name
        assert (apply / slide / "gradcam.png").exists()


def test_num_gpus_is_validated(checked: tuple[Path, dict[str, Any]]) -> None:
    from mixture_ray.explain.tasks import task_gpus

    out, _ = checked
    base = {"out_dir": out / "elsewhere", "manifest": out / "cohort" / "manifest.csv"}
    for bad in ("many", -1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="num_gpus"):
            build_config(ExplainApplyConfig, {**base, "num_gpus": bad})
    with pytest.raises(ConfigError, match="num_gpus"):
        build_config(ExplainFitConfig, {**base, "num_gpus": 0, "device": "cuda"})
    assert build_config(ExplainFitConfig, {**base, "num_gpus": 2}).num_gpus == 2.0
    # a number is requested as given (an autoscaler starts a GPU node); auto follows the cluster
    assert task_gpus(build_config(ExplainApplyConfig, {**base, "num_gpus": 0.5})) == 0.5
    assert task_gpus(build_config(ExplainApplyConfig, {**base, "num_gpus": 1, "device": "cpu"})) == 0.0
    import ray

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0  # type: ignore[no-untyped-call]
    assert task_gpus(build_config(ExplainApplyConfig, base)) == (1.0 if has_gpu else 0.0)


def test_detector_training_does_not_depend_on_the_thread_count(checked: tuple[Path, dict[str, Any]],
                                                               tmp_path: Path) -> None:
    import torch

    from mixture_ray.explain.finding_model import sample_tiles, train_detector
    from mixture_ray.synth import findings

    out, _ = checked
    images, labels = sample_tiles(out / "cohort" / "manifest.csv", out / "cohort" / "masks",
                                  code=findings.FIBROBLASTIC_FOCI, mpp=1.0, tile=64, per_slide=16,
                                  min_fraction=0.5, seed=0)
    before = torch.get_num_threads()
    states = []
    try:
        for threads in (1, 3):  # the machine's count: the training pins its own (2)
            torch.set_num_threads(threads)
            done = train_detector(images, labels, tmp_path / f"{threads}.pt", epochs=1, batch=16)
            assert torch.get_num_threads() == threads  # given back
            states.append(torch.load(done.checkpoint, weights_only=True))
    finally:
        torch.set_num_threads(before)
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_fit_apply_analyse_again_give_the_same_numbers(checked: tuple[Path, dict[str, Any]],
                                                       tmp_path: Path) -> None:
    """Same cohort, detector and seed into a new folder: the same bytes and numbers; analysed
    with the first run as a seed run, every spread is 0."""
    import torch

    from mixture_ray.explain.config import ExplainAnalyseConfig
    from mixture_ray.explain.stage import run_analyse, run_fit

    out, result = checked
    first, again = out / "explain", tmp_path / "explain"
    fitted = json.loads((first / "nmf" / "_settings.json").read_text())
    slides = {"out_dir": again, "manifest": out / "cohort" / "manifest.csv", "device": "cpu",
              "batch_size": 32, "thumbnail_px": 512}
    run_fit(build_config(ExplainFitConfig, {**slides, **fitted["grid"], "n_classes": fitted["n_classes"],
                                            "seed": fitted["seed"]}))
    run_apply(build_config(ExplainApplyConfig, slides))
    report = run_analyse(build_config(ExplainAnalyseConfig, {
        "out_dir": again, "masks_dir": out / "cohort" / "masks", "seed_runs": [first]}))
    assert torch.equal(*(torch.load(f / "nmf" / "k3.pt", weights_only=True)["H"] for f in (first, again)))
    for slide in json.loads((first / "apply" / "_SUCCESS").read_text())["slides"]:
        for name in ("grids/{}/grid.npy", "grids/{}/cams.npy", "apply/{}/k3_weights.npy"):
            path = name.format(slide)
            assert np.array_equal(np.load(first / path), np.load(again / path)), path
    summary = json.loads((again / "analysis" / "summary.json").read_text())["k3"]
    k3 = result["analysis"]["k3"]
    assert summary["truth"]["iou"] == k3["truth"]["iou"]
    assert summary["logistic"].get("auc") == k3["logistic"].get("auc")
    spread = summary["seed_spread"]
    assert spread["runs"] == [str(again), str(first)] and spread["seeds"] == [0, 0]
    assert all(v == 0 or np.isnan(v) for v in spread["std"].values()), spread["std"]
    assert spread["std"]["iou_fibroblastic_foci"] == 0.0
    assert (again / "analysis" / "seed_spread.csv").exists() and "over 2 runs" in report.summary()
    with pytest.raises(ConfigError, match="cam_threshold"):  # runs analysed alike, or refused
        run_analyse(build_config(ExplainAnalyseConfig, {"out_dir": again, "cam_threshold": 0.2,
                                                        "seed_runs": [first]}))
