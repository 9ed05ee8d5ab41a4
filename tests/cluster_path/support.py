"""Helpers of the cluster-path tests: a tiny cohort, store contents, free ports, a real Ray head."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mixture_ray.store.embeddings import fixed_list_to_matrix
from mixture_ray.store.folder import StageFolder, committed_files

REPO = Path(__file__).resolve().parents[2]
TILE_KEY = ["slide_id", "magnification", "x", "y"]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now (bound to port 0, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_range(width: int, tries: int = 50) -> int:
    """The first port of ``width`` consecutive ports that are free now (for Ray's worker ports)."""
    for _ in range(tries):
        (start,) = free_ports(1)
        start = 20000 + start % 30000
        try:
            with contextlib.ExitStack() as stack:
                for port in range(start, start + width):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
    raise RuntimeError(f"no {width} consecutive free ports found")


def read_store(store: Path) -> pa.Table:
    """Every committed row of a complete stage folder, sorted by the tile key."""
    table = pq.read_table([str(f) for f in committed_files(store)])
    return table.sort_by([(name, "ascending") for name in TILE_KEY])


def tiles_of(store: Path) -> list[tuple[Any, ...]]:
    """(slide, magnification, x, y, image bytes) of every committed tile, sorted."""
    table = read_store(store)
    return list(zip(*(table[c].to_pylist() for c in [*TILE_KEY, "image"]), strict=True))


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """Keys and both embedding columns of an embedding store, in tile-key order."""

    keys: list[tuple[Any, ...]]
    features: np.ndarray
    head: np.ndarray


def embeddings_of(store: Path) -> Embeddings:
    """The sorted contents of a complete embedding store."""
    table = read_store(store)
    keys = list(zip(*(table[c].to_pylist() for c in TILE_KEY), strict=True))
    return Embeddings(keys, fixed_list_to_matrix(table["features"]), fixed_list_to_matrix(table["head"]))


def assert_complete(store: Path) -> dict[str, int]:
    """The store has _SUCCESS and no _INCOMPLETE.json; returns slide -> committed rows."""
    assert (store / "_SUCCESS").exists(), f"{store}: no _SUCCESS ({sorted(p.name for p in store.iterdir())})"
    assert not (store / "_INCOMPLETE.json").exists()
    items = StageFolder(store, stage="").committed_items()
    assert items and all(n > 0 for n in items.values()), items
    return items


def assert_same_embeddings(got: Path, want: Path) -> None:
    """Same tiles, embeddings equal within 1e-5."""
    a, b = embeddings_of(got), embeddings_of(want)
    assert a.keys == b.keys
    np.testing.assert_allclose(a.features, b.features, atol=1e-5, rtol=0)
    np.testing.assert_allclose(a.head, b.head, atol=1e-5, rtol=0)


def ray_cli() -> str:
    """The ``ray`` command of the interpreter running the tests (the venv's)."""
    return str(Path(sys.executable).with_name("ray"))


@dataclasses.dataclass(frozen=True)
class RayHead:
    """A ``ray start --head`` running in its own process group, with its job server."""

    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    pgid: int

    @property
    def dashboard(self) -> str:
        """The job server's address (``JobSubmissionClient``, ``ray job submit --address``)."""
        return f"http://127.0.0.1:{self.dashboard_port}"


def _head_command(temp_dir: Path, num_cpus: int) -> tuple[list[str], int, int]:
    gcs, dash, client, manager, objects, agent, agent_grpc, metrics = free_ports(8)
    workers = free_port_range(64)
    command = [
        ray_cli(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--include-dashboard=true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
        "--ray-client-server-port", str(client), "--node-manager-port", str(manager),
        "--object-manager-port", str(objects), "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
        "--min-worker-port", str(workers), "--max-worker-port", str(workers + 63),
        "--temp-dir", str(temp_dir), "--num-cpus", str(num_cpus), "--num-gpus", "0",
        "--object-store-memory", str(200 << 20), "--disable-usage-stats",
    ]
    return command, gcs, dash


def stop_group(pgid: int, grace_s: float = 3.0) -> None:
    """SIGTERM the process group ``pgid`` (what ``ray start`` started), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _live_members(pgid):
        time.sleep(0.2)
    if _live_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (zombies left to an init that does not reap excluded)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            live.append(int(stat.parent.name))
    return live


@contextlib.contextmanager
def ray_head(temp_dir: Path, *, num_cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[RayHead]:
    """Start a Ray head on loopback with the dashboard (job server) on free ports; stop it on exit.

    ``ray stop`` would stop every Ray on the machine (other people's too), so the head is started
    in a process group of its own and that group is ended instead, even when the test fails.
    """
    command, gcs, dash = _head_command(temp_dir, num_cpus)
    full_env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})}
    full_env.pop("RAY_ADDRESS", None)
    started = subprocess.Popen(command, env=full_env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = started.communicate(timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed ({started.returncode}):\n{out[-3000:]}")
        yield RayHead(temp_dir, gcs, dash, started.pid)
    finally:
        if started.poll() is None:
            started.kill()
        stop_group(started.pid)
