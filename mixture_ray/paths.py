"""One rule for paths, on the command line and inside files.

* Every path a stage is given is made absolute on the driver when its config is built
  (relative to the working directory of the command, also for keys in a ``--config`` YAML file
  or a pipeline job: config files are command lines written down), so no worker and no later
  step resolves it a second time. With ``MIXTURE_RAY_ROOT`` set, relative paths resolve against
  that folder instead; without it, a relative ``out_dir`` inside Ray's uploaded copy of a job's
  working directory (deleted with the session) is refused.
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


#: A storage root every node sees: relative paths in configs resolve against it when set.
ROOT_ENV = "MIXTURE_RAY_ROOT"


def in_ray_working_dir_copy(path: Path) -> bool:
    """Whether ``path`` is in Ray's uploaded copy of a job's working directory (deleted with the session)."""
    parts = path.parts
    return "runtime_resources" in parts and any(p.startswith("_ray_pkg_") for p in parts)


def config_path(key: str, path: str | os.PathLike[str]) -> Path:
    """A path given to a config key, made absolute (the first rule of this module).

    Args:
        key: the config key (named in the error).
        path: the path as given.

    Returns:
        ``path`` when absolute; else resolved against ``MIXTURE_RAY_ROOT`` when that is set, or
        against the working directory.

    Raises:
        ConfigError: a relative ``out_dir`` would land in Ray's uploaded copy of the working
            directory (a job submitted with ``--working-dir``), which Ray deletes with the session.
    """
    from mixture_ray.errors import ConfigError

    given = Path(os.path.expanduser(os.fspath(path)))
    if given.is_absolute():
        return absolute_path(given)
    root = os.environ.get(ROOT_ENV, "").strip()
    if root:
        return absolute_path(Path(os.path.expanduser(root)) / given)
    resolved = absolute_path(given)
    if key == "out_dir" and in_ray_working_dir_copy(resolved):
        raise ConfigError(
            f"out_dir: {os.fspath(path)!r} would be written inside Ray's uploaded copy of the job's working "
            f"directory ({resolved}), which Ray deletes with its session. Give an absolute out_dir on "
            f"storage every node sees, or set {ROOT_ENV} to such a folder (relative paths then resolve "
            f"against it), e.g. --runtime-env-json "
            f"'{{\"env_vars\": {{\"{ROOT_ENV}\": \"/mnt/shared/runs\"}}}}'"
        )
    return resolved
