"""tile and embed on a simulated 3-node cluster: the same output as one node, GPU actors on the GPU node,
and a node lost mid-stage loses nothing.

``ray.cluster_utils.Cluster`` runs every node on this machine: a head with no CPU (the driver's
node, so no stage work lands there by default), a 2-CPU worker, and a 2-CPU worker that advertises
one GPU. The GPU is a Ray resource only: torch sees no CUDA device there, so a model actor granted
it computes on the CPU, which is what the stages do without CUDA.

Where the work ran is read from the GCS actor table (``ray._private.state.actors()``: each
actor's class name and the node id of its address, kept for dead actors too), because the
stages' pixel and model work runs in Ray Data actor pools (``MapWorker`` actors) and the
state API (``ray.util.state``) needs the dashboard, which these nodes do not start.

The module shuts down any Ray session of the test process first and leaves Ray shut down; the
next module that needs one starts its own (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mixture_ray.config import build_config
from mixture_ray.embed.config import EmbedConfig
from mixture_ray.embed.stage import run as run_embed
from mixture_ray.locations import Location
from mixture_ray.ray_runtime import slide_reader_gpus
from mixture_ray.store.store_index import read_index
from mixture_ray.synth.cohort import write_cohort
from mixture_ray.synth.config import SynthConfig
from mixture_ray.tile.config import TileConfig
from mixture_ray.tile.stage import run as run_tile
from tests.cluster_path.support import assert_complete, assert_same_embeddings, free_ports, tiles_of

pytestmark = pytest.mark.multinode

#: Tiling settings shared by every run of the module (the pool differs between runs).
TILING = {"tile_size": 32, "magnifications": [20.0], "max_tiles_per_slide": 80, "seed": 0}
N_SLIDES = 6


@dataclasses.dataclass(frozen=True)
class Reference:
    """The cohort and its one-node outputs."""

    manifest: Path
    tiles: Path
    embeddings: Path


def _tile(manifest: Path, out_dir: Path, **pool: Any) -> Any:
    return run_tile(build_config(TileConfig, {"manifest": manifest, "out_dir": out_dir, **TILING,
                                              **{f"pool.{k}": v for k, v in pool.items()}}))


def _embed(tiles: Path, out_dir: Path, *, input_cpus: float = 1.0, **pool: Any) -> Any:
    return run_embed(build_config(EmbedConfig, {"tiles": tiles, "out_dir": out_dir, "model": "random",
                                                "magnification": 20.0, "torch_threads": 1,
                                                "input.cpus": input_cpus,
                                                **{f"pool.{k}": v for k, v in pool.items()}}))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """Six one-slide cases (2048 px), tiled and embedded (random ResNet18) on one local 2-CPU node."""
    import ray

    root = tmp_path_factory.mktemp("multinode")
    written = write_cohort(build_config(SynthConfig, {
        "out_dir": root / "cohort", "n_cases": N_SLIDES, "min_slides_per_case": 1, "max_slides_per_case": 1,
        "width": 2048, "height": 2048, "levels": 2, "seed": 7}))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        assert _tile(written.manifest, root / "tiles", workers=1).complete
        assert _embed(root / "tiles", root / "embeddings", workers=1, gpus="0").complete
    finally:
        ray.shutdown()
    return Reference(written.manifest, root / "tiles", root / "embeddings")


@dataclasses.dataclass
class SimCluster:
    """The simulated cluster and the node ids of its parts."""

    sim: Any
    head_id: str
    cpu_node: Any
    gpu_node: Any

    @property
    def cpu_id(self) -> str:
        return str(self.cpu_node.node_id)

    @property
    def gpu_id(self) -> str:
        return str(self.gpu_node.node_id)


@pytest.fixture(scope="module")
def cluster(reference: Reference) -> Iterator[SimCluster]:
    """Head (0 CPU) + 2-CPU worker + 2-CPU worker with GPU: 1; the test process is its driver."""
    import ray
    import ray.data
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    port, agent_port = free_ports(2)
    common: dict[str, Any] = {"temp_dir": temp_dir, "object_store_memory": 100 << 20}
    sim = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "gcs_server_port": port,
        "dashboard_agent_listen_port": agent_port, **common})
    try:
        cpu_node = sim.add_node(num_cpus=2, **common)
        gpu_node = sim.add_node(num_cpus=2, num_gpus=1, **common)
        sim.wait_for_nodes()
        ray.init(address=sim.address, logging_level=logging.WARNING)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield SimCluster(sim, str(sim.head_node.node_id), cpu_node, gpu_node)  # type: ignore[attr-defined]
    finally:
        ray.shutdown()
        sim.shutdown()  # type: ignore[no-untyped-call]
        shutil.rmtree(temp_dir, ignore_errors=True)


def _map_workers() -> dict[str, dict[str, Any]]:
    """Ray Data map actors (alive or dead) of this driver's job: actor id -> GCS actor-table entry."""
    import ray
    from ray._private import state

    job = ray.get_runtime_context().get_job_id()
    table: dict[str, dict[str, Any]] = state.actors()
    return {a: info for a, info in table.items()
            if "MapWorker" in info["ActorClassName"] and info["JobID"] == job}


def _nodes_of_new_actors(before: dict[str, dict[str, Any]]) -> set[str]:
    return {info["Address"]["NodeID"] for a, info in _map_workers().items() if a not in before}


@pytest.mark.timeout(150)
def test_tile_and_embed_spread_over_nodes_match_one_node(cluster: SimCluster, reference: Reference,
                                                         tmp_path: Path) -> None:
    # 1.5 CPUs per actor: two actors cannot share a 2-CPU node, so each worker node gets one.
    before = _map_workers()
    tiled = _tile(reference.manifest, tmp_path / "tiles", workers=2, actor_cpus=1.5)
    assert tiled.complete, tiled.summary()
    assert _nodes_of_new_actors(before) == {cluster.cpu_id, cluster.gpu_id}
    assert tiles_of(tmp_path / "tiles") == tiles_of(reference.tiles)  # coordinates and JPEG bytes
    assert assert_complete(tmp_path / "tiles") == assert_complete(reference.tiles)

    before = _map_workers()
    # gpus=0: the 2 actors must not wait for the single GPU (auto would ask one each here), and the
    # read/decode tasks must fit in the 0.5 CPU an actor leaves on its node (input.cpus=1 never runs).
    embedded = _embed(tmp_path / "tiles", tmp_path / "emb", input_cpus=0.5, workers=2, actor_cpus=1.5,
                      gpus="0", batch_size=16)
    assert embedded.complete, embedded.summary()
    assert _nodes_of_new_actors(before) == {cluster.cpu_id, cluster.gpu_id}
    assert assert_complete(tmp_path / "emb") == assert_complete(tmp_path / "tiles")
    assert_same_embeddings(tmp_path / "emb", reference.embeddings)


@pytest.mark.timeout(150)
def test_gpu_model_actors_land_on_the_gpu_node(cluster: SimCluster, reference: Reference,
                                               tmp_path: Path) -> None:
    before = _map_workers()
    embedded = _embed(reference.tiles, tmp_path / "emb", workers=1, actor_cpus=1, gpus="1")
    assert embedded.complete, embedded.summary()
    assert _nodes_of_new_actors(before) == {cluster.gpu_id}
    import json

    devices = json.loads((tmp_path / "emb" / "_SUCCESS").read_text()).get("devices", {})
    assert devices.get("gpus_per_actor") == 1.0, devices
    assert_same_embeddings(tmp_path / "emb", reference.embeddings)  # the GPU actor ran on the CPU
    # Slide readers: auto asks a GPU only for cuCIM; a number is asked whatever the backend.
    assert slide_reader_gpus("auto", "cucim") == 1.0 and slide_reader_gpus("auto", "tiffslide") == 0.0
    before = _map_workers()
    tiled = _tile(reference.manifest, tmp_path / "tiles", workers=1, actor_cpus=1, gpus="1")
    assert tiled.complete, tiled.summary()
    assert _nodes_of_new_actors(before) == {cluster.gpu_id}
    assert tiles_of(tmp_path / "tiles") == tiles_of(reference.tiles)


def _pixel_actors_at_work(before: dict[str, dict[str, Any]], nodes: set[str], timeout_s: float) -> bool:
    """Wait until a new map actor is alive on one of ``nodes``, then give it a second of work."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(info["State"] == "ALIVE" and info["Address"]["NodeID"] in nodes
               for a, info in _map_workers().items() if a not in before):
            time.sleep(1.0)
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(150)
def test_node_killed_mid_stage_loses_nothing(cluster: SimCluster, reference: Reference,
                                             tmp_path: Path) -> None:
    """Last in the module: it removes a worker node (a fresh 2-CPU node stands in, as an autoscaler's).

    The stage runs in a thread; the test thread (Ray's node start-up needs the main thread) waits for
    a pixel actor to be at work on a worker node, then removes a node that runs one.
    """
    store = tmp_path / "tiles"
    before = _map_workers()
    outcome: dict[str, Any] = {}

    def tile() -> None:
        try:  # parts of 80 rows (one slide's tiles): some slides are committed before the end
            outcome["report"] = _tile(reference.manifest, store, workers=2, actor_cpus=1.5, part_rows=80)
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    runner = threading.Thread(target=tile, daemon=True)
    runner.start()
    # Not "after the first commit": parts of interleaved slides may all commit at the very end.
    assert _pixel_actors_at_work(before, {cluster.cpu_id, cluster.gpu_id}, 90), "no pixel actor within 90 s"
    committed_at_kill = len(read_index(Location.of(store), prefer_index=False).committed())
    success_at_kill = (store / "_SUCCESS").exists()
    alive = {info["Address"]["NodeID"] for a, info in _map_workers().items()
             if a not in before and info["State"] == "ALIVE"}
    victim = cluster.cpu_node if cluster.cpu_id in alive else cluster.gpu_node
    cluster.sim.remove_node(victim, allow_graceful=False)
    cluster.sim.add_node(num_cpus=2, object_store_memory=100 << 20,
                         temp_dir=cluster.sim.head_node.get_temp_dir_path())
    runner.join(timeout=100)
    assert not runner.is_alive(), "the tiling run did not end within 100 s of the node loss"
    assert not success_at_kill and committed_at_kill < N_SLIDES  # the node was lost mid-stage
    assert str(victim.node_id) in alive  # and it was running a pixel actor
    first = outcome.get("report")
    # Ray restarts the lost actor on the new node (the run completes), or the run records the
    # slides it did not finish; either way a rerun completes the store and it equals one node's.
    if first is None or not first.complete:
        assert _tile(reference.manifest, store, workers=2, actor_cpus=1.5).complete, outcome
    assert assert_complete(store) == assert_complete(reference.tiles)
    assert tiles_of(store) == tiles_of(reference.tiles)
    assert not list(store.parent.glob(f".{store.name}.tmp-*"))  # no staging left behind
    print(f"node lost after {committed_at_kill}/{N_SLIDES} slides; first run "
          f"{'complete' if first is not None and first.complete else 'incomplete: ' + repr(outcome)}")
