"""Small synthetic slides for the QC tests: a tiny cohort, doctored copies, an ICC profile."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from mixture_ray.synth.aperio_writer import write_svs

#: Adobe RGB (1998) colorants adapted to D50, as in Adobe's own profile.
ADOBE_RGB_D50 = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in values)


def _desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text
            + struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67)


def rgb_matrix_profile(description: str = "Adobe-like RGB test profile",
                       colorants: tuple[tuple[float, float, float], ...] = ADOBE_RGB_D50,
                       gamma: float = 2.2) -> bytes:
    """A minimal ICC v2 display profile: three colorants and one gamma (an RGB matrix/TRC profile)."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [(b"desc", _desc(description)), (b"wtpt", _xyz((0.9642, 1.0, 0.8249))),
            (b"rXYZ", _xyz(colorants[0])), (b"gXYZ", _xyz(colorants[1])), (b"bXYZ", _xyz(colorants[2])),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text\0\0\0\0" + b"public domain\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + _xyz((0.9642, 1.0, 0.8249))[8:]
              + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def bands(image: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    for y in range(0, image.shape[0], tile):
        yield image[y : y + tile]


def write_like_svs(path: Path, image: np.ndarray, *, mpp: float = 0.5, app_mag: float = 20.0,
                   tile: int = 128, levels: int = 2) -> Path:
    """An Aperio SVS of ``image`` (the synth writer)."""
    height, width = image.shape[:2]
    write_svs(path, bands(image, tile), width=width, height=height, levels=levels, tile=tile,
              mpp=mpp, app_mag=app_mag, quality=92)
    return path


def write_plain_tiff(path: Path, image: np.ndarray, *, icc: bytes | None = None, tile: int = 128,
                     description: str | None = None) -> Path:
    """A one-level tiled TIFF with no resolution (no mpp), optionally an ICC profile and description."""
    extratags = [(34675, 7, len(icc), icc, True)] if icc else []
    tifffile.imwrite(path, image, tile=(tile, tile), photometric="rgb", compression=None,
                     description=description, metadata=None, extratags=extratags)
    return path


def faded(image: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """A washed-out copy: every pixel moved toward white (``strength`` of its stain kept)."""
    return np.rint(255 - (255 - image.astype(np.float32)) * strength).astype(np.uint8)


def blurred(image: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """An out-of-focus copy (gaussian blur of each channel)."""
    from scipy import ndimage

    return np.stack([ndimage.gaussian_filter(image[..., c], sigma) for c in range(3)], axis=-1)


def with_pen(image: np.ndarray, colour: tuple[int, int, int] = (20, 70, 200), width: int = 14) -> np.ndarray:
    """A copy with a thick pen stroke (blue ink by default) across the upper half."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image)
    h, w = image.shape[:2]
    ImageDraw.Draw(canvas).line([(w * 0.1, h * 0.15), (w * 0.9, h * 0.35)], fill=colour, width=width)
    return np.asarray(canvas)


def fluorescence_like(image: np.ndarray) -> np.ndarray:
    """A dark-field copy: black background, tissue glowing green/blue where it was stained."""
    stain = 255 - image.astype(np.float32).min(axis=-1)
    tissue = (image <= 220).any(axis=-1)
    out = np.zeros_like(image)
    out[..., 1] = np.clip(stain * 1.5, 0, 255) * tissue
    out[..., 2] = np.clip(stain * 0.6, 0, 255) * tissue
    return out + 8


def ihc_like(image: np.ndarray) -> np.ndarray:
    """A DAB-stained-looking copy: the eosin (pink) stain replaced by brown."""
    f = image.astype(np.float32)
    od = 1 - f.min(axis=-1, keepdims=True) / 255
    brown = np.array([255, 255, 255], np.float32) - od * np.array([110, 170, 230], np.float32)
    return np.clip(np.where((image <= 220).any(axis=-1, keepdims=True), brown, f), 0, 255).astype(np.uint8)


def with_fold(image: np.ndarray, factor: float = 3.5) -> np.ndarray:
    """A copy whose middle band of tissue lies doubled over: its optical density multiplied."""
    out = image.copy()
    h = image.shape[0]
    band = out[int(h * 0.55) : int(h * 0.8)]
    od = -np.log((band.astype(np.float32) + 1) / 256)
    tissue = (band <= 220).any(axis=-1, keepdims=True)
    darker = np.clip(256 * np.exp(-od * factor) - 1, 0, 255)
    out[int(h * 0.55) : int(h * 0.8)] = np.where(tissue, darker, band).astype(np.uint8)
    return out
