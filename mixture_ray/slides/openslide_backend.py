"""OpenSlide backend (openslide-python + openslide-bin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixture_ray.errors import SlideError
from mixture_ray.slides.reader import thumbnail_by_blocks

if TYPE_CHECKING:
    from pathlib import Path


def _float_property(properties: object, key: str) -> float | None:
    try:
        value = float(properties[key])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None
    return value if value > 0 else None


class OpenSlideReader:
    """``SlideReader`` over ``openslide.OpenSlide``; RGBA is composited onto white."""

    backend = "openslide"

    def __init__(self, path: Path) -> None:
        import openslide

        self.path = path
        try:
            self._slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideError(str(path), "not a slide format OpenSlide can read") from exc
        except openslide.OpenSlideError as exc:
            raise SlideError(str(path), f"OpenSlide cannot open it: {exc}") from exc
        props = self._slide.properties
        self._mpp = _float_property(props, openslide.PROPERTY_NAME_MPP_X)
        self._power = _float_property(props, openslide.PROPERTY_NAME_OBJECTIVE_POWER)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """(width, height) of each pyramid level, level 0 first."""
        return tuple(self._slide.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample of each level relative to level 0."""
        return tuple(float(d) for d in self._slide.level_downsamples)

    @property
    def mpp(self) -> float | None:
        """Microns per pixel at level 0, or None when the file does not say."""
        return self._mpp

    @property
    def objective_power(self) -> float | None:
        """Scanning objective power, or None when the file does not say."""
        return self._power

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array (h, w, 3) of ``size=(w, h)`` at ``level`` (composited on white)."""
        import openslide

        try:
            rgba = np.asarray(self._slide.read_region(location, level, size))
        except openslide.OpenSlideError as exc:
            raise SlideError(str(self.path), f"OpenSlide failed to decode a region: {exc}") from exc
        return rgba_on_white(rgba)

    def thumbnail(self, max_size: int) -> np.ndarray:
        """RGB uint8 array whose longer side is at most ``max_size`` (read in blocks)."""
        return thumbnail_by_blocks(self, max_size)

    def close(self) -> None:
        """Close the slide file."""
        self._slide.close()


def rgba_on_white(rgba: np.ndarray) -> np.ndarray:
    """Composite straight-alpha RGBA onto white; returns RGB uint8."""
    alpha = rgba[..., 3:4]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[..., :3])
    a = alpha.astype(np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return rgb.astype(np.uint8)
