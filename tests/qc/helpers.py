"""QC test helpers: doctored copies (from mixture_ray.synth.defects), plain TIFFs, an ICC profile."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import tifffile

from mixture_ray.synth.defects import (
    blurred,
    faded,
    fluorescence_like,
    ihc_like,
    with_fold,
    with_pen,
    write_like_svs,
)

__all__ = [
    "blurred",
    "faded",
    "fluorescence_like",
    "ihc_like",
    "rgb_matrix_profile",
    "with_fold",
    "with_pen",
    "write_like_svs",
    "write_plain_tiff",
]

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


def write_plain_tiff(path: Path, image: np.ndarray, *, icc: bytes | None = None, tile: int = 128,
                     description: str | None = None) -> Path:
    """A one-level tiled TIFF with no resolution (no mpp), optionally an ICC profile and description."""
    extratags = [(34675, 7, len(icc), icc, True)] if icc else []
    tifffile.imwrite(path, image, tile=(tile, tile), photometric="rgb", compression=None,
                     description=description, metadata=None, extratags=extratags)
    return path
