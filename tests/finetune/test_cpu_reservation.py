"""Ray Train must leave a CPU for the Ray Data pipeline that streams tiles to its workers.

With ``train.workers x train.cpus_per_worker`` equal to the cluster's CPUs, the read/decode tasks
never start and finetune waits forever; the trainer now refuses such a run on the driver. No Ray
Train run starts here: the rule is checked with numbers, the driver check with tiny datasets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixture_ray import train_run
from mixture_ray.config import RayTrainRun
from mixture_ray.errors import ConfigError
from mixture_ray.train_run import check_data_pipeline_cpus, require_data_pipeline_cpus, torch_trainer

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the rule, with numbers
def test_every_cpu_reserved_is_refused_with_keys_values_total_and_a_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        require_data_pipeline_cpus(1, 2.0, 2.0)  # the demo's hang: one worker taking both CPUs
    message = str(caught.value)
    assert message == (
        "train.workers 1 x train.cpus_per_worker 2 reserve 2 CPUs for Ray Train, but the Ray cluster "
        "has 2 CPUs: 0 CPUs would be left for the Ray Data tasks that stream tiles to the training "
        "workers (they need 1), so training would wait forever for its first batch. Lower "
        "train.cpus_per_worker or train.workers so that workers x cpus_per_worker is at most 1, "
        "leaving at least 1 CPU for the data pipeline (e.g. train.cpus_per_worker: 1)."
    )


@pytest.mark.parametrize(("workers", "cpus_per_worker", "cluster", "expected"), [
    (2, 1.0, 2.0, ["train.workers 2", "train.cpus_per_worker 1 ", "reserve 2 CPUs", "has 2 CPUs",
                   "train.cpus_per_worker: 0.5 or train.workers: 1"]),
    (1, 1.5, 2.0, ["reserve 1.5 CPUs", "0.5 CPUs would be left", "train.cpus_per_worker: 1)"]),
    (4, 4.0, 8.0, ["reserve 16 CPUs", "has 8 CPUs", "0 CPUs would be left", "at most 7",
                   "train.cpus_per_worker: 1.75 or train.workers: 1"]),
    (3, 1.0, 3.0, ["train.cpus_per_worker: 0.66 or train.workers: 2"]),
    (1, 0.5, 1.0, ["has 1 CPU:", "Run on a cluster with more than 1 CPU"]),
])
def test_less_than_one_cpu_left_is_refused(
    workers: int, cpus_per_worker: float, cluster: float, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        require_data_pipeline_cpus(workers, cpus_per_worker, cluster)
    for part in expected:
        assert part in str(caught.value)


@pytest.mark.parametrize(("workers", "cpus_per_worker", "cluster"), [
    (1, 1.0, 2.0),   # the demo and the tests on a 2-CPU machine: one CPU left
    (2, 0.5, 2.0),
    (3, 0.33, 2.0),  # 0.99 reserved, 1.01 left
    (2, 4.0, 16.0),
])
def test_one_cpu_left_passes(workers: int, cpus_per_worker: float, cluster: float) -> None:
    require_data_pipeline_cpus(workers, cpus_per_worker, cluster)


def test_a_suggested_fix_passes_the_rule() -> None:
    with pytest.raises(ConfigError) as caught:
        require_data_pipeline_cpus(3, 1.0, 3.0)
    suggested = float(re.findall(r"train\.cpus_per_worker: ([0-9.]+)", str(caught.value))[0])
    require_data_pipeline_cpus(3, suggested, 3.0)


def test_an_autoscaler_maximum_is_named_as_such() -> None:
    with pytest.raises(ConfigError, match="at most 8 CPUs, even scaled up fully by its autoscaler"):
        require_data_pipeline_cpus(2, 4.0, 8.0, autoscaler=True)


# ---------------------------------------------------------------- shipped configurations
def _train_blocks(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "train" and isinstance(value, dict):
                yield value
            else:
                yield from _train_blocks(value)
    elif isinstance(node, list):
        for item in node:
            yield from _train_blocks(item)


def _cluster_yaml_max_cpus() -> float:
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    types = config["available_node_types"]
    head = types[config["head_node_type"]]["resources"].get("CPU", 0)
    return float(head + sum(t["resources"].get("CPU", 0) * t["max_workers"] for t in types.values()))


def test_job_files_pass_where_they_run() -> None:
    """Jobs on /mnt/shared run on cluster.yaml (checked against its fully scaled-up CPUs); the
    others (the local smoke pipeline) must fit a 2-CPU machine."""
    checked = 0
    for path in sorted((REPO / "jobs").rglob("*.yaml")):
        text = path.read_text()
        for block in _train_blocks(yaml.safe_load(text)):
            run = RayTrainRun(**block)
            if "/mnt/shared/" in text:
                require_data_pipeline_cpus(run.workers, run.cpus_per_worker, _cluster_yaml_max_cpus(),
                                           autoscaler=True)
            elif path.parent.name == "slurm":  # the allocation its own comment asks for
                nodes = re.search(r"--nodes (\d+)", text)
                cpus = re.search(r"--cpus-per-task (\d+)", text)
                assert nodes and cpus, f"{path}: name the allocation (--nodes, --cpus-per-task)"
                require_data_pipeline_cpus(run.workers, run.cpus_per_worker,
                                           float(nodes.group(1)) * float(cpus.group(1)))
            else:
                require_data_pipeline_cpus(run.workers, run.cpus_per_worker, 2.0)
            checked += 1
    assert checked >= 3  # pretrain.yaml, finetune.yaml, the pipelines' pretrain stages


def test_demo_settings_fit_a_two_cpu_machine() -> None:
    source = (REPO / "mixture_ray" / "pipeline" / "demo.py").read_text()
    cpus = [float(v) for v in re.findall(r'"train\.cpus_per_worker":\s*([0-9.]+)', source)]
    assert cpus and '"train.workers"' not in source  # one worker (the default) per stage
    for value in cpus:
        require_data_pipeline_cpus(RayTrainRun().workers, value, 2.0)


# ---------------------------------------------------------------- the driver check (a Ray session)
@pytest.fixture
def session(ray_session: None) -> None:
    """The tests' local 2-CPU Ray session (started by this process, so it cannot grow)."""


def _lazy() -> Any:
    import ray.data

    return ray.data.range(8).map_batches(lambda batch: batch)


def test_a_streamed_dataset_is_refused_on_the_local_session(session: None) -> None:
    with pytest.raises(ConfigError, match=r"reserve 2 CPUs for Ray Train, but the Ray cluster has 2 CPUs"):
        check_data_pipeline_cpus(RayTrainRun(cpus_per_worker=2.0), {"train": _lazy()})


def test_the_trainer_refuses_before_ray_train_starts(session: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.workers 2 x train\.cpus_per_worker 1 reserve 2 CPUs"):
        torch_trainer(lambda config: None, {}, RayTrainRun(workers=2, cpus_per_worker=1.0),
                      storage=tmp_path, name="run", datasets={"train": _lazy()})


def test_one_cpu_left_no_stream_or_a_materialised_dataset_passes(session: None) -> None:
    check_data_pipeline_cpus(RayTrainRun(cpus_per_worker=1.0), {"train": _lazy()})
    check_data_pipeline_cpus(RayTrainRun(cpus_per_worker=2.0), None)
    # pretrain's cached tiles: read from the object store while training, no Ray Data task
    check_data_pipeline_cpus(RayTrainRun(cpus_per_worker=2.0), {"train": _lazy().materialize()})


def test_an_autoscaler_maximum_lifts_the_ceiling(session: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_run, "_autoscaler_max_cpus", lambda: 384.0)
    check_data_pipeline_cpus(RayTrainRun(workers=4, cpus_per_worker=4.0), {"train": _lazy()})
    with pytest.raises(ConfigError, match="at most 384 CPUs, even scaled up fully by its autoscaler"):
        check_data_pipeline_cpus(RayTrainRun(workers=4, cpus_per_worker=96.0), {"train": _lazy()})


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_joined_cluster_without_a_published_autoscaler_only_warns(
    session: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train_run, "_session_started_here", lambda: False)
    records = _Records()
    train_run.log.addHandler(records)  # not caplog: the suite may run with -p no:logging
    try:
        check_data_pipeline_cpus(RayTrainRun(cpus_per_worker=2.0), {"train": _lazy()})
    finally:
        train_run.log.removeHandler(records)
    assert any("waits until the autoscaler adds a node" in m for m in records.messages)


def test_the_local_session_counts_as_started_here(session: None) -> None:
    assert train_run._session_started_here()
    assert train_run._autoscaler_max_cpus() is None
