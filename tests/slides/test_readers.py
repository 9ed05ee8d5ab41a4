from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mixture_ray.errors import SlideError
from mixture_ray.slides import open_slide, plan_level
from mixture_ray.slides.openslide_backend import rgba_on_white
from tests.conftest import CMU_SVS, TCGA_J2K_SVS, require_shared

BACKENDS = ["openslide", "tiffslide"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_jpeg_svs_surface(backend: str) -> None:
    reader = open_slide(require_shared(CMU_SVS), backend)
    assert reader.backend == backend
    assert reader.level_dimensions == ((2220, 2967),)
    assert reader.level_downsamples == (1.0,)
    assert reader.mpp == pytest.approx(0.499)
    assert reader.objective_power == 20.0
    region = reader.read_region((1000, 1200), 0, (300, 200))
    assert region.shape == (200, 300, 3)
    assert region.dtype == np.uint8
    assert region.mean() < 235  # tissue, not blank
    thumb = reader.thumbnail(256)
    assert max(thumb.shape[:2]) <= 256 and thumb.shape[2] == 3
    reader.close()


def test_backends_return_identical_pixels_on_jpeg_and_jpeg2000() -> None:
    for path in (require_shared(CMU_SVS), require_shared(TCGA_J2K_SVS)):
        a, b = open_slide(path, "openslide"), open_slide(path, "tiffslide")
        assert a.level_dimensions == b.level_dimensions
        for location in [(0, 0), (1500, 1400), (2100, 2900)]:
            ra = a.read_region(location, 0, (280, 280))
            rb = b.read_region(location, 0, (280, 280))
            assert np.array_equal(ra, rb), (path.name, location)


def test_jpeg2000_slide_is_decoded_and_has_tissue() -> None:
    reader = open_slide(require_shared(TCGA_J2K_SVS), "tiffslide")
    assert reader.level_dimensions == ((4443, 3567), (2221, 1783))
    region = reader.read_region((2000, 1500), 1, (256, 256))
    assert region.std() > 10  # real texture, not a blank fill
    assert reader.mpp is None and reader.objective_power is None


def test_region_outside_the_slide_is_white() -> None:
    for backend in BACKENDS:
        reader = open_slide(require_shared(CMU_SVS), backend)
        region = reader.read_region((2100, 2900), 0, (280, 280))
        assert (region[-10:, -10:] == 255).all(), backend


def test_magnification_plan_on_single_level_slide() -> None:
    reader = open_slide(require_shared(CMU_SVS))
    plan = plan_level(reader, magnification=2.5)
    assert plan.level == 0
    assert plan.target_downsample == pytest.approx(0.5 / 0.499 * 8, rel=1e-6)
    assert plan.level_size(280) == round(280 / plan.scale)
    assert plan_level(reader, mpp=0.499).scale == pytest.approx(1.0)
    with pytest.raises(SlideError, match="choose a lower magnification"):
        plan_level(reader, magnification=40)


def test_magnification_plan_picks_pyramid_level() -> None:
    reader = open_slide(require_shared(TCGA_J2K_SVS))
    plan = plan_level(reader, magnification=10, manifest_mpp=0.25)  # 1.0 um/px wanted, 4x down
    assert plan.level == 1
    assert plan.level_downsample == pytest.approx(2.0, rel=1e-3)
    assert plan.scale == pytest.approx(0.5, rel=1e-3)


def test_slide_without_mpp_needs_manifest_mpp() -> None:
    reader = open_slide(require_shared(TCGA_J2K_SVS))
    with pytest.raises(SlideError, match="add an 'mpp' column"):
        plan_level(reader, magnification=5)


def test_open_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match="file not found"):
        open_slide(tmp_path / "nope.svs")
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    with pytest.raises(SlideError, match="empty"):
        open_slide(empty)
    text = tmp_path / "notes.svs"
    text.write_text("this is not a slide\n" * 100)
    with pytest.raises(SlideError, match="not a readable slide"):
        open_slide(text)
    with pytest.raises(ValueError, match="unknown slide backend"):
        open_slide(text, "vips")


def test_cucim_backend_without_gpu_names_the_extra() -> None:
    from mixture_ray.errors import MissingExtraError
    from mixture_ray.slides.cucim_backend import cucim_available

    if cucim_available():
        pytest.skip("cuCIM and a GPU are present; the refusal path does not apply")
    with pytest.raises(MissingExtraError, match=r"mixture-ray\[gpu\]"):
        open_slide(require_shared(CMU_SVS), "cucim")


def test_rgba_composited_on_white() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    rgba[1, 1] = (0, 0, 0, 0)
    rgba[0, 1] = (0, 0, 0, 128)
    rgb = rgba_on_white(rgba)
    assert tuple(rgb[0, 0]) == (10, 20, 30)
    assert tuple(rgb[1, 1]) == (255, 255, 255)
    assert 120 <= rgb[0, 1, 0] <= 130


def test_backend_without_the_codec_refuses_jpeg2000_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixture_ray.slides import native_tiles

    monkeypatch.setattr(native_tiles, "codec_available", lambda attribute: attribute != "JPEG2K")
    with pytest.raises(SlideError, match=r"unsupported codec: the tiles are JPEG 2000 .*backend=openslide"):
        open_slide(require_shared(TCGA_J2K_SVS), "tiffslide")
    # auto falls back to OpenSlide, which decodes JPEG 2000 itself
    assert open_slide(require_shared(TCGA_J2K_SVS)).backend == "openslide"


def test_auto_moves_on_when_a_backend_opens_but_cannot_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """As tiffslide on a Hamamatsu NDPI: the file opens, every tile fails with "Not a JPEG file"."""
    from mixture_ray.slides import factory

    real_tiffslide = factory._OPENERS["tiffslide"]
    opened: list[Any] = []

    def undecodable(path: Path, cache_bytes: int) -> Any:
        reader = real_tiffslide(path, cache_bytes)
        opened.append(reader)

        def fail(*_: object) -> np.ndarray:
            raise SlideError(str(path), "cannot decode tiles with tiffslide: Not a JPEG file")

        reader.read_region = fail
        return reader

    monkeypatch.setitem(factory._OPENERS, "tiffslide", undecodable)
    reader = open_slide(require_shared(CMU_SVS))
    assert reader.backend == "openslide" and len(opened) == 1  # tried tiffslide first, then fell back
    assert reader.read_region((0, 0), 0, (8, 8)).shape == (8, 8, 3)
    monkeypatch.setitem(factory._OPENERS, "openslide", undecodable)
    with pytest.raises(SlideError, match=r"tiffslide: opens the file but cannot decode it: .*Not a JPEG"):
        open_slide(require_shared(CMU_SVS))
