"""The ``SlideReader`` protocol and helpers shared by every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from mixture_ray.slides.colour import SrgbTransform

if TYPE_CHECKING:
    from pathlib import Path


@runtime_checkable
class SlideReader(Protocol):
    """What every slide backend offers. Coordinates are (x, y); arrays are RGB uint8 (H, W, 3)."""

    path: Path
    backend: str

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each pyramid level, level 0 first."""
        ...

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample of each level relative to level 0."""
        ...

    @property
    def mpp(self) -> float | None:
        """Microns per pixel at level 0, or None when the file does not say."""
        ...

    @property
    def objective_power(self) -> float | None:
        """Scanning objective power (e.g. 20.0), or None when the file does not say."""
        ...

    @property
    def icc_profile(self) -> bytes | None:
        """The embedded ICC colour profile, or None when the slide has none."""
        ...

    @property
    def to_srgb(self) -> bool:
        """True when read pixels are converted from the slide's ICC profile to sRGB."""
        ...

    def set_to_srgb(self, enabled: bool) -> None:
        """Convert read pixels from the slide's ICC profile to sRGB from now on (or stop)."""
        ...

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array (h, w, 3) of ``size=(w, h)`` at ``level``; ``location`` in level-0 px."""
        ...

    def thumbnail(self, max_size: int) -> np.ndarray:
        """RGB uint8 array whose longer side is at most ``max_size``."""
        ...

    def close(self) -> None:
        """Release the file handle."""
        ...


def positive_number(value: object) -> float | None:
    """``value`` as a float when it is a number > 0 (a header field), else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


class HeaderReader:
    """The part every backend shares: the header facts it read on opening, and the thumbnail.

    A backend sets ``path``, ``backend``, ``_dims``, ``_downsamples``, ``_mpp`` and ``_power`` when
    it opens the file, calls :meth:`_init_colour` with the slide's ICC profile, implements
    ``read_region`` and ``close``, and passes every region through :meth:`_colour` last.
    """

    path: Path
    backend: str
    _dims: tuple[tuple[int, int], ...]
    _downsamples: tuple[float, ...]
    _mpp: float | None
    _power: float | None
    _icc: bytes | None = None
    _srgb: SrgbTransform | None = None
    _to_srgb: bool = False

    def _init_colour(self, icc: bytes | None, to_srgb: bool) -> None:
        """Record the ICC profile; with ``to_srgb``, build the transform every region goes through."""
        self._icc = icc or None
        self._to_srgb = to_srgb
        self._srgb = SrgbTransform(icc) if to_srgb and icc else None

    def _colour(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` converted to sRGB when the reader was opened with ``to_srgb`` and has a profile."""
        return rgb if self._srgb is None else self._srgb(rgb)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each pyramid level, level 0 first."""
        return self._dims

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample of each level relative to level 0."""
        return self._downsamples

    @property
    def mpp(self) -> float | None:
        """Microns per pixel at level 0, or None when the file does not say."""
        return self._mpp

    @property
    def objective_power(self) -> float | None:
        """Scanning objective power, or None when the file does not say."""
        return self._power

    @property
    def icc_profile(self) -> bytes | None:
        """The embedded ICC colour profile, or None when the slide has none."""
        return self._icc

    @property
    def to_srgb(self) -> bool:
        """True when read pixels are converted from the slide's ICC profile to sRGB."""
        return self._to_srgb

    def set_to_srgb(self, enabled: bool) -> None:
        """Convert read pixels from the slide's ICC profile to sRGB from now on (or stop)."""
        self._init_colour(self._icc, enabled)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array (h, w, 3) of ``size=(w, h)`` at ``level``; ``location`` in level-0 px."""
        raise NotImplementedError

    def thumbnail(self, max_size: int) -> np.ndarray:
        """RGB uint8 array whose longer side is at most ``max_size`` (read in blocks)."""
        return thumbnail_by_blocks(self, max_size)

    def close(self) -> None:
        """Release the file handle."""
        raise NotImplementedError


def best_level(downsamples: tuple[float, ...], downsample: float) -> int:
    """Index of the coarsest level whose downsample does not exceed ``downsample`` (1 % slack)."""
    best = 0
    for i, d in enumerate(downsamples):
        if d <= downsample * 1.01 and d >= downsamples[best]:
            best = i
    return best


def thumbnail_by_blocks(reader: SlideReader, max_size: int, block: int = 2048) -> np.ndarray:
    """Thumbnail read from the best level in ``block``-sized pieces so memory stays bounded."""
    width, height = reader.level_dimensions[0]
    downsample = max(width, height) / max_size
    level = best_level(reader.level_downsamples, downsample)
    level_w, level_h = reader.level_dimensions[level]
    level_ds = reader.level_downsamples[level]
    scale = level_ds / max(downsample, 1.0)
    out_w, out_h = max(1, round(level_w * scale)), max(1, round(level_h * scale))
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    for by in range(0, level_h, block):
        for bx in range(0, level_w, block):
            bw, bh = min(block, level_w - bx), min(block, level_h - by)
            x0, y0 = round(bx * scale), round(by * scale)
            x1, y1 = round((bx + bw) * scale), round((by + bh) * scale)
            if x1 <= x0 or y1 <= y0:
                continue
            piece = reader.read_region((round(bx * level_ds), round(by * level_ds)), level, (bw, bh))
            out[y0:y1, x0:x1] = resize_rgb(piece, (x1 - x0, y1 - y0))
    return out


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 array to ``size=(w, h)`` (box filter down, bilinear up)."""
    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    shrinking = size[0] <= image.shape[1]
    filt = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize(size, filt))
