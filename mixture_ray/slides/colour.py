"""ICC colour profiles of slides: read the embedded profile, convert read pixels to sRGB.

Scanners embed an ICC profile (TIFF tag 34675, InterColorProfile; OpenSlide's ``color_profile``)
that says what the stored RGB values mean. Pixels are returned as stored unless a reader is
opened with ``to_srgb=True``; then every region is passed through a Little CMS transform (Pillow
``ImageCms``) from the slide's profile to sRGB. A slide without a profile is taken to be sRGB.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageCms

if TYPE_CHECKING:
    from pathlib import Path

#: TIFF tag that holds an embedded ICC profile.
ICC_TAG = 34675


class SrgbTransform:
    """RGB uint8 arrays from a slide's ICC profile to sRGB (Little CMS via Pillow).

    Args:
        icc: the embedded ICC profile's bytes.
    """

    def __init__(self, icc: bytes) -> None:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        intent = ImageCms.Intent(ImageCms.getDefaultIntent(source))
        self._transform = ImageCms.buildTransform(
            source, ImageCms.createProfile("sRGB"), "RGB", "RGB", renderingIntent=intent
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """The (h, w, 3) uint8 pixels converted to sRGB."""
        if rgb.size == 0:
            return rgb
        converted = self._transform.apply(Image.fromarray(np.ascontiguousarray(rgb), "RGB"))
        return np.asarray(converted)


def profile_description(icc: bytes | None) -> str | None:
    """The profile's description (``Adobe RGB (1998)``), '' when unreadable, None without one."""
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return str(ImageCms.getProfileDescription(profile)).strip()
    except (OSError, ImageCms.PyCMSError):
        return ""


def tiff_icc_profile(path: Path) -> bytes | None:
    """The InterColorProfile tag of a TIFF's first page, None when absent or not a TIFF."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(ICC_TAG)  # type: ignore[union-attr]
            return bytes(tag.value) if tag is not None else None
    except (OSError, tifffile.TiffFileError, IndexError):
        return None
