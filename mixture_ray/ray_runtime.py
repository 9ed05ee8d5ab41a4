"""Start or join Ray: a cluster when RAY_ADDRESS is set (ray job submit), else an embedded one."""

from __future__ import annotations

import logging
import os

import ray


def ensure_ray(num_cpus: int | None = None) -> None:
    """Initialise Ray once; a local session gets no dashboard and auth disabled."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        configure_logging=True,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )
