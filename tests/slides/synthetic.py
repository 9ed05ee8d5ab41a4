"""Small synthetic slides with known content: a DICOM WSI series and a generic tiled TIFF.

Both hold the same image, four flat coloured quadrants, as a 2-level JPEG pyramid (level 1 is
level 0 halved) at a known pixel spacing. The quadrant borders fall on JPEG block edges, so the
decoded colours stay within a few grey levels of the written ones.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT, TILE = 640, 384, 128  # level 1 is 320 x 192: partial edge tiles at both levels
MPP = 0.25  # micrometres per pixel at level 0
OBJECTIVE_POWER = 40
#: Quadrant -> RGB: top-left, top-right, bottom-left, bottom-right.
COLOURS = {
    "top_left": (200, 30, 30),
    "top_right": (30, 180, 40),
    "bottom_left": (40, 50, 190),
    "bottom_right": (230, 210, 40),
}


def quadrants(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """RGB uint8 (height, width, 3) image of the four COLOURS quadrants."""
    image = np.empty((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w] = COLOURS["top_left"]
    image[:h, w:] = COLOURS["top_right"]
    image[h:, :w] = COLOURS["bottom_left"]
    image[h:, w:] = COLOURS["bottom_right"]
    return image


def pyramid() -> list[np.ndarray]:
    """Level 0 and level 1 (halved with a box filter) of :func:`quadrants`."""
    base = quadrants()
    half = Image.fromarray(base).resize((WIDTH // 2, HEIGHT // 2), Image.Resampling.BOX)
    return [base, np.asarray(half)]


def _jpeg_tiles(image: np.ndarray, tile: int) -> list[bytes]:
    """Row-major JPEG frames of ``tile`` x ``tile``, edge tiles padded with white."""
    frames = []
    for y in range(0, image.shape[0], tile):
        for x in range(0, image.shape[1], tile):
            block = np.full((tile, tile, 3), 255, np.uint8)
            part = image[y : y + tile, x : x + tile]
            block[: part.shape[0], : part.shape[1]] = part
            buf = io.BytesIO()
            Image.fromarray(block).save(buf, "JPEG", quality=95)
            frames.append(buf.getvalue())
    return frames


def write_dicom_wsi(folder: Path) -> list[Path]:
    """Write a DICOM VL Whole Slide Microscopy Image series, one file per level (TILED_FULL, JPEG).

    Args:
        folder: created if needed; receives ``level0.dcm`` and ``level1.dcm``.

    Returns:
        The written files, level 0 first.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, VLWholeSlideMicroscopyImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for level, image in enumerate(pyramid()):
        spacing_mm = MPP * 2**level / 1000
        height, width = image.shape[:2]
        frames = _jpeg_tiles(image, TILE)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = VLWholeSlideMicroscopyImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.SOPClassUID = VLWholeSlideMicroscopyImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PatientName, ds.PatientID, ds.StudyID = "Synthetic^Slide", "synthetic", "1"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SM", 1, level + 1
        ds.ImageType = ["ORIGINAL" if level == 0 else "DERIVED", "PRIMARY", "VOLUME", "NONE"]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.Rows = ds.Columns = TILE
        ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = width, height
        ds.TotalPixelMatrixFocalPlanes = 1
        ds.NumberOfFrames = len(frames)
        ds.DimensionOrganizationType = "TILED_FULL"
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = width * spacing_mm, height * spacing_mm
        ds.ImagedVolumeDepth = 0.001
        measures = Dataset()
        measures.PixelSpacing = [spacing_mm, spacing_mm]  # mm, (row, column)
        measures.SliceThickness = 0.001
        shared = Dataset()
        shared.PixelMeasuresSequence = [measures]
        ds.SharedFunctionalGroupsSequence = [shared]
        optical_path = Dataset()
        optical_path.OpticalPathIdentifier = "1"
        optical_path.ObjectiveLensPower = OBJECTIVE_POWER
        ds.OpticalPathSequence = [optical_path]
        ds.PixelData = encapsulate(frames)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        path = folder / f"level{level}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_tiled_tiff(path: Path) -> Path:
    """Write a generic pyramidal tiled TIFF (JPEG tiles, resolution in pixels per centimetre).

    Args:
        path: the file to write.

    Returns:
        ``path``.
    """
    import tifffile

    with tifffile.TiffWriter(path) as tif:
        for level, image in enumerate(pyramid()):
            per_cm = 1e4 / (MPP * 2**level)
            tif.write(
                image,
                tile=(TILE, TILE),
                compression="jpeg",
                photometric="rgb",
                subfiletype=1 if level else 0,
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
            )
    return path
