"""Stream an Aperio-style pyramidal SVS (tiled JPEG TIFF) with tifffile.

Page order follows Aperio: level 0 (tiled), a small stripped thumbnail, then the lower levels
(tiled, each ``LEVEL_FACTOR`` times smaller). JPEG tiles are stored as Aperio does: Photometric
RGB with RGB (not YCbCr) JPEG streams and no chroma subsampling, which OpenSlide, tiffslide and
cuCIM all decode to the same colours. Level 0 arrives as row bands and is handed to tifffile as a
tile iterator; the lower levels are accumulated by area-averaging each band, so memory stays at
one band plus level 1 (1/16 of level 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile
from PIL import Image

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

LEVEL_FACTOR = 4
THUMBNAIL_MAX = 1024
LIBRARY = "Aperio Image Library v12.0.0"


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Area-average downsample of an (h, w, 3) uint8 image; partial edge blocks are dropped."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    crop = image[: h * factor, : w * factor]
    total = np.full((h, w, image.shape[2]), factor * factor // 2, np.uint32)
    for i in range(factor):  # strided adds are much faster than a 5-D reshape + sum
        for j in range(factor):
            total += crop[i::factor, j::factor]
    return (total // (factor * factor)).astype(np.uint8)


def _tiles(bands: Iterable[np.ndarray], width: int, height: int, tile: int,
           sink: np.ndarray | None) -> Iterator[np.ndarray]:
    """Yield (tile, tile, 3) tiles row by row; each band is also downsampled into ``sink``."""
    y = 0
    for band in bands:
        if band.shape[1:] != (width, 3) or band.dtype != np.uint8:
            raise ValueError(
                f"band shape {band.shape} {band.dtype}: expected (rows, {width}, 3) uint8"
            )
        rows = band.shape[0]
        if rows != min(tile, height - y):
            raise ValueError(f"band at row {y} has {rows} rows; expected {min(tile, height - y)}")
        if sink is not None:
            small = downsample(band, LEVEL_FACTOR)
            y1 = y // LEVEL_FACTOR
            n = min(small.shape[0], sink.shape[0] - y1)
            sink[y1 : y1 + n] = small[:n, : sink.shape[1]]
        for x in range(0, width, tile):
            block = band[:, x : x + tile]
            if block.shape[:2] != (tile, tile):
                padded = np.full((tile, tile, 3), 255, np.uint8)
                padded[: block.shape[0], : block.shape[1]] = block
                block = padded
            yield np.ascontiguousarray(block)
        y += rows
    if y != height:
        raise ValueError(f"bands cover {y} rows; expected {height}")


def _bands(image: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    for y in range(0, image.shape[0], tile):
        yield image[y : y + tile]


def write_svs(path: Path, bands: Iterable[np.ndarray], *, width: int, height: int,
              levels: int = 3, tile: int = 256, mpp: float = 0.5, app_mag: float = 20.0,
              quality: int = 85) -> None:
    """Write an Aperio SVS from level-0 row bands of ``tile`` rows (the last may be shorter)."""
    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16 (got {tile})")
    common: dict[str, Any] = {
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": quality, "outcolorspace": "rgb"},
        "subsampling": (1, 1),
        "metadata": None,
    }
    header = f"{LIBRARY}\r\n{width}x{height}"
    tail = f"JPEG/RGB Q={quality}|AppMag = {app_mag:g}|MPP = {mpp:g}"

    def res(scale: float) -> dict[str, Any]:
        per_cm = 1e4 / (mpp * scale)
        return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}

    dims = [(width // LEVEL_FACTOR**i, height // LEVEL_FACTOR**i) for i in range(levels)]
    # Level 1 is kept even for a one-level slide: the thumbnail is made from it.
    level1 = np.zeros((height // LEVEL_FACTOR, width // LEVEL_FACTOR, 3), np.uint8)
    bigtiff = width * height * 3 > 2**31
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        tif.write(_tiles(bands, width, height, tile, level1), shape=(height, width, 3),
                  dtype=np.uint8, tile=(tile, tile),
                  description=f"{header} ({tile}x{tile}) {tail}", **res(1), **common)
        thumb = _thumbnail(level1)
        tif.write(thumb, rowsperstrip=16,
                  description=f"{header} -> {thumb.shape[1]}x{thumb.shape[0]} - |{tail}",
                  **common)
        image = level1
        for i in range(1, levels):
            w, h = dims[i]
            tif.write(_tiles(_bands(image, tile), w, h, tile, None), shape=(h, w, 3),
                      dtype=np.uint8, tile=(tile, tile),
                      description=f"{header} -> {w}x{h} - ({tile}x{tile}) {tail}",
                      **res(LEVEL_FACTOR**i), **common)
            if i + 1 < levels:
                image = downsample(image, LEVEL_FACTOR)[: dims[i + 1][1], : dims[i + 1][0]]


def _thumbnail(level1: np.ndarray) -> np.ndarray:
    """Thumbnail image at most THUMBNAIL_MAX px on its long side."""
    scale = min(1.0, THUMBNAIL_MAX / max(level1.shape[:2]))
    size = (max(1, round(level1.shape[1] * scale)), max(1, round(level1.shape[0] * scale)))
    return np.asarray(Image.fromarray(level1).resize(size, Image.Resampling.BOX))
