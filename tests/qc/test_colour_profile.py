"""ICC colour profiles: recorded by every backend, ``to_srgb`` applied alike by each."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from mixture_ray.slides import open_slide
from mixture_ray.slides.colour import profile_description
from mixture_ray.slides.cucim_backend import cucim_available
from tests.qc import helpers

BACKENDS = ["openslide", "tiffslide", *(["cucim"] if cucim_available() else [])]
APERIO = "Aperio Image Library v12.0.0\r\n256x256 (128x128) RAW|AppMag = 20|MPP = 0.5"


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    image[:64, :64] = (40, 200, 60)  # a saturated green: far from sRGB's gamut edge in Adobe RGB
    return image


def slide_with(tmp: Path, image: np.ndarray, icc: bytes | None) -> Path:
    return helpers.write_plain_tiff(tmp / "slide.svs", image, icc=icc, description=APERIO)


@pytest.mark.parametrize("backend", BACKENDS)
def test_profile_is_recorded_and_pixels_are_raw_by_default(
        backend: str, pixels: np.ndarray, tmp_path: Path) -> None:
    icc = helpers.rgb_matrix_profile()
    reader = open_slide(slide_with(tmp_path, pixels, icc), backend)
    assert reader.icc_profile == icc and not reader.to_srgb
    assert profile_description(reader.icc_profile) == "Adobe-like RGB test profile"
    assert np.array_equal(reader.read_region((0, 0), 0, (256, 256)), pixels)
    reader.close()


def test_backends_agree_on_srgb_pixels_and_the_transform_changes_them(
        pixels: np.ndarray, tmp_path: Path) -> None:
    path = slide_with(tmp_path, pixels, helpers.rgb_matrix_profile())
    regions = {}
    for backend in BACKENDS:
        reader = open_slide(path, backend, to_srgb=True)
        assert reader.to_srgb
        regions[backend] = reader.read_region((32, 16), 0, (200, 180))
        thumb = reader.thumbnail(64)
        reader.close()
    first = regions[BACKENDS[0]]
    for backend in BACKENDS[1:]:
        assert np.array_equal(regions[backend], first), backend
    raw = pixels[16:196, 32:232]
    assert np.abs(first.astype(int) - raw).mean() > 5  # the profile is applied ...
    green = first[:48, :32].reshape(-1, 3).mean(axis=0)
    assert green[1] > 200 and green[0] < 40  # ... and Adobe RGB's green is more saturated in sRGB
    assert thumb.shape[2] == 3 and max(thumb.shape[:2]) <= 64
    # the transform is Little CMS's own from that profile to sRGB
    expected = ImageCms.profileToProfile(
        Image.fromarray(np.ascontiguousarray(raw)),
        ImageCms.ImageCmsProfile(io.BytesIO(helpers.rgb_matrix_profile())), ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB")
    assert np.abs(np.asarray(expected).astype(int) - first).max() <= 1


def test_srgb_profile_is_identity_and_no_profile_is_left_alone(pixels: np.ndarray, tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = slide_with(tmp_path, pixels, srgb)
    reader = open_slide(path, "tiffslide", to_srgb=True)
    assert reader.icc_profile == srgb
    converted = reader.read_region((0, 0), 0, (256, 256))
    assert np.abs(converted.astype(int) - pixels).max() <= 2
    reader.close()
    bare = tmp_path / "bare"
    bare.mkdir()
    reader = open_slide(slide_with(bare, pixels, None), "openslide", to_srgb=True)
    assert reader.icc_profile is None
    assert np.array_equal(reader.read_region((0, 0), 0, (256, 256)), pixels)
    reader.close()
