"""The simulated multi-node Ray cluster of the chaos run, whose nodes can be removed and added."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
from typing import TYPE_CHECKING, Any

from mixture_ray.faults import ENV

if TYPE_CHECKING:
    from pathlib import Path


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


#: A removed node is found dead in about 3 s instead of Ray's default of about 15 s (5 checks, 3 s apart).
HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


@dataclasses.dataclass(frozen=True)
class Busy:
    """A Ray worker process at work on a worker node."""

    pid: int
    title: str
    node: Any


class SimCluster:
    """A simulated cluster: a head with no CPU and ``workers`` nodes of ``cpus`` CPUs, on this machine.

    Every raylet starts with ``MIXTURE_RAY_FAULTS=fault_dir``, so each Ray worker sees the fault
    folder. Use as a context manager; the nodes stop and Ray's temporary folder is removed on exit.
    """

    def __init__(self, fault_dir: Path, *, workers: int = 2, cpus: int = 2,
                 object_store_mb: int = 150) -> None:
        self.fault_dir = fault_dir
        self.n_workers = workers
        self.cpus = cpus
        self.object_store_mb = object_store_mb
        self.sim: Any = None
        self.temp_dir = ""
        self.node_args: dict[str, Any] = {}

    def __enter__(self) -> SimCluster:
        from ray.cluster_utils import Cluster

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        self.fault_dir.mkdir(parents=True, exist_ok=True)
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: socket paths have a length limit
        self.node_args = {"temp_dir": self.temp_dir, "object_store_memory": self.object_store_mb << 20,
                          "env_vars": {ENV: str(self.fault_dir)}}
        gcs, agent = free_ports(2)
        try:
            self.sim = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 0, "include_dashboard": False, "gcs_server_port": gcs,
                "dashboard_agent_listen_port": agent, "_system_config": HEALTH_CHECKS, **self.node_args})
            for _ in range(self.n_workers):
                self.sim.add_node(num_cpus=self.cpus, **self.node_args)
            self.sim.wait_for_nodes()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every node and remove Ray's temporary folder."""
        if self.sim is not None:
            self.sim.shutdown()
            self.sim = None
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    @property
    def address(self) -> str:
        """The GCS address drivers join (``RAY_ADDRESS``)."""
        return str(self.sim.address)

    def workers(self) -> list[Any]:
        """The worker nodes now, in a stable order."""
        return sorted(self.sim.worker_nodes, key=lambda n: str(n.node_id))

    def replace(self, node: Any) -> str:
        """Remove ``node`` abruptly (every process killed) and add a fresh node like it; what happened."""
        old = str(node.node_id)[:8]
        self.sim.remove_node(node, allow_graceful=False)
        new = self.sim.add_node(num_cpus=self.cpus, **self.node_args)
        return f"node {old} removed, node {str(new.node_id)[:8]} added"

    def busy(self, titles: tuple[str, ...], since: float = 0.0) -> list[Busy]:
        """Ray worker processes on the worker nodes whose title holds one of ``titles``.

        Only processes started at ``since`` (a wall-clock time) or later: a stage's workers are
        its own job's, so this leaves out those of a killed earlier attempt still being torn down.
        """
        import psutil

        found = []
        for node in self.workers():
            raylet = node.all_processes.get("raylet")
            if not raylet:
                continue
            try:
                children = psutil.Process(raylet[0].process.pid).children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                try:
                    title = " ".join(child.cmdline()).strip()
                    started = child.create_time()
                except psutil.Error:
                    continue
                if started < since:
                    continue
                if title.startswith("ray::") and any(t in title for t in titles):
                    found.append(Busy(child.pid, title, node))
        return found
