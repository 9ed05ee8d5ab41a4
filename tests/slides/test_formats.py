"""Scanner formats under ``backend=auto``: DICOM WSI, generic tiled TIFF, MIRAX routing, fallbacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixture_ray.errors import SlideError
from mixture_ray.slides import open_slide
from mixture_ray.slides.formats import resolve_slide_path
from mixture_ray.slides.reader import SlideReader
from tests.slides.synthetic import (
    COLOURS,
    HEIGHT,
    MPP,
    OBJECTIVE_POWER,
    WIDTH,
    write_dicom_wsi,
    write_tiled_tiff,
)

LEVELS = ((WIDTH, HEIGHT), (WIDTH // 2, HEIGHT // 2))
JPEG_TOLERANCE = 8  # grey levels between a written flat colour and its decoded pixels


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    pytest.importorskip("pydicom", reason="pydicom (dev extra) writes the synthetic DICOM WSI")
    return write_dicom_wsi(tmp_path_factory.mktemp("dicom") / "slide")


@pytest.fixture(scope="module")
def tiled_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiled_tiff(tmp_path_factory.mktemp("tiff") / "slide.tif")


def assert_known_colours(reader: SlideReader) -> None:
    """Each quadrant's colour at every level, and the four colours meeting at the centre."""
    assert reader.level_dimensions == LEVELS
    assert reader.level_downsamples == pytest.approx((1.0, 2.0))
    assert reader.mpp == pytest.approx(MPP)
    centres = {
        "top_left": (WIDTH // 4, HEIGHT // 4),
        "top_right": (3 * WIDTH // 4, HEIGHT // 4),
        "bottom_left": (WIDTH // 4, 3 * HEIGHT // 4),
        "bottom_right": (3 * WIDTH // 4, 3 * HEIGHT // 4),
    }
    for level, downsample in enumerate((1, 2)):
        size = 64 // downsample
        for name, (cx, cy) in centres.items():
            region = reader.read_region((cx - 32, cy - 32), level, (size, size))
            assert region.shape == (size, size, 3) and region.dtype == np.uint8
            diff = np.abs(region.astype(int) - np.array(COLOURS[name]))
            assert diff.max() <= JPEG_TOLERANCE, (level, name, region.reshape(-1, 3).mean(axis=0))
        # 16 level-0 px either side of the centre: the quadrant borders land where they should
        half = 16 // downsample
        cross = reader.read_region((WIDTH // 2 - 16, HEIGHT // 2 - 16), level, (2 * half, 2 * half))
        corners = {
            "top_left": cross[2, 2],
            "top_right": cross[2, -3],
            "bottom_left": cross[-3, 2],
            "bottom_right": cross[-3, -3],
        }
        for name, pixel in corners.items():
            assert np.abs(pixel.astype(int) - COLOURS[name]).max() <= JPEG_TOLERANCE, (level, name, pixel)


def test_dicom_series_folder_opens_with_openslide_under_auto(dicom_series: list[Path]) -> None:
    reader = open_slide(dicom_series[0].parent)  # the folder, as a user gives a DICOM series
    try:
        assert reader.backend == "openslide"
        assert reader.path == dicom_series[0]  # the base level, OpenSlide finds the rest beside it
        assert_known_colours(reader)
        assert reader.objective_power == OBJECTIVE_POWER
        thumb = reader.thumbnail(80)
        assert thumb.shape == (48, 80, 3)
    finally:
        reader.close()


def test_dicom_opens_from_any_file_of_the_series(dicom_series: list[Path], tmp_path: Path) -> None:
    for path in dicom_series:
        reader = open_slide(path)
        assert reader.backend == "openslide" and reader.level_dimensions == LEVELS, path.name
        reader.close()
    # files from a PACS export often have no extension: the DICOM preamble tells
    bare = tmp_path / "series"
    bare.mkdir()
    for i, path in enumerate(dicom_series):
        (bare / f"1.2.3.{i}").write_bytes(path.read_bytes())
    (bare / "README.txt").write_text("exported series\n")
    assert resolve_slide_path(bare) == bare / "1.2.3.0"
    reader = open_slide(bare / "1.2.3.1", "openslide")
    assert_known_colours(reader)
    reader.close()


def test_backends_without_dicom_support_refuse_it_clearly(dicom_series: list[Path]) -> None:
    for backend in ("tiffslide", "cucim"):
        with pytest.raises(SlideError, match=rf"{backend} cannot read DICOM WSI slides .*backend=openslide"):
            open_slide(dicom_series[0].parent, backend)


def test_dicom_that_is_not_a_slide_is_explained(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PatientName = "Not^A^Slide"
    path = tmp_path / "photo.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    expected = r"not a readable slide \(openslide: .*VL Whole Slide Microscopy"
    with pytest.raises(SlideError, match=expected) as exc:
        open_slide(path)
    assert "tiffslide" not in str(exc.value)  # only OpenSlide reads DICOM, so only it is tried


def test_folders_resolve_to_the_slide_file_or_say_what_a_folder_must_hold(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SlideError, match=r"is a folder, not a slide file: .*DICOM WSI series .*MIRAX"):
        open_slide(empty)
    # MIRAX: NAME.mrxs beside the NAME/ data folder; either may be given
    data = tmp_path / "CMU-1"
    data.mkdir()
    (data / "Slidedat.ini").write_text("[GENERAL]\n")
    mrxs = tmp_path / "CMU-1.mrxs"
    mrxs.write_text("[GENERAL]\nSLIDE_VERSION = 01.02\n")
    assert resolve_slide_path(data) == mrxs
    with pytest.raises(SlideError, match=r"CMU-1\.mrxs: not a readable slide \(openslide: ") as exc:
        open_slide(data)  # a fake: only OpenSlide is tried, and it refuses
    assert "tiffslide" not in str(exc.value)
    with pytest.raises(SlideError, match=r"tiffslide cannot read 3DHISTECH MIRAX .*TIFF containers only"):
        open_slide(mrxs, "tiffslide")


def test_generic_tiled_tiff_auto_picks_a_tiff_reader(tiled_tiff: Path) -> None:
    reader = open_slide(tiled_tiff)
    assert reader.backend in ("cucim", "tiffslide")
    assert_known_colours(reader)
    with_openslide = open_slide(tiled_tiff, "openslide")
    assert_known_colours(with_openslide)
    for r in (reader, with_openslide):
        r.close()


def test_auto_falls_back_when_tiffslide_opens_but_cannot_decode(
    tiled_tiff: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tiffslide on a large Hamamatsu NDPI: it opens the file, every tile fails to decode."""
    from mixture_ray.slides import cucim_backend, factory
    from mixture_ray.slides.tiffslide_backend import TiffSlideReader

    def fail(self: TiffSlideReader, *_: object) -> np.ndarray:
        raise SlideError(str(self.path), "cannot decode tiles with tiffslide: Not a JPEG file")

    monkeypatch.setattr(cucim_backend, "cucim_available", lambda: False)
    monkeypatch.setattr(TiffSlideReader, "read_region", fail)
    assert factory.available_backends() == ["tiffslide", "openslide"]
    reader = open_slide(tiled_tiff)
    assert reader.backend == "openslide"
    assert_known_colours(reader)
    reader.close()


def test_a_folder_manifest_lists_dicom_series_folders_beside_slide_files(
    dicom_series: list[Path], tiled_tiff: Path, tmp_path: Path
) -> None:
    import shutil

    from mixture_ray.store.manifest import read_manifest

    cohort = tmp_path / "cohort"
    shutil.copytree(dicom_series[0].parent, cohort / "dicom_slide")
    shutil.copy(tiled_tiff, cohort / "tiff_slide.tif")
    manifest = read_manifest(cohort)
    assert sorted(manifest.slide_id) == ["dicom_slide", "tiff_slide"]
    by_id = dict(zip(manifest.slide_id, manifest.path, strict=True))
    assert Path(by_id["dicom_slide"]).is_dir()  # the series folder, opened by OpenSlide
    reader = open_slide(by_id["dicom_slide"], "auto")
    assert reader.backend == "openslide"
    reader.close()
    assert len(read_manifest(cohort / "dicom_slide")) == 1  # a series folder given directly
