"""Tile pixel encoding and the background rule."""

from __future__ import annotations

import io
from typing import Any

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


def decode_tile_rows(batch: Any, size: int = 0) -> tuple[list[np.ndarray], list[int], list[str | None]]:
    """Decode the ``image`` column of a tile batch (pyarrow table with x, y) for a model stage.

    Returns the decoded tiles (resized to ``size`` when given), their row indices, and one error
    per row (None where the tile decoded): one bad tile fails its slide, not the run.
    """
    errors: list[str | None] = [None] * batch.num_rows
    tiles, ok = [], []
    for i, data in enumerate(batch["image"].to_pylist()):
        try:
            if data is None:
                raise ValueError("tile has no pixels (tiled with encoding=none)")
            tiles.append(resize_square(decode_tile(bytes(data)), size))
            ok.append(i)
        except Exception as exc:
            errors[i] = f"tile ({batch['x'][i]}, {batch['y'][i]}): {exc}"
    return tiles, ok, errors
