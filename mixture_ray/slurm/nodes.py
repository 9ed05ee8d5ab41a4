"""Wait until a Ray cluster started by the sbatch script has all its nodes (``python -m`` from the script).

``python -m mixture_ray.slurm.nodes --address HOST:PORT --count N [--timeout S] [--log FILE]`` waits
for the head's port, joins the cluster as a driver (with the token of the job's environment), and
returns once ``N`` nodes are alive, printing one line with the cluster's CPUs and GPUs; ``--count 0``
only waits for the head's port (before the workers are started). It exits 1 with the reason (and the
tail of ``--log``, the head's log) when they are not there within the timeout.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class ClusterNotReadyError(RuntimeError):
    """The head did not answer, or fewer nodes than expected joined, before the timeout."""


def wait_for_port(address: str, deadline: float) -> None:
    """Return once ``host:port`` accepts a connection; :class:`ClusterNotReadyError` past ``deadline``."""
    host, _, port = address.rpartition(":")
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ClusterNotReadyError(f"the Ray head at {address} does not answer ({exc})") from exc
            time.sleep(1)


def wait_for_nodes(address: str, count: int, timeout_s: float) -> dict[str, float]:
    """Join the cluster at ``address`` and wait until ``count`` nodes are alive.

    Args:
        address: the head's GCS address, ``host:port``.
        count: nodes expected (the allocation's).
        timeout_s: seconds to wait in all.

    Returns:
        The cluster's resources (``CPU``, ``GPU``, ...) once every node is alive.

    Raises:
        ClusterNotReadyError: the head does not answer, or fewer nodes joined, within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    wait_for_port(address, deadline)
    import ray

    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    try:
        while True:
            alive = [node for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
            if len(alive) >= count:
                resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
                return resources
            if time.monotonic() > deadline:
                raise ClusterNotReadyError(
                    f"{len(alive)} of {count} Ray nodes joined within {timeout_s:.0f} s; "
                    "see the ray-worker-<node>.log files of the job's folder")
            time.sleep(1)
    finally:
        ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Wait for the cluster; print one line. Returns 0 when every node joined, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m mixture_ray.slurm.nodes", description=__doc__)
    parser.add_argument("--address", required=True, help="the head's GCS address, host:port")
    parser.add_argument("--count", type=int, required=True, help="nodes expected (0: the head's port only)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default: 300)")
    parser.add_argument("--log", type=Path, help="the head's log, whose tail is printed on failure")
    args = parser.parse_args(argv)
    began = time.monotonic()
    try:
        if args.count < 1:
            wait_for_port(args.address, began + args.timeout)
            return 0
        resources = wait_for_nodes(args.address, args.count, args.timeout)
    except ClusterNotReadyError as exc:
        tail = ""
        if args.log is not None and args.log.exists():
            tail = "\n" + "\n".join(args.log.read_text(errors="replace").splitlines()[-30:])
        print(f"[slurm] error: {exc}{tail}", file=sys.stderr)
        return 1
    print(f"[slurm] Ray cluster up in {time.monotonic() - began:.0f}s: {args.count} node(s), "
          f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
