"""Macenko stain estimate and normalisation; the mpp / magnification audit (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.model_input.stain import REFERENCE, estimate_stains, normalise_stain
from mixture_ray.qc.audit import audit_resolution
from mixture_ray.qc.config import QcConfig
from mixture_ray.synth.textures import render_texture
from tests.qc import helpers


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """A 256 x 128 synthetic H&E tile: cellular inflammation beside dense fibrosis (synth textures)."""
    rng = np.random.default_rng(0)
    cells, fibrosis = (np.asarray(render_texture(code, rng, 128))[..., :3] for code in (3, 2))
    return np.ascontiguousarray(np.concatenate([cells, fibrosis], axis=1)).astype(np.uint8)


def test_stain_vectors_are_haematoxylin_then_eosin(tile: np.ndarray) -> None:
    estimate = estimate_stains(tile)
    assert estimate.vectors.shape == (3, 2)
    assert np.allclose(np.linalg.norm(estimate.vectors, axis=0), 1.0)
    h, e = estimate.vectors.T
    assert h[0] > e[0] and e[1] > e[0]  # H absorbs more red than E; E absorbs green most
    faded = estimate_stains(helpers.faded(tile, 0.5))
    assert faded.intensity() < 0.6 * estimate.intensity()


def test_normalisation_moves_a_faded_tile_toward_the_reference(tile: np.ndarray) -> None:
    faded = helpers.faded(tile, 0.5)
    reference = estimate_stains(tile)
    normalised = normalise_stain(faded, reference)
    assert normalised.shape == tile.shape and normalised.dtype == np.uint8
    before = np.abs(faded.astype(float) - tile).mean()
    after = np.abs(normalised.astype(float) - tile).mean()
    assert after < 0.6 * before
    assert estimate_stains(normalised).intensity() == pytest.approx(reference.intensity(), rel=0.1)
    # against the published reference, and a reference given as an image, without error
    assert normalise_stain(faded).shape == tile.shape
    assert normalise_stain(faded, tile).shape == tile.shape
    blank = np.full((32, 32, 3), 250, np.uint8)
    assert normalise_stain(blank, REFERENCE) is blank  # nothing stained: unchanged


def audit(**overrides: object) -> list[str]:
    args: dict[str, object] = {"slide_mpp": 0.5, "slide_mpp_y": 0.5, "manifest_mpp": None,
                               "objective_power": 20.0, "magnifications": (5.0, 20.0),
                               "mpp_range": (0.1, 4.0),
                               "power_tolerance": 1.5}
    args.update(overrides)
    return audit_resolution(**args)[1]  # type: ignore[arg-type]


def test_resolution_audit_names_each_problem_and_its_fix() -> None:
    assert audit() == []
    assert audit(slide_mpp=None, objective_power=None)[0].startswith("mpp missing: the slide records neither")
    guessed = audit(slide_mpp=None, slide_mpp_y=None, objective_power=40.0)
    assert guessed[0].startswith("mpp missing: guessed 0.250")
    assert any("inconsistent with objective power 40x" in p for p in audit(objective_power=40.0))
    assert any(p.startswith("non-square pixels") for p in audit(slide_mpp_y=0.6))
    assert any(p.startswith("mpp implausible") for p in audit(slide_mpp=25.0, objective_power=None))
    upsample = [p for p in audit(slide_mpp=1.0, slide_mpp_y=1.0, objective_power=10.0) if "upsampling" in p]
    assert len(upsample) == 1 and "20x" in upsample[0] and "5x" not in upsample[0]
    assert audit(manifest_mpp=0.5, slide_mpp=None, objective_power=None) == []  # the manifest fixes it
    assert all("manifest's mpp column" in p for p in audit(slide_mpp=1.0, slide_mpp_y=2.0))


def test_config_checks(tmp_path: Path) -> None:
    base = {"manifest": tmp_path / "m.csv", "out_dir": tmp_path / "qc"}
    assert build_config(QcConfig, base).tiles_per_slide == 16
    with pytest.raises(ConfigError, match="mpp_range"):
        build_config(QcConfig, {**base, "mpp_range": [2.0, 1.0]})
    with pytest.raises(ConfigError, match="blur_fraction"):
        build_config(QcConfig, {**base, "blur_fraction": 1.5})


def test_reading_path_normalises_a_faded_tile_toward_the_original(tile: np.ndarray, tmp_path: Path) -> None:
    """``input.stain=macenko``: decoded tiles of a faded copy come out close to the original's stains."""
    import pyarrow as pa
    from PIL import Image

    from mixture_ray.config import TileInput
    from mixture_ray.model_input.dataset import decode_rows, stain_target
    from mixture_ray.store.codec import encode_tile

    tile = np.ascontiguousarray(np.concatenate([tile, tile[:, ::-1]], axis=0))  # 256 x 256, both textures
    faded = helpers.faded(tile, 0.5)
    reference = tmp_path / "reference.png"
    Image.fromarray(tile).save(reference)
    batch = pa.table({"slide_id": ["s", "s"], "x": [0, 1], "y": [0, 0],
                      "image": [encode_tile(tile, "png"), encode_tile(faded, "png")]})
    plain = decode_rows(batch, keys=("slide_id",), size=0)
    source = build_config(TileInput, {"stain": "macenko", "stain_reference": reference})
    normalised = decode_rows(batch, keys=("slide_id",), size=0, stain=stain_target(source))
    assert (plain["pixels"][1] == faded).all() and list(normalised["error"]) == ["", ""]

    def error(a: np.ndarray) -> float:
        return float(np.abs(a.astype(np.float32) - tile.astype(np.float32)).mean())

    before, after = error(plain["pixels"][1]), error(normalised["pixels"][1])
    assert after < 0.6 * before, (before, after)  # the faded tile moved most of the way back
    with pytest.raises(ConfigError, match=r"input\.decode=cpu"):
        build_config(TileInput, {"stain": "macenko", "decode": "model"})
    with pytest.raises(ConfigError, match="stain_reference"):
        build_config(TileInput, {"stain": "macenko", "stain_reference": tmp_path / "missing.png"})
