"""The distributed engine on a simulated cluster: a CPU-less head and two workers, one with a (fake) GPU.

``ray.cluster_utils.Cluster`` runs every node on this machine. The fake GPU is a Ray resource
only: torch sees no CUDA device there, so tasks granted it must compute on the CPU (and say so).
The module shuts down any Ray session already open in the test process and leaves Ray shut down;
later modules start their own (tests/conftest.py).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mixture_ray.cluster.block_sources import ParquetBlock
from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.cluster.distributed import DistributedOptions, fit_blocks
from mixture_ray.cluster.kmeans_torch import TorchKMeans
from mixture_ray.cluster.stage import run as run_cluster
from mixture_ray.config import build_config
from mixture_ray.store.embeddings import fixed_list_to_matrix
from mixture_ray.store.folder import committed_files
from tests.cluster.stores import split_embedding_store

pytestmark = pytest.mark.multinode


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, str, str]]:
    """(address, CPU worker node id, GPU worker node id) of a 3-node local cluster."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    sim = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    cpu_node = sim.add_node(num_cpus=1)
    gpu_node = sim.add_node(num_cpus=1, num_gpus=1)
    sim.wait_for_nodes()
    ray.init(address=sim.address, logging_level=logging.WARNING)
    try:
        yield sim.address, cpu_node.node_id, gpu_node.node_id
    finally:
        ray.shutdown()
        sim.shutdown()


def _blocks(store: Path) -> list[ParquetBlock]:
    return [ParquetBlock((str(f),), "features", 20.0) for f in committed_files(store)]


def _one_process(store: Path, k: int) -> float:
    table = pq.read_table([str(f) for f in committed_files(store)])
    table = table.filter(np.asarray(table["magnification"]) == 20.0)
    return TorchKMeans(device="cpu").fit(fixed_list_to_matrix(table["features"]), k, seed=0).inertia


def test_blocks_run_on_both_workers_with_one_node_inertia(cluster: tuple[str, str, str],
                                                           tmp_path: Path) -> None:
    _, cpu_node, gpu_node = cluster
    split_embedding_store(tmp_path / "emb", cases=4, per_case=300)
    spread = fit_blocks(_blocks(tmp_path / "emb"), 6, 0, options=DistributedOptions(num_gpus=0))
    assert {r.node_id for r in spread.runs} == {cpu_node, gpu_node}
    assert spread.step_nodes == {cpu_node, gpu_node}  # node ids reported by the Lloyd-step tasks
    assert spread.inertia == pytest.approx(_one_process(tmp_path / "emb", 6), rel=1e-6)
    # auto: the cluster has a GPU, so each task asks for one and lands on the GPU worker, whose
    # torch sees no CUDA device: the kernel falls back to the CPU.
    on_gpu_node = fit_blocks(_blocks(tmp_path / "emb"), 6, 0, options=DistributedOptions())
    assert on_gpu_node.num_gpus == 1.0
    assert {r.node_id for r in on_gpu_node.runs} == {gpu_node}
    assert on_gpu_node.step_nodes == {gpu_node}
    assert on_gpu_node.devices()["devices"] == ["cpu"]
    assert on_gpu_node.inertia == pytest.approx(spread.inertia, rel=1e-6)


def test_stage_under_ray_address_picks_the_distributed_engine(cluster: tuple[str, str, str], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    address, cpu_node, gpu_node = cluster
    monkeypatch.setenv("RAY_ADDRESS", address)
    split_embedding_store(tmp_path / "emb", cases=4, per_case=120)
    report = run_cluster(build_config(ClusterConfig, {
        "embeddings": tmp_path / "emb", "out_dir": tmp_path / "clu", "ks": [4], "num_gpus": 0,
        "silhouette_sample": 0}))
    success = json.loads((tmp_path / "clu" / "_SUCCESS").read_text())
    assert success["engine"] == "distributed" and success["clusterings"] == 2
    assert set(success["nodes"]) == {cpu_node, gpu_node}
    # Placement is spread, not pinned: every clustering ran somewhere, both nodes were used overall.
    assert set(report.metrics.nodes) <= {1, 2} and len(report.metrics) == 2
