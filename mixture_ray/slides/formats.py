"""What kind of slide a path holds, and the file a backend is handed for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mixture_ray.errors import SlideError

if TYPE_CHECKING:
    from pathlib import Path

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: What tiffslide and cuCIM read: TIFF containers only.
TIFF_FAMILY = "SVS, NDPI, SCN, BIF, Philips TIFF, generic tiled TIFF"


@dataclass(frozen=True)
class SlideFormat:
    """A slide container as the factory routes it.

    Attributes:
        name: ``tiff`` (any TIFF container), ``dicom``, ``mrxs``, ``vms``, ``svslide``, ``czi`` or
            ``unknown`` (none of these; every backend is tried).
        label: the name people know it by, for messages.
        openslide_only: only OpenSlide reads it (tiffslide and cuCIM read TIFF containers only).
    """

    name: str
    label: str
    openslide_only: bool


TIFF = SlideFormat("tiff", "TIFF", openslide_only=False)
DICOM = SlideFormat("dicom", "DICOM WSI", openslide_only=True)
UNKNOWN = SlideFormat("unknown", "unknown", openslide_only=False)
_BY_SUFFIX = {
    ".dcm": DICOM,
    ".mrxs": SlideFormat("mrxs", "3DHISTECH MIRAX (.mrxs)", openslide_only=True),
    ".vms": SlideFormat("vms", "Hamamatsu VMS", openslide_only=True),
    ".vmu": SlideFormat("vms", "Hamamatsu VMU", openslide_only=True),
    ".svslide": SlideFormat("svslide", "Sakura SVSlide", openslide_only=True),
    ".czi": SlideFormat("czi", "Zeiss CZI", openslide_only=True),
}


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(132)


def is_dicom_file(path: Path) -> bool:
    """True for a ``.dcm`` file or a file with the DICOM preamble (``DICM`` at byte 128)."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        return _head(path)[128:132] == b"DICM"
    except OSError:
        return False


def detect_format(path: Path) -> SlideFormat:
    """The container of the slide file ``path``, from its first bytes, else its extension.

    Args:
        path: an existing slide file (see :func:`resolve_slide_path` for folders).

    Returns:
        The format; :data:`UNKNOWN` when neither the bytes nor the extension tell.
    """
    head = _head(path)
    if head[:4] in TIFF_MAGIC:
        return TIFF
    if head[128:132] == b"DICM":
        return DICOM
    return _BY_SUFFIX.get(path.suffix.lower(), UNKNOWN)


def resolve_slide_path(path: Path) -> Path:
    """The file a backend opens for what a user gave: a slide file, or a folder standing for one.

    A DICOM WSI is a series of files (one per pyramid level, plus label and overview images) in
    one folder; OpenSlide opens it from any one of them and finds the rest beside it. So a DICOM
    series folder resolves to its largest DICOM file (the base level); keep one series per folder,
    since only the series of that file is read. A 3DHISTECH MIRAX slide is ``NAME.mrxs`` beside
    a ``NAME/`` data folder; the data folder resolves to the ``.mrxs`` file.

    Args:
        path: a slide file, a folder of one DICOM WSI series, or a MIRAX data folder.

    Returns:
        The file to open.

    Raises:
        SlideError: missing, empty, or a folder that is neither of the above.
    """
    if not path.exists():
        raise SlideError(str(path), "file not found; check the path in the manifest")
    if path.is_dir():
        files = (p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        series = [p for p in files if is_dicom_file(p)]
        if series:
            return max(series, key=lambda p: (p.stat().st_size, p.name))
        mrxs = path.with_name(path.name + ".mrxs")
        if mrxs.is_file():
            return mrxs
        raise SlideError(
            str(path),
            "is a folder, not a slide file: a folder is read only when it holds one DICOM WSI series "
            "(.dcm files) or is a MIRAX data folder with its .mrxs file beside it",
        )
    if path.stat().st_size == 0:
        raise SlideError(str(path), "file is empty (0 bytes); re-copy or re-export the slide")
    return path
