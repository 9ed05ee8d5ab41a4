"""Synthetic cohort v2 (sub-types, look-alikes, site batch effects) and the v1 regression pin."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from mixture_ray.errors import ConfigError
from mixture_ray.review.mix import read_sites
from mixture_ray.synth import cohort as cohort_module
from mixture_ray.synth import findings, read_mask, subtypes, write_cohort
from mixture_ray.synth.cohort import Cohort
from mixture_ray.synth.config import SynthConfig
from mixture_ray.synth.procedural import E_OD, H_OD
from mixture_ray.synth.sites import Site, deal_sites, make_sites
from tests.synth.test_cohort import _level0, _rows

SIZE = 1024
DS = 16

# Regression pin of the v1 cohort (n_cases=3, 1024 x 1024 px, seed 0, other settings default),
# recorded with the code as it was before v2 existed. Slides are pinned by the sha256 of the
# level-0 RGB bands handed to the SVS writer (before JPEG, so independent of the libjpeg build);
# masks, manifest.csv and clinical.csv by their file bytes; truth.json by its JSON with
# config.out_dir set to "OUT". If a numpy upgrade ever changes these, regenerate them by running
# this config with the v1 code from git history, never with the code under test.
V1_BANDS = {
    "case000_s0.svs": "02ace6982c361da074ec33fd18b1bd05e139192dd6a38a55d8f393287ac4e183",
    "case001_s0.svs": "632d346ef808a0d4c602a6f8b100f48f2d1af0d71977281068d0ada301492c5e",
    "case001_s1.svs": "7d74cb862fe6109071cf9f05d05af0c23f114559a6e2668cf8f61af7425bd414",
    "case002_s0.svs": "477c571026ca103f09acf3bbf7fc313f7c2d9e2e510746015ca523d486160656",
    "case002_s1.svs": "14aadfd5ae91cecacc07c435838c023e66930e00b18e42bb46da761614badcf8",
    "case002_s2.svs": "0e77f3b269a6b324a49f1c895fe830128a80c1438a1863aa7b4e1099b29e6bf6",
}
V1_FILES = {
    "clinical.csv": "5a432ea35d52cbf7851c752f1e311114d5102fae6feb94b2378c247f043342cc",
    "manifest.csv": "234b364449bd72b9573cd5834cafce8a82667ae355d3f01a93a0b5a0bb073668",
    "findings.json": "6130d47eb300876213c84ff3561411083aafd41e3cd58b02c95821f8b2153dd8",
    "masks/case000_s0.png": "f491d62f53179778df1e68b16863cd3202dc80a295df56b7df55ef350e00b6a9",
    "masks/case001_s0.png": "ae75822c7b5fb0f16703b6bb03424abe9fa96bdf4960b633f7f577bb386c6f03",
    "masks/case001_s1.png": "6c61b119c98548a4ee5fc0a5d5df2ae7c8a272d1a6b6d18088ffd304cdf0db70",
    "masks/case002_s0.png": "778b22125ff1b56db18f5584a770bcf839a39f5c39d6c28c9a70de54ca176026",
    "masks/case002_s1.png": "c91ca4f24f1b390283aad604f7f1c776cc27ff6d3a22fb59cd311fa3f9ac4ade",
    "masks/case002_s2.png": "f1f4bc5a7804a7af5971fe99cdd305dde380fcece1fa723358b6b575b72e65dd",
}
V1_TRUTH = "4a05a7af8dba50862594262c318f86ae4f5e107e01c54326c67f1c79883c3eb9"


def _config(out: Path, version: int = 2, **kw: Any) -> SynthConfig:
    base: dict[str, Any] = {"n_cases": 3, "width": SIZE, "height": SIZE, "seed": 0}
    return SynthConfig(out_dir=out, version=version, **{**base, **kw})


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _truth_sha(path: Path) -> str:
    truth = json.loads(path.read_text())
    truth["config"]["out_dir"] = "OUT"
    return _sha(json.dumps(truth, indent=2).encode())


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return write_cohort(_config(tmp_path_factory.mktemp("v2")))


def _texture_means(size: int = 256) -> dict[str, np.ndarray]:
    """Mean RGB of one bank patch of every sub-type (reference stain, no site)."""
    bank = subtypes.build_bank(np.random.default_rng(0), size, 1)
    assert bank.subtypes is not None
    rgb = bank.patches.view(np.uint8).reshape(len(bank.codes), size, size, 4)[..., :3]
    out = {}
    for i, (code, sub) in enumerate(zip(bank.codes, bank.subtypes, strict=True)):
        if code != findings.BACKGROUND:
            out[f"{findings.finding(int(code)).name}_{'ab'[int(sub)]}"] = rgb[i].reshape(-1, 3).mean(0)
    return out


def test_v1_output_is_pinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 1 writes exactly what it wrote before v2 existed (see the pin's comment)."""
    real, digests = cohort_module.write_svs, {}

    def capture(path: Path, bands: Any, **kw: Any) -> None:
        digest = hashlib.sha256()

        def passthrough() -> Any:
            for band in bands:
                digest.update(np.ascontiguousarray(band).tobytes())
                yield band

        real(path, passthrough(), **kw)
        digests[path.name] = digest.hexdigest()

    monkeypatch.setattr(cohort_module, "write_svs", capture)
    cohort = write_cohort(_config(tmp_path / "v1", version=1))
    assert digests == V1_BANDS
    assert {name: _sha((cohort.root / name).read_bytes()) for name in V1_FILES} == V1_FILES
    assert _truth_sha(cohort.truth) == V1_TRUTH
    assert not (cohort.root / "masks_subtype").exists()


def test_v2_tables_name_the_sites(v2: Cohort) -> None:
    manifest, clinical = _rows(v2.manifest), _rows(v2.clinical)
    assert list(manifest[0]) == ["slide_id", "case_id", "path", "mpp", "site"]
    assert list(clinical[0])[-1] == "site"
    assert sorted(r["site"] for r in clinical) == ["site0", "site1", "site2"]  # balanced
    by_case = {r["case_id"]: r["site"] for r in clinical}
    assert all(r["site"] == by_case[r["case_id"]] for r in manifest)
    assert read_sites(v2.manifest, []) == {r["slide_id"]: r["site"] for r in manifest}


def test_v2_truth_and_masks(v2: Cohort) -> None:
    truth = json.loads(v2.truth.read_text())
    assert truth["version"] == 2 and truth["config"]["version"] == 2
    assert [s["name"] for s in truth["sites"]] == ["site0", "site1", "site2"]
    assert all("od_matrix" in s and "gamma" in s for s in truth["sites"])
    names = {s["name"]: s for s in truth["subtypes"]}
    assert len(names) == 2 * len(findings.TISSUE_CODES)
    assert names["fibroblastic_foci_b"]["lookalike"] == "cellular_inflammation_a"
    assert names["dense_fibrosis_b"]["lookalike"] == "normal_alveolar_b"
    clinical = {r["case_id"]: r for r in _rows(v2.clinical)}
    for case in truth["cases"]:
        fr = case["subtype_fractions"]
        assert sum(fr.values()) == pytest.approx(1.0, abs=1e-5)
        for code in findings.TISSUE_CODES:  # the diagnosis uses the total of both sub-types
            name = findings.finding(code).name
            total = fr[f"{name}_a"] + fr[f"{name}_b"]
            assert total == pytest.approx(float(clinical[case["case_id"]][f"frac_{name}"]), abs=2e-6)
    for row in _rows(v2.manifest):
        mask = read_mask(v2.masks_dir / f"{row['slide_id']}.png")
        sub = read_mask(v2.root / "masks_subtype" / f"{row['slide_id']}.png")
        assert np.array_equal(sub // 10, mask) and set(np.unique(sub % 10)) <= {0, 1}
        png = f"masks/{row['slide_id']}.png"
        assert _sha((v2.root / png).read_bytes()) == V1_FILES[png]  # v2 keeps the seed's v1 layouts


def test_v2_slides_keep_glass_white_and_tissue_dark(v2: Cohort) -> None:
    for row in _rows(v2.manifest):
        pixels = _level0(v2.root / row["path"])
        mask = read_mask(v2.masks_dir / f"{row['slide_id']}.png")
        cell = np.kron(mask, np.ones((DS, DS), np.uint8)).astype(bool)
        glass = ndimage.binary_erosion(mask == findings.BACKGROUND, iterations=2)
        inner = np.kron(glass, np.ones((DS, DS), bool))  # away from the wavy tissue edge
        assert (pixels[inner] > 220).all(axis=1).mean() > 0.995, row["site"]  # glass stays glass
        assert (pixels[cell] > 220).all(axis=1).mean() < 0.5  # tissue stays tissue


def test_sites_shift_colour_and_keep_glass_white() -> None:
    bank = subtypes.build_bank(np.random.default_rng(1), 128, 1)
    rgb = bank.patches.view(np.uint8).reshape(len(bank.codes), 128, 128, 4)[..., :3]
    tissue, glass = rgb[bank.codes != findings.BACKGROUND], rgb[bank.codes == findings.BACKGROUND]
    sites = make_sites(np.random.default_rng(0), 8)
    assert sites[0].identity and sites[0].apply(tissue) is tissue
    ref = tissue.reshape(-1, 3).mean(0)
    for site in sites[1:]:
        shift = np.abs(site.apply(tissue).reshape(-1, 3).mean(0) - ref)
        assert 6 < shift.max() < 40, (site.name, shift)
        assert (site.apply(glass) > 220).all(), site.name
    assert len(set(sites)) == 8
    dealt = deal_sites(np.random.default_rng(0), 10, 3)
    assert sorted(np.bincount(dealt).tolist()) == [3, 3, 4]
    matrix = np.asarray(Site("x", h_strength=1.2, e_strength=0.5).to_dict()["od_matrix"])
    assert np.allclose(H_OD @ matrix, 1.2 * H_OD, atol=1e-3)  # stains rescale independently
    assert np.allclose(E_OD @ matrix, 0.5 * E_OD, atol=1e-3)


def test_subtypes_differ_and_lookalikes_are_close() -> None:
    mean = _texture_means()

    def dist(a: str, b: str) -> float:
        return float(np.linalg.norm(mean[a] - mean[b]))

    for code in findings.TISSUE_CODES:
        name = findings.finding(code).name
        assert dist(f"{name}_a", f"{name}_b") > 20, name  # sub-types of a finding differ
    for item in subtypes.SUBTYPES:
        if item.lookalike is None:
            continue
        partner = next(s for s in subtypes.SUBTYPES if s.name == item.lookalike)
        own = item.name[:-1] + "ab"[1 - item.index]
        other = partner.name[:-1] + "ab"[1 - partner.index]
        close = dist(item.name, item.lookalike)
        assert close < 15, (item.name, close)  # look-alikes agree in colour ...
        assert close < dist(item.name, own) / 2 and close < dist(partner.name, other) / 2


def test_v2_same_seed_same_cohort(v2: Cohort, tmp_path: Path) -> None:
    again = write_cohort(_config(tmp_path / "again"))
    names = [p.relative_to(v2.root) for p in sorted(v2.root.rglob("*")) if p.is_file()]
    assert names == [p.relative_to(again.root) for p in sorted(again.root.rglob("*")) if p.is_file()]
    for name in names:
        if name.name != "truth.json":
            assert (v2.root / name).read_bytes() == (again.root / name).read_bytes(), name
    assert _truth_sha(v2.truth) == _truth_sha(again.truth)


def test_bad_version_or_sites_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^version"):
        write_cohort(_config(tmp_path, version=3))
    with pytest.raises(ConfigError, match=r"^sites"):
        write_cohort(_config(tmp_path, sites=0))
