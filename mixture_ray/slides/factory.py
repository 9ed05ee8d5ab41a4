"""Pick and open a slide backend: ``open_slide(path, backend="auto")``.

What ``auto`` does per format. The container is read from the file's first bytes (TIFF magic,
DICOM preamble), else from its extension. TIFF containers go to each available backend in turn
(cuCIM where a GPU is present, tiffslide, OpenSlide), keeping the first that opens the file and
decodes a probe region (:func:`probe_decode`); formats tiffslide and cuCIM cannot read go to
OpenSlide alone. "Tested" means a test in tests/slides reads the format's pixels.

=========================================  ==========================  =====================================
format (what to pass)                      auto chooses                tested
=========================================  ==========================  =====================================
Aperio SVS (.svs), JPEG or JPEG 2000       tiffslide                   yes: two real SVS (shared data)
generic tiled TIFF (.tif, .tiff)           tiffslide                   yes: synthetic JPEG pyramid
Hamamatsu NDPI (.ndpi)                     tiffslide, else OpenSlide   fallback only (decode made to fail);
                                           (tiles tiffslide cannot     no NDPI sample
                                           decode, e.g. huge JPEGs)
Leica SCN, Ventana BIF, Philips TIFF       tiffslide (probe fallback   no sample; routed as TIFF
                                           to OpenSlide)
Trestle / Ventana .tif                     tiffslide as generic TIFF   no sample
DICOM WSI (series folder or any .dcm)      OpenSlide (>= 4.0)          yes: synthetic 2-level JPEG series
3DHISTECH MIRAX (.mrxs or its data folder) OpenSlide                   routing and messages only; no sample
Hamamatsu VMS/VMU, Sakura SVSlide, Zeiss   OpenSlide                   routing only; no sample
CZI
=========================================  ==========================  =====================================

An explicit ``backend=tiffslide`` or ``cucim`` on a format only OpenSlide reads fails at once with
a message that says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mixture_ray.errors import MissingExtraError, SlideError
from mixture_ray.locations import is_uri
from mixture_ray.slides.formats import (
    DICOM,
    TIFF,
    TIFF_FAMILY,
    SlideFormat,
    detect_format,
    resolve_slide_path,
)
from mixture_ray.slides.staged import staged_slide

if TYPE_CHECKING:
    from collections.abc import Callable

    from mixture_ray.slides.reader import SlideReader

BACKENDS = ("openslide", "tiffslide", "cucim")
#: A slide backend setting: one of BACKENDS, or ``auto`` (see the module docstring's table).
Backend = Literal["auto", "openslide", "tiffslide", "cucim"]


def _open_openslide(path: Path, cache_bytes: int) -> SlideReader:
    try:
        from mixture_ray.slides.openslide_backend import OpenSlideReader
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingExtraError("the OpenSlide backend (openslide-python, openslide-bin)", "core") from exc
    return OpenSlideReader(path)


def _open_tiffslide(path: Path, cache_bytes: int) -> SlideReader:
    from mixture_ray.slides.tiffslide_backend import TiffSlideReader

    return TiffSlideReader(path, cache_bytes=cache_bytes)


def _open_cucim(path: Path, cache_bytes: int) -> SlideReader:
    from mixture_ray.slides.cucim_backend import CuCIMReader, cucim_available

    if not cucim_available():
        raise MissingExtraError("the cuCIM backend (needs cucim and a CUDA GPU)", "gpu")
    return CuCIMReader(path)


_OPENERS: dict[str, Callable[[Path, int], SlideReader]] = {
    "openslide": _open_openslide,
    "tiffslide": _open_tiffslide,
    "cucim": _open_cucim,
}


def available_backends() -> list[str]:
    """Backends usable on this machine, in the order ``auto`` tries them."""
    from mixture_ray.slides.cucim_backend import cucim_available

    order = ["cucim"] if cucim_available() else []
    return [*order, "tiffslide", "openslide"]


def probe_decode(reader: SlideReader) -> None:
    """Decode a small region at the origin of level 0 and of the coarsest level.

    A backend can open a file whose tiles it cannot decode (tiffslide on Hamamatsu NDPI: "Not a
    JPEG file"); ``auto`` then moves on to the next backend instead of failing every tile.

    Args:
        reader: the reader a backend just opened.

    Raises:
        SlideError: the backend cannot decode the slide's pixels.
    """
    for level in sorted({0, len(reader.level_dimensions) - 1}):
        width, height = reader.level_dimensions[level]
        reader.read_region((0, 0), level, (max(1, min(16, width)), max(1, min(16, height))))


def open_slide(
    path: Path | str, backend: str = "auto", *, tile_cache_bytes: int = 64 << 20, to_srgb: bool = False
) -> SlideReader:
    """Open a whole-slide image with one backend, or with the first that can decode it.

    Args:
        path: the slide file (SVS, generic tiled TIFF, NDPI, SCN, BIF, Philips TIFF, MRXS, ...), a
            folder holding one DICOM WSI series (or any ``.dcm`` file of that series), or a MIRAX
            data folder beside its ``.mrxs`` file (see
            :func:`~mixture_ray.slides.formats.resolve_slide_path`). The reader's ``path`` is the
            file the backend opened.
        backend: ``openslide``, ``tiffslide``, ``cucim``, or ``auto``: for TIFF containers each
            available backend in turn (cuCIM with a GPU, tiffslide, OpenSlide), keeping the first
            that opens the file and decodes a probe region (:func:`probe_decode`); formats only
            OpenSlide reads (DICOM, MIRAX, VMS/VMU, SVSlide, CZI) go to OpenSlide. The module
            docstring has the table.
        tile_cache_bytes: bound of the decoded-tile cache of backends that keep one (tiffslide).
        to_srgb: convert every read region from the slide's embedded ICC profile to sRGB (Little
            CMS via Pillow ImageCms); a slide without a profile is read as it is. The profile
            itself is ``reader.icc_profile`` either way.

    Returns:
        An open reader; close it when done.

    Raises:
        SlideError: no backend can read the file (the message gives each backend's reason), or
            the chosen backend cannot read this format.

    Example:
        >>> with contextlib.closing(open_slide("slide.svs")) as reader:
        ...     region = reader.read_region((0, 0), 0, (256, 256))
    """
    if backend != "auto" and backend not in _OPENERS:
        raise ValueError(f"unknown slide backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    path = resolve_slide_path(staged_slide(os.fspath(path)) if is_uri(path) else Path(path))
    fmt = detect_format(path)
    if backend != "auto":
        if fmt.openslide_only and backend != "openslide":
            raise SlideError(
                str(path),
                f"{backend} cannot read {fmt.label} slides (it reads TIFF containers only: "
                f"{TIFF_FAMILY}); use backend=openslide or auto",
            )
        try:
            return _colour_managed(_OPENERS[backend](path, tile_cache_bytes), to_srgb)
        except SlideError as exc:
            if fmt is TIFF:  # the backend's own reason says it (a codec, a broken file)
                raise
            raise SlideError(str(path), exc.reason + _format_hint(fmt)) from exc
    reasons = []
    for name in ["openslide"] if fmt.openslide_only else available_backends():
        try:
            reader = _OPENERS[name](path, tile_cache_bytes)
        except SlideError as exc:
            reasons.append(f"{name}: {exc.reason}")
            continue
        try:
            probe_decode(reader)
        except SlideError as exc:
            reader.close()
            reasons.append(f"{name}: opens the file but cannot decode it: {exc.reason}")
            continue
        return _colour_managed(reader, to_srgb)
    raise SlideError(str(path), "not a readable slide (" + "; ".join(reasons) + ")" + _format_hint(fmt))


def _format_hint(fmt: SlideFormat) -> str:
    """What to check when no backend read a file of format ``fmt`` (empty when nothing to add)."""
    if fmt is TIFF:
        return (
            "; the file starts like a TIFF but its structure is broken: "
            "a truncated or corrupt copy? re-copy it"
        )
    if fmt is DICOM:
        import openslide

        version = str(openslide.__library_version__)
        if int(version.split(".")[0]) < 4:
            return f"; DICOM WSI needs OpenSlide >= 4.0 (openslide-bin >= 4.0), this is {version}"
        return (
            "; OpenSlide reads DICOM VL Whole Slide Microscopy Image series: is this another kind of "
            "DICOM, or are files of the series missing from its folder?"
        )
    return ""


def _colour_managed(reader: SlideReader, to_srgb: bool) -> SlideReader:
    if to_srgb:
        reader.set_to_srgb(True)
    return reader
