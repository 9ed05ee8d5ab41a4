"""OpenSlide backend (openslide-python + openslide-bin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixture_ray.errors import SlideError
from mixture_ray.slides.reader import HeaderReader, positive_number

if TYPE_CHECKING:
    from pathlib import Path


class OpenSlideReader(HeaderReader):
    """``SlideReader`` over ``openslide.OpenSlide``; RGBA is composited onto white.

    Args:
        path: the slide file.
        to_srgb: convert read pixels from the slide's ICC profile (``color_profile``) to sRGB.
    """

    backend = "openslide"

    def __init__(self, path: Path, to_srgb: bool = False) -> None:
        import openslide

        self.path = path
        try:
            self._slide = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideError(str(path), "not a slide format OpenSlide can read") from exc
        except openslide.OpenSlideError as exc:
            raise SlideError(str(path), f"OpenSlide cannot open it: {exc}") from exc
        props = self._slide.properties
        self._dims = tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)
        self._downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self._mpp = positive_number(props.get(openslide.PROPERTY_NAME_MPP_X))
        self._power = positive_number(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
        profile = self._slide.color_profile
        self._init_colour(profile.tobytes() if profile is not None else None, to_srgb)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array (h, w, 3) of ``size=(w, h)`` at ``level`` (composited on white)."""
        import openslide

        try:
            rgba = np.asarray(self._slide.read_region(location, level, size))
        except openslide.OpenSlideError as exc:
            raise SlideError(str(self.path), f"OpenSlide failed to decode a region: {exc}") from exc
        return self._colour(rgba_on_white(rgba))

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
