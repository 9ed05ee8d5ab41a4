"""Where data lives: a local path or an object-store URI (``s3://bucket/key``, ``gs://bucket/key``).

Stores of tiles, embeddings and predictions, and slides, may live on object storage that every
node of a cluster reaches. :class:`Location` is one address on a ``pyarrow.fs`` file system
(``LocalFileSystem``, ``S3FileSystem``, ``GcsFileSystem``, or fsspec's through
``PyFileSystem``), so the same code writes, lists and reads both. What differs is a rename: a
local write goes to a hidden temporary name and is renamed into place, an object is written by
one PUT, which is atomic on S3 and GCS (a reader sees the old object, the new one, or none,
never half of one). Object stores have no rename, so nothing here emulates one.

Credentials and endpoints come from the usual places of each store's SDK (for S3:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``
for S3-compatible servers, or an instance role); on a cluster every node needs them, e.g. set
through the job's ``runtime_env.env_vars``.

Every S3 request is retried with the AWS SDK's standard strategy (exponential backoff with full
jitter, capped at 20 s a wait) up to ``MIXTURE_RAY_S3_ATTEMPTS`` times (default 10; pyarrow's own
default is 3), and each read, write, listing and delete of this module is retried as a whole as many
times with full-jitter backoff (0.05 s x 2^attempt, capped at 5 s): throttling (503 SlowDown), 500s,
timeouts and dropped connections are absorbed, and an error that persists past the last attempt
fails the slide or the run with the store's message.
A URI with query options (``?endpoint_override=...``) is used as pyarrow parses it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import posixpath
import random
import re
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mixture_ray.env_settings import env_number
from mixture_ray.errors import NoSpaceError
from mixture_ray.faults import fail_once

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class Uri(str):
    """An object-store address as written (``s3://bucket/key``); kept literally, never made local."""

    __slots__ = ()


def is_uri(text: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` addresses other than ``file://`` (a local path).

    Args:
        text: a path or an address.

    Returns:
        Whether ``text`` names an object on a remote file system.
    """
    found = _SCHEME.match(os.fspath(text))
    return found is not None and found.group(1).lower() != "file"


#: Attempts per S3 request before an error is raised (see the module docstring).
S3_ATTEMPTS_ENV = "MIXTURE_RAY_S3_ATTEMPTS"
DEFAULT_S3_ATTEMPTS = 10
#: Backoff of our own retries (full jitter): up to base x 2^attempt seconds, capped.
RETRY_BASE_S = 0.05
RETRY_CAP_S = 5.0
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Location:
    """One file or folder on a ``pyarrow.fs`` file system.

    Args:
        fs: the file system.
        path: the path on it (for S3, ``bucket/key``; locally, absolute).
        scheme: the URI scheme (``s3``, ``gs``), empty for a local path.

    Example:
        >>> store = Location.of("/data/tiles")
        >>> (store / "_SUCCESS").exists()
        False
    """

    fs: pafs.FileSystem
    path: str
    scheme: str = ""

    @classmethod
    def of(cls, where: str | os.PathLike[str] | Location) -> Location:
        """The location of a local path or an object-store URI.

        Args:
            where: a path (made absolute), a URI, or a location (returned as it is).

        Returns:
            The location.
        """
        if isinstance(where, Location):
            return where
        text = os.fspath(where)
        if is_uri(text):
            fs, path = pafs.FileSystem.from_uri(text)
            if isinstance(fs, pafs.S3FileSystem) and "?" not in text:
                fs = s3_with_retries(fs.region)
            return cls(fs, path.rstrip("/"), _SCHEME.match(text).group(1).lower())  # type: ignore[union-attr]
        if text.startswith("file://"):
            text = text[len("file://"):]
        return cls(pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text)))

    # ------------------------------------------------------------------ names
    @property
    def is_local(self) -> bool:
        """Whether this is a path on this machine's file system (renames work)."""
        return not self.scheme

    @property
    def name(self) -> str:
        """The last part of the path."""
        return posixpath.basename(self.path)

    @property
    def parent(self) -> Location:
        """The folder holding this location."""
        return dataclasses.replace(self, path=posixpath.dirname(self.path))

    def __truediv__(self, name: str) -> Location:
        return dataclasses.replace(self, path=posixpath.join(self.path, name))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}" if self.scheme else self.path

    def local_path(self) -> Path:
        """This location as a ``Path``; only for local locations."""
        if not self.is_local:
            raise ValueError(f"{self} is on object storage, not a local path")
        return Path(self.path)

    def address(self) -> Path | Uri:
        """A local ``Path`` or the ``Uri`` (what configs and reports hold)."""
        return Path(self.path) if self.is_local else Uri(str(self))

    # ------------------------------------------------------------------ queries
    def info(self) -> pafs.FileInfo:
        """Type, size and modification time in one query (one request on an object store)."""
        info: pafs.FileInfo = self._retried("query", lambda: self.fs.get_file_info(self.path))
        return info

    def exists(self) -> bool:
        """Whether a file or folder is there (on object stores, a folder is a key prefix)."""
        return bool(self.info().type != pafs.FileType.NotFound)

    def is_file(self) -> bool:
        """Whether a file is there."""
        return bool(self.info().type == pafs.FileType.File)

    def is_dir(self) -> bool:
        """Whether a folder is there."""
        return bool(self.info().type == pafs.FileType.Directory)

    def size(self) -> int:
        """The size of the file in bytes."""
        return int(self.info().size or 0)

    def mtime_ns(self) -> int:
        """Modification time of the file in nanoseconds (0 where the store gives none)."""
        return int(self.info().mtime_ns or 0)

    def children(self) -> list[Location]:
        """Files and folders directly inside this folder (none when it does not exist)."""
        infos = self._retried("list", lambda: self.fs.get_file_info(
            pafs.FileSelector(self.path, allow_not_found=True)))
        return sorted((dataclasses.replace(self, path=i.path) for i in infos), key=lambda loc: loc.path)

    def files_below(self) -> list[Location]:
        """Every file at any depth below this folder (one listing on object stores)."""
        infos = self._retried("list", lambda: self.fs.get_file_info(
            pafs.FileSelector(self.path, recursive=True, allow_not_found=True)))
        return sorted((dataclasses.replace(self, path=i.path) for i in infos if i.type == pafs.FileType.File),
                      key=lambda loc: loc.path)

    # ------------------------------------------------------------------ reading and writing
    def read_bytes(self) -> bytes:
        """The whole file."""
        def read() -> bytes:
            with self.fs.open_input_stream(self.path) as stream:
                data: bytes = stream.read()
            return data

        return self._retried("read", read)

    def read_text(self) -> str:
        """The whole file as UTF-8 text."""
        return self.read_bytes().decode()

    def mkdir(self) -> None:
        """Create this folder and its parents (on object stores folders need no creation)."""
        if self.is_local:
            self.fs.create_dir(self.path, recursive=True)

    def write_bytes(self, data: bytes) -> None:
        """Write the file so that a reader never sees part of it.

        Locally: a hidden temporary file beside it, flushed to disk, renamed over it. On an
        object store: one PUT (atomic there).
        """
        if not self.is_local:
            def put() -> None:
                with self.fs.open_output_stream(self.path) as out:
                    out.write(data)

            self._retried("write", put)
            return
        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

        _write_local(Path(self.path), write)

    def write_text(self, text: str) -> None:
        """:meth:`write_bytes` of UTF-8 text."""
        self.write_bytes(text.encode())

    def write_parquet(self, table: pa.Table) -> None:
        """Write ``table`` as one Parquet file, never visible half-written (see :meth:`write_bytes`)."""
        if not self.is_local:
            self._retried("write", lambda: pq.write_table(table, self.path, filesystem=self.fs))
            return
        _write_local(Path(self.path), lambda tmp: pq.write_table(table, tmp))

    def delete(self) -> None:
        """Remove the file or the folder with everything in it; nothing when absent."""
        info = self.info()
        if info.type == pafs.FileType.Directory:
            self._retried("delete", lambda: self.fs.delete_dir(self.path))
        elif info.type == pafs.FileType.File:
            self._retried("delete", lambda: self.fs.delete_file(self.path))

    def _retried(self, what: str, operation: Callable[[], T]) -> T:
        """Run ``operation``; on an object store, again after an error, with backoff and jitter.

        The SDK retries each request already; this covers what it gives up on (an error body
        that does not fit a small ranged read, a connection cut in the middle of a stream).
        ``MIXTURE_RAY_S3_ATTEMPTS`` bounds both. A missing file is an answer, not retried.
        """
        attempts = 1 if self.is_local else s3_attempts()
        for attempt in range(1, attempts + 1):
            try:
                return operation()
            except FileNotFoundError:
                raise
            except OSError as exc:
                if attempt == attempts:
                    raise OSError(f"{self}: {what} failed {attempts} times; last error: {exc}") from exc
                time.sleep(random.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt)))
        raise AssertionError("unreachable")


def _write_local(target: Path, write: Callable[[Path], None]) -> None:
    """``write`` a hidden temporary file beside ``target``, then rename it over ``target``.

    A failed write leaves nothing behind: the temporary file is removed. A full file system raises
    :class:`~mixture_ray.errors.NoSpaceError` naming the file, so a slide fails with a message that
    says where and what to do (its committed slides are kept; a rerun with space finishes the rest).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        fail_once(f"write.{target.name}")  # fault injection (tests): the write failed at its end
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and not isinstance(exc, NoSpaceError):
            raise NoSpaceError(errno.ENOSPC, f"no space left on device writing {target}; free space on "
                                             "that file system and rerun (committed items are kept)") from exc
        raise


def s3_attempts() -> int:
    """Attempts per S3 request (``MIXTURE_RAY_S3_ATTEMPTS``, default 10)."""
    value = env_number(S3_ATTEMPTS_ENV, minimum=1, meaning="attempts per S3 request", whole=True)
    return DEFAULT_S3_ATTEMPTS if value is None else int(value)


def s3_with_retries(region: str) -> pafs.S3FileSystem:
    """An S3 file system of ``region`` retrying each request :func:`s3_attempts` times.

    The endpoint of an S3-compatible server comes from ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL``, as :meth:`pyarrow.fs.FileSystem.from_uri` takes it.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, str] = {}
    if endpoint:
        parsed = urllib.parse.urlsplit(endpoint)
        options = {"endpoint_override": parsed.netloc or endpoint, "scheme": parsed.scheme or "https"}
    strategy = pafs.AwsStandardS3RetryStrategy(max_attempts=s3_attempts())
    return pafs.S3FileSystem(region=region, retry_strategy=strategy, **options)


def read_parquet_files(files: Sequence[str | os.PathLike[str] | Location], *,
                       columns: Iterable[str] | None = None) -> pa.Table:
    """Read Parquet files (local paths or URIs on one store) as one table.

    Args:
        files: the files; URIs must all be on the same store.
        columns: the columns to read (all when None).

    Returns:
        Their rows, in the order given.
    """
    wanted = list(columns) if columns is not None else None
    if not files:
        raise ValueError("no Parquet files to read")
    locations = [Location.of(f) for f in files]
    return pq.read_table([loc.path for loc in locations], columns=wanted, filesystem=locations[0].fs)


def address_text(where: str | os.PathLike[str] | Location) -> str:
    """The text that names ``where`` in a file or a message: an absolute path or the URI."""
    return str(Location.of(where))


def recorded_address(where: str | os.PathLike[str]) -> str:
    """The text a stage records for an input store: a local path resolved, a URI as given.

    Args:
        where: a local path (symlinks are followed, as settings recorded before URIs did) or a URI.

    Returns:
        The text for settings and markers.
    """
    text = os.fspath(where)
    return text if is_uri(text) else str(Path(text).resolve())
