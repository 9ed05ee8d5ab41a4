"""Slides on object storage, staged to a node-local cache before a backend opens them.

OpenSlide and cuCIM read local files only, and a slide is read many times (thumbnail, QC, every
tile batch), so a slide at an object-store URI is copied once per node into a local cache and
opened from there. The cache file is named by a hash of the URI, the object's size and its
modification time, so a replaced object is fetched again; it appears under its final name only
when the copy is complete (written aside, then renamed), so two readers on one node never open
half a file. The cache is bounded: after each copy the least recently used slides beyond
``MIXTURE_RAY_SLIDE_CACHE_GB`` (default 100) are removed.

Settings (environment, on every node): ``MIXTURE_RAY_SLIDE_CACHE`` (the folder; default
``<tmp>/mixture-ray-slides``), ``MIXTURE_RAY_SLIDE_CACHE_GB``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from mixture_ray.errors import SlideError
from mixture_ray.locations import Location

CACHE_ENV = "MIXTURE_RAY_SLIDE_CACHE"
LIMIT_ENV = "MIXTURE_RAY_SLIDE_CACHE_GB"
_CHUNK = 8 << 20


def cache_folder() -> Path:
    """This node's slide cache folder (created)."""
    folder = Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "mixture-ray-slides")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _limit_bytes() -> int:
    text = os.environ.get(LIMIT_ENV, "100")
    try:
        return int(float(text) * (1 << 30))
    except ValueError as exc:
        raise SlideError(LIMIT_ENV, f"must be a number of GiB, got {text!r}") from exc


def staged_slide(uri: str) -> Path:
    """A local copy of the slide at ``uri`` (fetched once per node and kept in the cache).

    Args:
        uri: the slide's object-store URI (one file: SVS, TIFF, NDPI, ...).

    Returns:
        The local file.

    Raises:
        SlideError: the object is missing or cannot be copied (the message names the URI).
    """
    source = Location.of(uri)
    try:
        found = source.info()  # one request: type, size and time
        if found.type != pafs.FileType.File:
            folder_note = "a folder (DICOM series and MIRAX slides on object storage are not read)"
            what = folder_note if found.type == pafs.FileType.Directory else "not found"
            raise SlideError(uri, f"{what}; check the path in the manifest")
        size, mtime = int(found.size or 0), int(found.mtime_ns or 0)
    except OSError as exc:
        raise SlideError(uri, f"cannot reach the object store ({exc}); check credentials and endpoint"
                         ) from exc
    digest = hashlib.sha1(f"{uri}\0{size}\0{mtime}".encode()).hexdigest()[:20]
    folder = cache_folder()
    local = folder / f"{digest}-{source.name}"
    if local.is_file() and local.stat().st_size == size:
        os.utime(local)  # recently used
        return local
    tmp = folder / f".{local.name}.{uuid.uuid4().hex}.part"
    try:
        with source.fs.open_input_stream(source.path) as stream, tmp.open("wb") as out:
            while chunk := stream.read(_CHUNK):
                out.write(chunk)
        if tmp.stat().st_size != size:
            raise OSError(f"copied {tmp.stat().st_size} of {size} bytes")
        os.replace(tmp, local)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SlideError(uri, f"copy to the node's slide cache {folder} failed: {exc}") from exc
    _evict(folder, keep=local)
    return local


def _evict(folder: Path, *, keep: Path) -> None:
    """Remove least recently used slides until the cache fits its limit (never ``keep``)."""
    limit = _limit_bytes()
    entries = []
    for path in folder.iterdir():
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size


def clear_cache() -> None:
    """Remove this node's slide cache."""
    shutil.rmtree(cache_folder(), ignore_errors=True)
