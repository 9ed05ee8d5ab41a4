"""The distributed torch engine on a local Ray session: parity with one process and with sklearn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from mixture_ray.cluster.block_sources import resolve_num_gpus
from mixture_ray.cluster.config import ClusterConfig
from mixture_ray.cluster.distributed import DistributedOptions
from mixture_ray.cluster.distributed_engine import DistributedKMeans
from mixture_ray.cluster.kmeans_torch import TorchKMeans
from mixture_ray.cluster.stage import resolve_engine
from mixture_ray.cluster.stage import run as run_cluster
from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.store.schemas import TILE_KEY
from tests.cluster.stores import split_embedding_store
from tests.cluster.test_kmeans_torch import anisotropic

pytestmark = pytest.mark.usefixtures("ray_session")


def test_object_ref_blocks_match_one_process() -> None:
    x = anisotropic(n=9000)
    engine = DistributedKMeans(block_rows=2500, options=DistributedOptions(silhouette_sample=500))
    fit = engine.fit(x, 12, seed=1)
    one = TorchKMeans(device="cpu").fit(x, 12, seed=1)
    assert fit.inertia == pytest.approx(one.inertia, rel=1e-6)
    assert np.array_equal(fit.labels, one.labels) and fit.n_iter == one.n_iter
    assert engine.last is not None and len(engine.last.runs) == 4
    used = engine.last.devices()
    assert used["devices"] == ["cpu"] and used["num_gpus_per_task"] == 0.0
    assert sum(node["rows"] for node in used["nodes"].values()) == 9000
    assert engine.last.silhouette is not None


def test_many_blocks_reduce_in_a_tree_the_same_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from mixture_ray.cluster import block_tasks

    x = anisotropic(n=9000)
    one = TorchKMeans(device="cpu").fit(x, 12, seed=1)
    fetched: list[int] = []
    merge_on_driver = block_tasks.merge

    def counted(*results: tuple[object, ...]) -> object:
        fetched.append(len(results))
        return merge_on_driver(*results)  # type: ignore[arg-type]

    monkeypatch.setattr(block_tasks, "merge", counted)  # the driver's call; tasks use the original
    monkeypatch.setattr(block_tasks, "REDUCE_FAN_IN", 4)
    fits = [DistributedKMeans(block_rows=250).fit(x, 12, seed=1) for _ in range(2)]  # 36 blocks
    assert fits[0].inertia == pytest.approx(one.inertia, rel=1e-6)
    assert np.array_equal(fits[0].centroids, fits[1].centroids)  # the same sums, bit for bit
    assert np.array_equal(fits[0].labels, one.labels)
    assert fetched and max(fetched) <= 4  # the driver never fetched more than the fan-in


def test_blocks_are_planned_by_rows_and_task_slots() -> None:
    from mixture_ray.cluster.block_sources import plan_blocks

    files = [f"part-{i}" for i in range(10)]
    by_rows = plan_blocks(files, rows=200_000, block_rows=50_000, min_blocks=2)
    assert by_rows == [tuple(files[i:i + 2]) for i in range(0, 10, 2)]  # 20,000 rows a file
    assert plan_blocks(files, rows=200_000, block_rows=10**9, min_blocks=4) == [
        tuple(files[0:2]), tuple(files[2:4]), tuple(files[4:6]), tuple(files[6:8]), tuple(files[8:10])]
    assert plan_blocks(files, rows=200_000, block_rows=10**9, min_blocks=1) == [tuple(files)]
    assert plan_blocks(files, rows=200_000, block_rows=1, min_blocks=1) == [(f,) for f in files]
    assert plan_blocks([], rows=0, block_rows=1, min_blocks=1) == []


def test_stage_writes_label_parts_and_matches_the_sklearn_engine(tmp_path: Path) -> None:
    truth = split_embedding_store(tmp_path / "emb")
    common = {"embeddings": tmp_path / "emb", "ks": [4, 6], "standardize": True, "silhouette_sample": 300}
    report = run_cluster(build_config(ClusterConfig, {**common, "out_dir": tmp_path / "d",
                                                      "engine": "distributed"}))
    reference = run_cluster(build_config(ClusterConfig, {**common, "out_dir": tmp_path / "s",
                                                         "engine": "sklearn"}))
    ours = report.metrics.sort_values(["magnification", "k"]).reset_index(drop=True)
    theirs = reference.metrics.sort_values(["magnification", "k"]).reset_index(drop=True)
    assert np.allclose(ours.inertia, theirs.inertia, rtol=0.01)
    assert list(ours.rows) == list(theirs.rows)
    folder = tmp_path / "d" / "mag-20x" / "k-4"
    parts = sorted((folder / "assignments.parquet").glob("part-*.parquet"))
    assert len(parts) == 4  # one per block: 4 files, 2 task slots x 2 blocks each, written by the tasks
    assignments = pq.read_table(folder / "assignments.parquet").to_pandas()
    merged = assignments.merge(truth[truth.magnification == 20.0], on=list(TILE_KEY))
    assert len(merged) == len(assignments) == (truth.magnification == 20.0).sum()
    assert adjusted_rand_score(merged.group, merged.cluster) > 0.99
    assert len(json.loads((folder / "scaler.json").read_text())["mean"]) == 16
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["engine"] == "distributed" and metrics["silhouette"] > 0.5
    success = json.loads((tmp_path / "d" / "_SUCCESS").read_text())
    assert success["engine"] == "distributed" and success["devices"] == ["cpu"]
    assert success["num_gpus_per_task"] == 0.0 and len(success["nodes"]) == 1
    assert json.loads((tmp_path / "s" / "_SUCCESS").read_text())["devices"] == ["cpu"]


def test_gpu_setting_and_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_num_gpus(0.5) == 0.5 and resolve_num_gpus(2) == 2.0  # requests, even with no GPU
    assert resolve_num_gpus("auto") == 0.0  # this CPU session has no GPU and no autoscaler
    from mixture_ray.cluster.engines import cuml_available

    if not cuml_available():
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        assert resolve_engine("auto") == "sklearn"
        monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
        assert resolve_engine("auto") == "distributed"
    assert resolve_engine("torch") == "torch"
    base = {"embeddings": "e", "out_dir": "o"}
    assert build_config(ClusterConfig, {**base, "engine": "distributed", "per_case": True}).per_case
    with pytest.raises(ConfigError, match="num_gpus"):
        build_config(ClusterConfig, {**base, "num_gpus": -1})
    assert build_config(ClusterConfig, {**base, "num_gpus": 1}).num_gpus == 1.0


def test_a_store_past_the_driver_budget_goes_distributed_or_is_refused(tmp_path: Path) -> None:
    from mixture_ray.cluster.stage import driver_load_bytes

    truth = split_embedding_store(tmp_path / "emb")
    assert driver_load_bytes(tmp_path / "emb", "features") == len(truth) * 16 * 4 * 3  # from the index
    tiny = {"embeddings": tmp_path / "emb", "ks": [4], "silhouette_sample": 0, "driver_memory_gb": 1e-6}
    with pytest.raises(ConfigError, match=r"about 0\.0 GiB, over driver_memory_gb \(1e-06\)"):
        run_cluster(build_config(ClusterConfig, {**tiny, "out_dir": tmp_path / "s", "engine": "sklearn"}))
    report = run_cluster(build_config(ClusterConfig, {**tiny, "out_dir": tmp_path / "a", "engine": "auto"}))
    assert json.loads((tmp_path / "a" / "_SUCCESS").read_text())["engine"] == "distributed"
    assert set(report.metrics.engine) == {"distributed"}
    roomy = build_config(ClusterConfig, {**tiny, "driver_memory_gb": 8.0, "out_dir": tmp_path / "r"})
    assert json.loads((run_cluster(roomy).out_dir / "_SUCCESS").read_text())["engine"] == "sklearn"
