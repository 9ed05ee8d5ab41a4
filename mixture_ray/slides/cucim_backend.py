"""cuCIM backend (GPU extra); imported lazily and only used where a GPU is present."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.errors import MissingExtraError, SlideError
from mixture_ray.slides.colour import tiff_icc_profile
from mixture_ray.slides.reader import HeaderReader

if TYPE_CHECKING:
    from pathlib import Path


def cucim_available() -> bool:
    """True when cuCIM imports and a CUDA device is visible."""
    try:
        import cucim  # noqa: F401
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:
        return False


class CuCIMReader(HeaderReader):
    """``SlideReader`` over ``cucim.CuImage``; note cuCIM takes (location, size, level).

    Args:
        path: the slide file.
        to_srgb: convert read pixels from the slide's ICC profile to sRGB (cuCIM does not expose
            the profile, so it is read from the TIFF tag 34675 with tifffile).
    """

    backend = "cucim"

    def __init__(self, path: Path, to_srgb: bool = False) -> None:
        try:
            from cucim import CuImage
        except ImportError as exc:
            raise MissingExtraError("the cuCIM slide backend", "gpu") from exc
        self.path = path
        try:
            self._image: Any = CuImage(str(path))
        except Exception as exc:
            raise SlideError(str(path), f"cuCIM cannot open it: {exc}") from exc
        res = self._image.resolutions
        self._dims = tuple((int(w), int(h)) for w, h in res["level_dimensions"])
        self._downsamples = tuple(float(d) for d in res["level_downsamples"])
        meta = self._image.metadata
        aperio = meta.get("aperio", {}) if isinstance(meta, dict) else {}
        spacing = self._image.spacing()
        units = self._image.spacing_units()
        self._mpp: float | None = None
        if spacing and units and str(units[0]).lower() in ("micrometer", "um", "µm"):
            self._mpp = float(spacing[0]) or None
        if self._mpp is None and "MPP" in aperio:
            self._mpp = float(aperio["MPP"])
        self._power = float(aperio["AppMag"]) if "AppMag" in aperio else None
        self._init_colour(tiff_icc_profile(path), to_srgb)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 array (h, w, 3) of ``size=(w, h)`` at ``level``; ``location`` in level-0 px."""
        try:
            region = self._image.read_region(location=location, size=size, level=level)
        except Exception as exc:
            raise SlideError(str(self.path), f"cuCIM failed to decode a region: {exc}") from exc
        return self._colour(np.ascontiguousarray(np.asarray(region)[..., :3]))

    def close(self) -> None:
        """Close the slide file."""
        self._image.close()
