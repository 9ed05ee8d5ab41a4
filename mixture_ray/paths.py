"""One rule for paths, on the command line and inside files.

* Every path a stage is given is made absolute on the driver when its config is built
  (relative to the working directory of the command, also for keys in a ``--config`` YAML file
  or a pipeline job: config files are command lines written down), so no worker and no later
  step resolves it a second time.
* A path written into a file (mapping files, ``_settings.json``, ``_SUCCESS`` records, reports)
  is written absolute.
* A relative path read from a data file (a hand-written mapping file, a manifest row) is resolved
  against the folder of the file that holds it, never against the reader's working directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def absolute_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as an absolute, normalised path (``~`` expanded; symlinks kept).

    Args:
        path: a path, relative to the current working directory or absolute.

    Returns:
        The absolute path; ``..`` parts are folded without touching the file system.

    Example:
        >>> absolute_path("/data/../slides/a.svs")
        PosixPath('/slides/a.svs')
    """
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def recorded_path(path: str | os.PathLike[str]) -> str:
    """The text to write into a file for ``path``: always absolute.

    Args:
        path: the path to record.

    Returns:
        Its absolute form as a string.
    """
    return str(absolute_path(path))


def resolve_recorded(text: str | os.PathLike[str], holder: str | os.PathLike[str]) -> Path:
    """Read a path recorded in the file ``holder``.

    Args:
        text: the path as written in the file.
        holder: the file that holds it.

    Returns:
        ``text`` itself when absolute, else ``text`` resolved against ``holder``'s folder.
    """
    recorded = Path(os.path.expanduser(os.fspath(text)))
    if recorded.is_absolute():
        return absolute_path(recorded)
    return absolute_path(absolute_path(holder).parent / recorded)
