"""tiffslide backend; reads native TIFF tiles directly where the level layout allows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixture_ray.errors import SlideError
from mixture_ray.slides.native_tiles import NativeTiledLevel, unsupported_codec
from mixture_ray.slides.reader import HeaderReader, positive_number

if TYPE_CHECKING:
    from pathlib import Path


class TiffSlideReader(HeaderReader):
    """``SlideReader`` over ``tiffslide.TiffSlide`` with a native-tile fast path.

    Args:
        path: the slide file.
        native: decode native TIFF tiles directly where the level layout allows.
        cache_bytes: bound of the decoded-tile cache.
        to_srgb: convert read pixels from the slide's ICC profile (TIFF tag 34675) to sRGB.
    """

    backend = "tiffslide"

    def __init__(
        self, path: Path, native: bool = True, cache_bytes: int = 64 << 20, to_srgb: bool = False
    ) -> None:
        import tiffslide

        self.path = path
        try:
            self._slide = tiffslide.TiffSlide(str(path))
            dims = tuple(self._slide.level_dimensions)
        except Exception as exc:  # tiffslide raises many types for non-TIFF or broken files
            raise SlideError(str(path), f"tiffslide cannot open it: {exc}") from exc
        if not dims:
            raise SlideError(str(path), "the file holds no image levels")
        self._dims: tuple[tuple[int, int], ...] = tuple((int(w), int(h)) for w, h in dims)
        props = self._slide.properties
        self._downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self._mpp = positive_number(props.get("tiffslide.mpp-x"))
        self._power = positive_number(props.get("tiffslide.objective-power"))
        profile = self._slide.color_profile
        self._init_colour(profile.tobytes() if profile is not None else None, to_srgb)
        self._native: dict[int, NativeTiledLevel | None] = {}
        try:
            keyframe = self._slide.ts_tifffile.series[0].levels[0].keyframe
            codec = unsupported_codec(keyframe.compression)
        except (AttributeError, IndexError):
            codec = None
        if codec:
            raise SlideError(
                str(path),
                f"unsupported codec: the tiles are {codec} and this imagecodecs build cannot decode "
                "them; use backend=openslide or install imagecodecs with that codec",
            )
        self._use_native = native
        self._cache_bytes = cache_bytes

    def _native_level(self, level: int) -> NativeTiledLevel | None:
        if level not in self._native:
            native = None
            if self._use_native:
                try:
                    series = self._slide.ts_tifffile.series[0]
                    page = series.levels[level].keyframe
                    native = NativeTiledLevel(page, self._cache_bytes)
                    if (native.width, native.height) != self._dims[level]:
                        native = None
                except (ValueError, IndexError, AttributeError):
                    native = None
            self._native[level] = native
        return self._native[level]

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array (h, w, 3) of ``size=(w, h)`` at ``level``; native tiles where possible."""
        downsample = self.level_downsamples[level]
        x, y = round(location[0] / downsample), round(location[1] / downsample)
        try:
            native = self._native_level(level)
            if native is not None:
                return self._colour(native.read(x, y, size[0], size[1]))
            region = self._slide.read_region(location, level, size, as_array=True)
        except SlideError:
            raise
        except Exception as exc:
            raise SlideError(str(self.path), f"cannot decode tiles with tiffslide: {exc}") from exc
        return self._colour(np.ascontiguousarray(np.asarray(region)[..., :3]))

    def close(self) -> None:
        """Close the slide file."""
        self._slide.close()
