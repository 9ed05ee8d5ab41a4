"""Slides on object storage, staged to a node-local cache before a backend opens them.

OpenSlide and cuCIM read local files only, and a slide is read many times (thumbnail, QC, every
tile batch), so a slide at an object-store URI is copied once per node into a local cache and
opened from there. The cache file is named by a hash of the URI, the object's size and its
modification time, so a replaced object is fetched again.

One copy per slide per node: the processes of one node (Ray actors are separate processes) take
an OS file lock (``fcntl.flock``) on ``.<name>.lock`` beside the cache entry before copying; the
first copies, the others wait and then find the finished file. The kernel releases the lock when
its holder exits or is killed, so a dead copy never blocks the node. The copy is written aside
(``.<name>.<random>.part``) and renamed into place when complete, so a reader never opens half a
file.

After each copy the cache is trimmed (one process at a time, under ``.evict.lock``; a process
that finds it busy skips its turn):

* ``.part`` files older than 10 minutes whose slide lock no one holds are removed: their copy was
  killed (a live copy holds the lock and keeps writing);
* the least recently used slides beyond the cap are removed (never the slide just staged);
* lock files of slides no longer cached are removed when no one holds them.

The cap is ``MIXTURE_RAY_SLIDE_CACHE_GB`` (GiB; ``0`` keeps only the slide in use) when set.
Otherwise it follows the cache's file system: at most what the cache holds plus the free space,
less a reserve of 10% of the file system (for whatever else writes there: Ray's object spilling,
logs, other users), and never more than half the file system. It is worked out after each copy,
so it shrinks as the disk fills up and grows as it frees.

Settings (environment, on every node): ``MIXTURE_RAY_SLIDE_CACHE`` (the folder; default
``<tmp>/mixture-ray-slides``), ``MIXTURE_RAY_SLIDE_CACHE_GB``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from mixture_ray.env_settings import env_number
from mixture_ray.errors import ConfigError, SlideError
from mixture_ray.locations import Location

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger(__name__)

CACHE_ENV = "MIXTURE_RAY_SLIDE_CACHE"
LIMIT_ENV = "MIXTURE_RAY_SLIDE_CACHE_GB"
RESERVE_SHARE = 0.10  # of the file system, left free when the cap follows the disk
MAX_SHARE = 0.50  # of the file system, the most the cache takes when the cap follows the disk
STALE_PART_SECONDS = 600.0  # an unlocked .part file this old belongs to a killed copy
_CHUNK = 8 << 20
_EVICT_LOCK = ".evict.lock"
_PART = re.compile(r"^\.(?P<slide>.+)\.[0-9a-f]{32}\.part$")
_LOCK = re.compile(r"^\.(?P<slide>.+)\.lock$")


def cache_folder() -> Path:
    """This node's slide cache folder (created)."""
    folder = Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "mixture-ray-slides")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _configured_limit() -> int | None:
    """The cap set by ``MIXTURE_RAY_SLIDE_CACHE_GB`` in bytes, or None when it is not set."""
    try:
        gib = env_number(LIMIT_ENV, minimum=0.0, meaning="GiB the slide cache may hold")
    except ConfigError as exc:
        raise SlideError(LIMIT_ENV, str(exc).removeprefix(f"{LIMIT_ENV}=")) from None
    return None if gib is None else int(gib * (1 << 30))


def _limit_bytes(folder: Path, held: int) -> int:
    """The cache's cap in bytes, given the ``held`` bytes of cached slides in ``folder``.

    ``MIXTURE_RAY_SLIDE_CACHE_GB`` when set; otherwise ``min(held + free - 10% of the file
    system, 50% of the file system)``, not below 0.
    """
    configured = _configured_limit()
    if configured is not None:
        return configured
    disk = shutil.disk_usage(folder)
    room = held + disk.free - int(disk.total * RESERVE_SHARE)
    return max(0, min(room, int(disk.total * MAX_SHARE)))


def staged_slide(uri: str) -> Path:
    """A local copy of the slide at ``uri`` (fetched once per node and kept in the cache).

    Args:
        uri: the slide's object-store URI (one file: SVS, TIFF, NDPI, ...).

    Returns:
        The local file.

    Raises:
        SlideError: the object is missing or cannot be copied (the message names the URI), or
            ``MIXTURE_RAY_SLIDE_CACHE_GB`` is not a number of GiB (the message names it).
    """
    _configured_limit()  # a bad setting fails before any copy
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
    if _ready(local, size):
        return local
    try:
        with _held(_lock_path(local)):
            if _ready(local, size):  # copied by another process of this node while this one waited
                return local
            _fetch(source, local, size)
    except OSError as exc:
        raise SlideError(uri, f"copy to the node's slide cache {folder} failed: {exc}") from exc
    try:
        _evict(folder, keep=local)
    except OSError as exc:  # the slide is staged; a trim that fails is tried again after the next copy
        log.warning("could not trim the slide cache %s: %s", folder, exc)
    return local


def _ready(local: Path, size: int) -> bool:
    """Whether ``local`` is a complete copy (then marked recently used)."""
    try:
        if local.stat().st_size != size:
            return False
        os.utime(local)
    except FileNotFoundError:  # not copied yet, or just evicted
        return False
    return True


def _copy_object(source: Location, target: Path) -> None:
    """Write the object at ``source`` to the local file ``target``."""
    with source.fs.open_input_stream(source.path) as stream, target.open("wb") as out:
        while chunk := stream.read(_CHUNK):
            out.write(chunk)


def _fetch(source: Location, local: Path, size: int) -> None:
    """Copy ``source`` to ``local`` through a ``.part`` file beside it (the caller holds the lock)."""
    tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.part")
    try:
        _copy_object(source, tmp)
        copied = tmp.stat().st_size
        if copied != size:
            raise OSError(f"copied {copied} of {size} bytes")
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)


def _lock_path(local: Path) -> Path:
    """The lock file of the cache entry ``local``."""
    return local.with_name(f".{local.name}.lock")


def _lock(path: Path, *, wait: bool) -> int | None:
    """Take an exclusive ``flock`` on ``path`` (created if missing).

    Args:
        path: the lock file.
        wait: block until the lock is free; else give up at once when another process holds it.

    Returns:
        An open descriptor holding the lock (closing it releases the lock), or None when ``wait``
        is False and the lock is held elsewhere.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            # A cleaner may have removed the file while this process waited for it: a lock on a
            # removed file excludes no one, so lock the file now at the path instead.
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except BlockingIOError:
            os.close(fd)
            return None
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def _held(path: Path) -> Iterator[None]:
    """Hold the lock file ``path``, waiting for another process that holds it."""
    fd = _lock(path, wait=False)
    while fd is None:
        log.info("another process on this node is copying %s: waiting for it", path.name[1:-5])
        fd = _lock(path, wait=True)
    try:
        yield
    finally:
        os.close(fd)


def _remove_unlocked(lock: Path, *paths: Path) -> bool:
    """Remove ``paths`` and the lock file ``lock`` if no process holds ``lock``; whether it did."""
    fd = _lock(lock, wait=False)
    if fd is None:
        return False
    try:
        for path in paths:
            path.unlink(missing_ok=True)
        lock.unlink(missing_ok=True)  # a process waiting on it finds it gone and locks a new one
    finally:
        os.close(fd)
    return True


def _evict(folder: Path, *, keep: Path) -> None:
    """Trim the cache: killed copies, slides beyond the cap (never ``keep``), unused lock files."""
    guard = _lock(folder / _EVICT_LOCK, wait=False)
    if guard is None:  # another process of this node is trimming
        return
    try:
        _trim(folder, keep)
    finally:
        os.close(guard)


def _trim(folder: Path, keep: Path) -> None:
    """The work of :func:`_evict` (the caller holds the folder's trim lock)."""
    slides: list[tuple[float, int, Path]] = []
    parts: dict[str, list[tuple[float, Path]]] = {}
    locks: list[tuple[str, Path]] = []
    for path in folder.iterdir():
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed meanwhile by another process
            continue
        if path.name == _EVICT_LOCK:
            continue
        if (part := _PART.match(path.name)) is not None:
            parts.setdefault(part["slide"], []).append((stat.st_mtime, path))
        elif (lock := _LOCK.match(path.name)) is not None:
            locks.append((lock["slide"], path))
        elif not path.name.startswith(".") and path.is_file():
            slides.append((stat.st_mtime, stat.st_size, path))

    # Killed copies: old .part files whose slide lock no one holds (a live copy holds it).
    stale_before = time.time() - STALE_PART_SECONDS
    for slide, found in list(parts.items()):
        stale = [path for mtime, path in found if mtime < stale_before]
        if stale and _remove_unlocked(folder / f".{slide}.lock", *stale):
            log.info("removed %d unfinished cache copies of %s (their copy was stopped)", len(stale), slide)
            if len(stale) == len(found):
                del parts[slide]

    # Least recently used slides beyond the cap.
    total = sum(size for _, size, _ in slides)
    limit = _limit_bytes(folder, total)
    cached = {path.name for _, _, path in slides}
    for _, size, path in sorted(slides):
        if total <= limit:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            cached.discard(path.name)
            total -= size

    # Lock files of slides neither cached nor being copied.
    for slide, path in locks:
        if slide not in cached and slide not in parts:
            _remove_unlocked(path)


def clear_cache() -> None:
    """Remove this node's slide cache."""
    shutil.rmtree(cache_folder(), ignore_errors=True)
