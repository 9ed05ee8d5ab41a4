"""Synthetic cohort: slides open in both readers, pixels match the masks, truth is reproducible."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import pytest
import tiffslide
from scipy import ndimage

from mixture_ray.errors import ConfigError
from mixture_ray.synth import FINDINGS, findings, read_mask, tile_ground_truth, write_cohort, write_svs
from mixture_ray.synth.aperio_writer import downsample
from mixture_ray.synth.cohort import Cohort
from mixture_ray.synth.config import SynthConfig
from mixture_ray.synth.records import clinical_columns
from mixture_ray.synth.truth import tissue_fractions

SIZE = 1024
DS = 16


def _config(out: Path, seed: int = 0, n_cases: int = 3) -> SynthConfig:
    return SynthConfig(out_dir=out, n_cases=n_cases, min_slides_per_case=1, max_slides_per_case=3,
                       width=SIZE, height=SIZE, mask_downsample=DS, seed=seed)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return write_cohort(_config(tmp_path_factory.mktemp("cohort")))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _level0(path: Path) -> np.ndarray:
    with tiffslide.TiffSlide(path) as slide:
        return np.asarray(slide.read_region((0, 0), 0, (SIZE, SIZE)).convert("RGB"))


def test_layout_of_output(cohort: Cohort) -> None:
    for path in (cohort.manifest, cohort.clinical, cohort.findings, cohort.truth):
        assert path.is_file()
    assert (cohort.root / "_SUCCESS").is_file()
    rows = _rows(cohort.manifest)
    assert list(rows[0]) == ["slide_id", "case_id", "path", "mpp"]
    assert len(rows) == cohort.n_slides
    assert len({r["case_id"] for r in rows}) == cohort.n_cases == 3
    for row in rows:
        assert not Path(row["path"]).is_absolute()
        assert (cohort.manifest.parent / row["path"]).is_file()
        assert float(row["mpp"]) == 0.5
        mask = read_mask(cohort.masks_dir / f"{row['slide_id']}.png")
        assert mask.dtype == np.uint8 and mask.shape == (SIZE // DS, SIZE // DS)


def test_findings_json(cohort: Cohort) -> None:
    items = json.loads(cohort.findings.read_text())
    assert [i["code"] for i in items] == list(range(7))
    assert len({i["name"] for i in items}) == 7
    for item in items:
        assert len(item["colour"]) == 3 and all(0 <= v <= 255 for v in item["colour"])
        assert item["role"] in {"risk", "null", "background"}
        assert (item["role"] == "risk") == (item["log_hr"] != 0)
    by_name = {i["name"]: i for i in items}
    assert by_name["background"]["role"] == "background"
    assert by_name["dense_fibrosis"]["diagnostic"] and by_name["fibroblastic_foci"]["diagnostic"]
    assert by_name["dense_fibrosis"]["log_hr"] > 0 and by_name["fibroblastic_foci"]["log_hr"] > 0


@pytest.mark.parametrize("reader", ["openslide", "tiffslide"])
def test_readers_open_every_slide(cohort: Cohort, reader: str) -> None:
    opener: Any = openslide.OpenSlide if reader == "openslide" else tiffslide.TiffSlide
    for row in _rows(cohort.manifest):
        with opener(cohort.root / row["path"]) as slide:
            props = slide.properties
            assert float(props[f"{reader}.mpp-x"]) == pytest.approx(0.5)
            assert float(props[f"{reader}.mpp-y"]) == pytest.approx(0.5)
            assert float(props[f"{reader}.objective-power"]) == pytest.approx(20.0)
            assert props[f"{reader}.vendor"] == "aperio"
            assert slide.level_count == 3
            dims = [tuple(d) for d in slide.level_dimensions]
            assert dims == [(1024, 1024), (256, 256), (64, 64)]
            assert [round(d) for d in slide.level_downsamples] == [1, 4, 16]
            assert "thumbnail" in slide.associated_images
            assert slide.get_thumbnail((128, 128)).size[0] == 128


def test_pixels_agree_between_readers(cohort: Cohort) -> None:
    for row in _rows(cohort.manifest):
        path = cohort.root / row["path"]
        with openslide.OpenSlide(path) as slide:
            for level, dims in enumerate(slide.level_dimensions):
                a = np.asarray(slide.read_region((0, 0), level, dims).convert("RGB"), float)
                with tiffslide.TiffSlide(path) as other:
                    b = np.asarray(other.read_region((0, 0), level, dims).convert("RGB"), float)
                assert np.abs(a - b).mean() < 1.0, (row["slide_id"], level)
        # Lower levels are area averages of level 0 (up to JPEG error).
        level0 = _level0(path)
        with tiffslide.TiffSlide(path) as slide:
            level1 = np.asarray(slide.read_region((0, 0), 1, (256, 256)).convert("RGB"), float)
        assert np.abs(downsample(level0, 4) - level1).mean() < 4.0


def test_pixels_are_he_like_and_match_masks(cohort: Cohort) -> None:
    white_by_code: dict[int, list[float]] = {c: [] for c in range(7)}
    colour_by_code: dict[int, list[np.ndarray]] = {c: [] for c in range(7)}
    for row in _rows(cohort.manifest):
        image = _level0(cohort.root / row["path"])
        mask = read_mask(cohort.masks_dir / f"{row['slide_id']}.png")
        n = SIZE // DS
        white = (image > 220).all(-1).reshape(n, DS, n, DS).mean((1, 3))
        colour = image.reshape(n, DS, n, DS, 3).mean((1, 3))
        for code in range(7):
            core = ndimage.binary_erosion(mask == code, iterations=1)  # skip wavy edges
            if core.any():
                white_by_code[code].append(float(white[core].mean()))
                colour_by_code[code].append(colour[core].mean(0))
    assert all(white_by_code[c] for c in range(7)), "every finding appears in the cohort"
    assert min(white_by_code[findings.BACKGROUND]) > 0.95
    for code in (findings.DENSE_FIBROSIS, findings.INFLAMMATION, findings.FIBROBLASTIC_FOCI,
                 findings.LYMPHOID):
        assert max(white_by_code[code]) < 0.05, code
    for code in (findings.NORMAL, findings.FAT):  # lace / membranes around pale spaces
        assert 0.2 < np.mean(white_by_code[code]) < 0.85, code
    mean = {c: np.mean(colour_by_code[c], axis=0) for c in range(7)}
    for code in findings.TISSUE_CODES:  # pink/purple hues: green absorbed most
        r, g, b = mean[code]
        assert r + b > 2 * g + 20 and b > g, (code, mean[code])
    brightness = {c: mean[c].mean() for c in findings.TISSUE_CODES}
    assert min(brightness, key=brightness.__getitem__) == findings.LYMPHOID
    assert mean[findings.DENSE_FIBROSIS][0] > 200 and mean[findings.DENSE_FIBROSIS][1] < 140


def test_every_slide_has_several_findings(cohort: Cohort) -> None:
    for row in _rows(cohort.manifest):
        mask = read_mask(cohort.masks_dir / f"{row['slide_id']}.png")
        codes = set(np.unique(mask).tolist())
        assert findings.BACKGROUND in codes
        assert len(codes - {findings.BACKGROUND}) >= 4
        tissue = (mask != findings.BACKGROUND).mean()
        assert 0.5 < tissue < 0.95


def test_clinical_table_is_valid_and_matches_masks(cohort: Cohort) -> None:
    rows = _rows(cohort.clinical)
    assert list(rows[0]) == clinical_columns()
    manifest = _rows(cohort.manifest)
    for row in rows:
        slides = row["slide_ids"].split(";")
        assert slides == [m["slide_id"] for m in manifest if m["case_id"] == row["case_id"]]
        assert row["label"] in {"0", "1"} and row["event"] in {"0", "1"}
        assert row["diagnosis"] == ("UIP" if row["label"] == "1" else "non-UIP")
        assert float(row["time"]) > 0
        fractions = tissue_fractions(read_mask(cohort.masks_dir / f"{s}.png") for s in slides)
        for code, value in fractions.items():
            assert float(row[f"frac_{findings.finding(code).name}"]) == pytest.approx(value, abs=1e-6)
        assert sum(fractions.values()) == pytest.approx(1.0)


def test_outcomes_follow_the_planted_rules(cohort: Cohort) -> None:
    truth = json.loads(cohort.truth.read_text())
    assert truth["seed"] == 0 and truth["config"]["n_cases"] == 3
    rule = truth["diagnosis_rule"]
    betas = truth["cox"]["coefficients"]
    assert betas["dense_fibrosis"] > 0 and betas["fibroblastic_foci"] > 0
    assert betas["fat"] == betas["lymphoid_aggregate"] == betas["cellular_inflammation"] == 0
    assert truth["baseline_hazard"]["family"] == "weibull"
    cases = {c["case_id"]: c for c in truth["cases"]}
    for row in _rows(cohort.clinical):
        case = cases[row["case_id"]]
        score = rule["intercept"] + sum(
            w * float(row[f"frac_{name}"]) for name, w in rule["weights"].items()
        )
        assert score == pytest.approx(case["diagnosis_score"], abs=1e-4)
        assert int(row["label"]) == int(score + case["diagnosis_noise"] > 0)
        lp = sum(b * float(row[f"frac_{name}"]) for name, b in betas.items())
        assert lp == pytest.approx(case["linear_predictor"], abs=1e-4)
        observed = min(case["event_time"], case["censor_time"])
        assert float(row["time"]) == pytest.approx(max(observed, 1e-3), abs=1e-5)
        assert int(row["event"]) == int(case["event_time"] <= case["censor_time"])
        assert case["censor_time"] <= truth["censoring"]["administrative_years"]


def test_same_config_is_reproducible(cohort: Cohort, tmp_path: Path) -> None:
    again = write_cohort(_config(tmp_path / "again"))
    for name in ("clinical.csv", "manifest.csv", "findings.json"):
        assert (again.root / name).read_bytes() == (cohort.root / name).read_bytes(), name
    for row in _rows(cohort.manifest):
        png = f"{row['slide_id']}.png"
        assert (again.masks_dir / png).read_bytes() == (cohort.masks_dir / png).read_bytes()
        assert (again.root / row["path"]).read_bytes() == (cohort.root / row["path"]).read_bytes()
    first, second = (json.loads(c.truth.read_text()) for c in (cohort, again))
    first["config"].pop("out_dir")
    second["config"].pop("out_dir")
    assert first == second
    other = write_cohort(_config(tmp_path / "other", seed=1, n_cases=1))
    assert (other.masks_dir / "case000_s0.png").read_bytes() != (
        cohort.masks_dir / "case000_s0.png"
    ).read_bytes()


def test_invalid_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tile_px"):
        write_cohort(SynthConfig(out_dir=tmp_path, tile_px=100))
    with pytest.raises(ConfigError, match="levels"):
        write_cohort(SynthConfig(out_dir=tmp_path, width=256, height=256, levels=4))


def test_write_svs_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    h, w, tile = 600, 700, 128  # not multiples of the tile: edge tiles are padded
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([200 + 40 * np.sin(xx / 40), 120 + 60 * np.cos(yy / 30),
                      180 + 30 * np.sin((xx + yy) / 50)], -1)
    image = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "round.svs"
    bands = (image[y : y + tile] for y in range(0, h, tile))
    write_svs(path, bands, width=w, height=h, levels=2, tile=tile, mpp=0.25, app_mag=40)
    with openslide.OpenSlide(path) as slide:
        assert slide.level_dimensions == ((700, 600), (175, 150))
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert float(slide.properties["openslide.objective-power"]) == pytest.approx(40)
        level0 = np.asarray(slide.read_region((0, 0), 0, (w, h)).convert("RGB"), float)
        level1 = np.asarray(slide.read_region((0, 0), 1, (175, 150)).convert("RGB"), float)
    assert np.abs(level0 - image).mean() < 2.0  # JPEG error only, colours not swapped
    assert np.abs(level1 - downsample(image, 4)).mean() < 2.0
    with pytest.raises(ValueError, match="rows"):
        write_svs(tmp_path / "bad.svs", iter([image[:100]]), width=w, height=h, tile=tile)


def test_tile_ground_truth_on_a_constructed_mask() -> None:
    mask = np.zeros((4, 4), np.uint8)
    mask[:, :2] = findings.DENSE_FIBROSIS
    mask[:, 2:] = findings.INFLAMMATION
    mask[3, :] = findings.BACKGROUND
    assert tile_ground_truth(mask, 10, 0, 0, 20) == (findings.DENSE_FIBROSIS, 1.0)
    assert tile_ground_truth(mask, 10, 20, 0, 20) == (findings.INFLAMMATION, 1.0)
    assert tile_ground_truth(mask, 10, 5, 0, 20) == (findings.DENSE_FIBROSIS, 0.75)
    assert tile_ground_truth(mask, 10, 10, 0, 20) == (findings.DENSE_FIBROSIS, 0.5)  # tie: lower code
    assert tile_ground_truth(mask, 10, 20, 20, 20) == (findings.BACKGROUND, 0.5)  # tie: lower code
    assert tile_ground_truth(mask, 10, 20, 15, 20) == (findings.INFLAMMATION, 0.75)
    assert tile_ground_truth(mask, 10, 30, 30, 20) == (findings.BACKGROUND, 1.0)  # off the mask
    assert tile_ground_truth(mask, 10, 0, 0, 7) == (findings.DENSE_FIBROSIS, 1.0)
    with pytest.raises(ValueError):
        tile_ground_truth(mask, 10, 0, 0, 0)


def test_findings_constants_are_consistent() -> None:
    assert [f.code for f in FINDINGS] == list(range(len(FINDINGS)))
    assert set(findings.REGION_CODES) | {findings.LYMPHOID} == set(findings.TISSUE_CODES)
    assert findings.finding(findings.FAT).name == "fat"
