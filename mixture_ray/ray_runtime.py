"""Start or join Ray: a cluster when RAY_ADDRESS is set (ray job submit), else an embedded one.

Ray's own log lines (Ray Data progress, Ray Train controller warnings, worker output) bury a
stage's own progress. :func:`route_ray_logs` sends them to a file instead; the CLI calls it with
``<out_dir>/_logs/ray.log`` unless ``--verbose`` is given. Library users who call nothing get
Ray's usual console output.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import ray

#: Loggers whose console output is moved to the log file (each Ray library configures its own).
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.air", "ray.serve")


@dataclasses.dataclass
class _Routing:
    log_file: Path | None = None
    quiet: bool = False


_ROUTING = _Routing()


def route_ray_logs(log_file: Path | None, *, verbose: bool = False) -> None:
    """Send Ray's console logs to ``log_file`` (or keep them on the console when ``verbose``).

    Args:
        log_file: file that receives Ray's driver-side log records; its folder is created.
            ``None`` with ``verbose=False`` drops them (they stay in Ray's session folder).
        verbose: keep Ray's own console output, progress bars included.

    Returns:
        None. Applies to the Ray session started next by :func:`ensure_ray` and, if Ray is
        already running, to it at once.
    """
    _ROUTING.log_file, _ROUTING.quiet = log_file, not verbose
    if ray.is_initialized():
        _apply_routing()


def ray_logs_verbose() -> bool:
    """Whether Ray's own console output is kept (``--verbose``), for stages run one after another."""
    return not _ROUTING.quiet


def ensure_ray(num_cpus: int | None = None) -> None:
    """Initialise Ray once; a local session gets no dashboard and auth disabled.

    Args:
        num_cpus: CPUs of an embedded local session (default: all); ignored when joining a
            cluster through ``RAY_ADDRESS``.

    Returns:
        None.
    """
    if ray.is_initialized():
        return
    log_to_driver = not _ROUTING.quiet
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=log_to_driver)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            configure_logging=True,
            logging_level=logging.WARNING,
            log_to_driver=log_to_driver,
        )
    _apply_routing()


def cluster_resources() -> dict[str, float]:
    """Total resources of the running Ray cluster (``ray.cluster_resources()``, typed).

    Returns:
        Resource name (``CPU``, ``GPU``, ...) -> amount.
    """
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]  # unannotated in ray
    return resources


def autoscaler_max_resources() -> dict[str, float]:
    """The most of each resource the cluster's autoscaler can reach, where Ray publishes it.

    Ray publishes the autoscaler's config only on some platforms (its private
    ``get_max_resources_from_cluster_config``, which Ray Train reads for the same purpose); the
    open-source launchers (``ray up``, KubeRay) do not, and a local session has none: then this is
    empty and only what the cluster has now is known.

    Returns:
        Resource name -> the most the cluster can scale to (empty when not published).
    """
    try:
        from ray._private.state import state

        found = state.get_max_resources_from_cluster_config() or {}
    except Exception:
        return {}
    return {str(name): float(amount) for name, amount in found.items()}


def gpus_per_actor(setting: str | float) -> float:
    """The GPUs a model actor requests for a ``pool.gpus`` setting.

    Args:
        setting: a number (requested as given, even when no GPU node is up yet, so an autoscaling
            cluster starts one), or ``auto``: 1 when the running cluster has a GPU now or its
            autoscaler publishes that it can add one (:func:`autoscaler_max_resources`), else 0.

    Returns:
        GPUs per actor.
    """
    if setting != "auto":
        return float(setting)
    gpus = max(cluster_resources().get("GPU", 0.0), autoscaler_max_resources().get("GPU", 0.0))
    return 1.0 if gpus > 0 else 0.0


def slide_reader_gpus(setting: str | float, backend: str) -> float:
    """The GPUs a slide-reading task or actor (tile, qc, maps) requests.

    Args:
        setting: a number (requested as given, even when no GPU node is up yet), or ``auto``: 1 for
            ``backend=cucim`` (which decodes on the GPU) when the running cluster has a GPU now,
            else 0, since OpenSlide and tiffslide decode on the CPU.
        backend: the slide backend the stage was given.

    Returns:
        GPUs per task or actor.
    """
    if setting != "auto":
        return float(setting)
    return gpus_per_actor("auto") if backend == "cucim" else 0.0


class _RoutedFile(logging.FileHandler):
    """The log file that Ray's records are routed to (told apart from Ray's own handlers)."""


class _RoutedAway(logging.NullHandler):
    """Stands in for a console handler removed from a child logger."""


def _apply_routing() -> None:
    if not _ROUTING.quiet:
        return
    import ray.data  # configures the ray.data logger on import: route after that

    ray.data.DataContext.get_current().enable_progress_bars = False
    target: logging.Handler = _RoutedAway()
    if _ROUTING.log_file is not None:
        _ROUTING.log_file.parent.mkdir(parents=True, exist_ok=True)
        target = _RoutedFile(_ROUTING.log_file, encoding="utf-8")
        target.setLevel(logging.INFO)
        target.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            routed = isinstance(handler, _RoutedFile | _RoutedAway)
            to_file = isinstance(handler, logging.FileHandler)
            console = isinstance(handler, logging.StreamHandler) and not to_file
            if routed or console:
                logger.removeHandler(handler)
                handler.close()
        logger.addHandler(target if name == "ray" else _RoutedAway())
        # Children hand their records to "ray", which writes each one to the file once.
        logger.propagate = name != "ray"
    if _ROUTING.log_file is not None:
        logging.getLogger("ray").warning("Ray worker logs of this session: %s", _session_log_dir())


def _session_log_dir() -> str:
    try:
        from ray._private.worker import global_worker

        return str(Path(global_worker.node.get_session_dir_path()) / "logs")  # type: ignore[union-attr]
    except Exception:  # private API: a missing path must not stop the stage
        return "Ray's session folder (/tmp/ray/session_latest/logs)"
