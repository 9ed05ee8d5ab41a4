"""Tile pixel encoding and the background rule."""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
from PIL import Image


def background_fraction(rgb: np.ndarray, threshold: int = 220) -> float:
    """Fraction of pixels whose R, G and B all exceed ``threshold``."""
    mask = (rgb[..., 0] > threshold) & (rgb[..., 1] > threshold) & (rgb[..., 2] > threshold)
    return float(mask.mean())


def encode_tile(rgb: np.ndarray, encoding: str, jpeg_quality: int = 90) -> bytes | None:
    """Encode an RGB uint8 tile as ``jpeg`` or ``png``; ``none`` stores no pixels."""
    if encoding == "jpeg":
        return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(rgb), level=jpeg_quality))
    if encoding == "png":
        return bytes(imagecodecs.png_encode(np.ascontiguousarray(rgb)))
    if encoding == "none":
        return None
    raise ValueError(f"unknown tile encoding {encoding!r}; choose jpeg, png or none")


def decode_tile(data: bytes) -> np.ndarray:
    """Decode stored tile bytes (JPEG or PNG) to an RGB uint8 array."""
    if data[:2] == b"\xff\xd8":
        return np.asarray(imagecodecs.jpeg8_decode(data))
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` resized (bilinear) to ``size`` x ``size``; unchanged when size is 0 or already matches."""
    if not size or rgb.shape[:2] == (size, size):
        return rgb
    with Image.fromarray(rgb) as image:
        return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
