"""Pick and open a slide backend: ``open_slide(path, backend="auto")``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mixture_ray.errors import MissingExtraError, SlideError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mixture_ray.slides.reader import SlideReader

BACKENDS = ("openslide", "tiffslide", "cucim")
#: A slide backend setting: one of BACKENDS, or ``auto`` (cuCIM with a GPU, else tiffslide).
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


def check_slide_file(path: Path) -> None:
    """Raise SlideError for a path that cannot be a slide (missing, empty, a folder)."""
    if not path.exists():
        raise SlideError(str(path), "file not found; check the path in the manifest")
    if path.is_dir():
        raise SlideError(str(path), "is a folder, not a slide file")
    if path.stat().st_size == 0:
        raise SlideError(str(path), "file is empty (0 bytes); re-copy or re-export the slide")


def probe_decode(reader: SlideReader) -> None:
    """Decode a small region at the origin of level 0 and of the coarsest level.

    A backend can open a file whose tiles it cannot decode (tiffslide on Hamamatsu NDPI: "Not a
    JPEG file"); ``auto`` then moves on to the next backend instead of failing every tile.

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
        path: the slide file (SVS, generic tiled TIFF, NDPI, MRXS, ... as the backends read them).
        backend: ``openslide``, ``tiffslide``, ``cucim``, or ``auto``: each available backend in
            turn (cuCIM with a GPU, tiffslide, OpenSlide), keeping the first that opens the file
            and decodes a probe region (:func:`probe_decode`).
        tile_cache_bytes: bound of the decoded-tile cache of backends that keep one (tiffslide).
        to_srgb: convert every read region from the slide's embedded ICC profile to sRGB (Little
            CMS via Pillow ImageCms); a slide without a profile is read as it is. The profile
            itself is ``reader.icc_profile`` either way.

    Returns:
        An open reader; close it when done.

    Raises:
        SlideError: no backend can read the file; the message gives each backend's reason.

    Example:
        >>> with contextlib.closing(open_slide("slide.svs")) as reader:
        ...     region = reader.read_region((0, 0), 0, (256, 256))
    """
    path = Path(path)
    if backend != "auto" and backend not in _OPENERS:
        raise ValueError(f"unknown slide backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    check_slide_file(path)
    if backend != "auto":
        return _colour_managed(_OPENERS[backend](path, tile_cache_bytes), to_srgb)
    reasons = []
    for name in available_backends():
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
    hint = ""
    if _looks_like_tiff(path):
        hint = (
            "; the file starts like a TIFF but its structure is broken: "
            "a truncated or corrupt copy? re-copy it"
        )
    raise SlideError(str(path), "not a readable slide (" + "; ".join(reasons) + ")" + hint)


def _colour_managed(reader: SlideReader, to_srgb: bool) -> SlideReader:
    if to_srgb:
        reader.set_to_srgb(True)
    return reader


def _looks_like_tiff(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
