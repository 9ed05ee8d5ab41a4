"""Ray Train helpers shared by pretrain and finetune: the trainer, report with a checkpoint, a fault hook.

:func:`torch_trainer` also refuses a CPU reservation that would starve the Ray Data pipeline feeding
the training workers (:func:`check_data_pipeline_cpus`).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.errors import ConfigError
from mixture_ray.models.checkpoint import save
from mixture_ray.ray_runtime import autoscaler_max_resources

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ray.train.torch import TorchTrainer

    from mixture_ray.config import RayTrainRun


def torch_trainer(
    loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    run: RayTrainRun,
    *,
    storage: Path,
    name: str,
    datasets: dict[str, Any] | None = None,
) -> TorchTrainer:
    """A TorchTrainer from the shared run settings; checkpoints live in ``storage/name``.

    Args:
        loop: the per-worker training function.
        loop_config: what each worker receives (a config and small objects; large data goes
            through ``datasets`` or the object store).
        run: workers, CPUs and GPU per worker, checkpoint and failure settings.
        storage: Ray Train storage folder (absolute).
        name: the run name; rerunning with the same name resumes from its last checkpoint.
        datasets: Ray Data datasets sharded across the workers.

    Returns:
        The trainer, ready to ``fit()``. ``use_gpu: null`` asks for GPUs when the cluster has them.

    Raises:
        ConfigError: the workers would reserve the CPUs that ``datasets`` need to stream
            (:func:`check_data_pipeline_cpus`).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mixture_ray.ray_runtime import cluster_resources

    check_data_pipeline_cpus(run, datasets)
    use_gpu = run.use_gpu if run.use_gpu is not None else cluster_resources().get("GPU", 0) > 0
    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=run.workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": run.cpus_per_worker}),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=run.keep_checkpoints),
            failure_config=FailureConfig(max_failures=run.max_failures),
        ),
        datasets=datasets,
    )


#: CPUs that must stay free for the Ray Data tasks streaming tiles to the training workers: each
#: read/decode task of the training feeds (:mod:`mixture_ray.model_input.feed`) takes one.
DATA_PIPELINE_CPUS = 1.0

log = logging.getLogger(__name__)


def require_data_pipeline_cpus(workers: int, cpus_per_worker: float, cluster_cpus: float, *,
                               autoscaler: bool = False) -> None:
    """The rule: Ray Train's workers must leave at least :data:`DATA_PIPELINE_CPUS` CPU free.

    Ray Train reserves ``workers x cpus_per_worker`` CPUs for its workers (and Ray Data excludes
    them from its own budget); the Ray Data tasks that stream tiles to the workers then need a CPU
    of their own. With none left they never start, and training waits forever for its first batch.

    Args:
        workers: ``train.workers``.
        cpus_per_worker: ``train.cpus_per_worker``.
        cluster_cpus: the most CPUs the cluster can have: its CPUs now, or the maximum its
            autoscaler can reach.
        autoscaler: ``cluster_cpus`` is an autoscaler's maximum (only changes the message).

    Raises:
        ConfigError: fewer than one CPU would be left; the message names the keys, their values,
            the cluster's CPUs and the settings that would fit.
    """
    reserved = workers * cpus_per_worker
    left = cluster_cpus - reserved
    if left >= DATA_PIPELINE_CPUS - 1e-9:
        return
    cluster = (f"the Ray cluster has at most {_cpus(cluster_cpus)}, even scaled up fully by its autoscaler"
               if autoscaler else f"the Ray cluster has {_cpus(cluster_cpus)}")
    budget = cluster_cpus - DATA_PIPELINE_CPUS
    per_worker = math.floor(budget / workers * 100) / 100 if budget > 0 else 0.0
    fewer = math.floor(budget / cpus_per_worker + 1e-9) if budget > 0 else 0
    examples = ([f"train.cpus_per_worker: {per_worker:g}"] if per_worker > 0 else []) + (
        [f"train.workers: {fewer}"] if 1 <= fewer < workers else [])
    if examples:
        fix = (f"Lower train.cpus_per_worker or train.workers so that workers x cpus_per_worker is at most "
               f"{budget:g}, leaving at least {DATA_PIPELINE_CPUS:g} CPU for the data pipeline "
               f"(e.g. {' or '.join(examples)}).")
    else:
        fix = (f"Run on a cluster with more than {DATA_PIPELINE_CPUS:g} CPU, so that at least "
               f"{DATA_PIPELINE_CPUS:g} CPU is left for the data pipeline beside the training workers.")
    raise ConfigError(
        f"train.workers {workers} x train.cpus_per_worker {cpus_per_worker:g} reserve {_cpus(reserved)} "
        f"for Ray Train, but {cluster}: {_cpus(max(left, 0.0))} would be left for the Ray Data tasks "
        f"that stream tiles to the training workers (they need {DATA_PIPELINE_CPUS:g}), so training "
        f"would wait forever for its first batch. {fix}"
    )


def _cpus(amount: float) -> str:
    return f"{amount:g} CPU" + ("" if amount == 1 else "s")


def check_data_pipeline_cpus(run: RayTrainRun, datasets: Mapping[str, Any] | None) -> None:
    """Refuse, on the driver and before Ray Train starts, a run whose workers starve its data pipeline.

    Only a dataset that streams through Ray Data while training needs CPUs then: a lazy one
    (the training feeds of finetune and pretrain, streamed by default). A materialised dataset
    (pretrain with ``cache_tiles: true``) is read from the object store with no Ray Data
    task, so it is never refused.

    The CPUs the cluster can have, which :func:`require_data_pipeline_cpus` checks against:

    - Ray publishes an autoscaler config (``get_max_resources_from_cluster_config``): the
      larger of the CPUs now and the autoscaler's maximum.
    - Otherwise, a Ray session this process started itself (:func:`mixture_ray.ray_runtime.ensure_ray`
      without ``RAY_ADDRESS``, or ``ray.init(address="local")``) cannot grow: its CPUs now.
    - Otherwise (a cluster joined through ``RAY_ADDRESS``, e.g. ``ray job submit``): the
      open-source autoscalers (``ray up``, KubeRay) do not publish their config, so whether the
      cluster can grow is unknown; the run is not refused, only a warning is logged when the
      CPUs now would leave less than one CPU free.

    Args:
        run: the Ray Train run settings (``train.workers``, ``train.cpus_per_worker``).
        datasets: the datasets handed to the trainer (``None``: none).

    Raises:
        ConfigError: from :func:`require_data_pipeline_cpus`.
    """
    from ray.data.dataset import MaterializedDataset

    from mixture_ray.ray_runtime import cluster_resources

    if not any(not isinstance(ds, MaterializedDataset) for ds in (datasets or {}).values()):
        return
    cpus_now = float(cluster_resources().get("CPU", 0.0))
    most = _autoscaler_max_cpus()
    if most is not None:
        require_data_pipeline_cpus(run.workers, run.cpus_per_worker, max(cpus_now, most), autoscaler=True)
    elif _session_started_here():
        require_data_pipeline_cpus(run.workers, run.cpus_per_worker, cpus_now)
    elif cpus_now - run.workers * run.cpus_per_worker < DATA_PIPELINE_CPUS - 1e-9:
        log.warning(
            "train.workers %d x train.cpus_per_worker %g reserve %g of the %g CPUs the Ray cluster has "
            "now, leaving less than %g CPU for the Ray Data tasks that stream tiles to the training "
            "workers: training waits until the autoscaler adds a node (forever on a fixed cluster).",
            run.workers, run.cpus_per_worker, run.workers * run.cpus_per_worker, cpus_now,
            DATA_PIPELINE_CPUS,
        )


def _autoscaler_max_cpus() -> float | None:
    """The most CPUs the cluster's autoscaler can reach, where Ray publishes its config."""
    cpus = autoscaler_max_resources().get("CPU", 0.0)
    return float(cpus) if cpus else None


def _session_started_here() -> bool:
    """Whether this process started the Ray session it is connected to (then nothing can grow it)."""
    try:  # private API: the node this driver started, or only connected to
        from ray._private import worker

        node = worker._global_node
        return bool(node is not None and node.head)
    except Exception:
        return not os.environ.get("RAY_ADDRESS")


def report_to_ray_train(metrics: dict[str, Any], state: Mapping[str, Any] | None, filename: str) -> None:
    """``ray.train.report`` the metrics, with ``state`` saved as ``filename`` in a checkpoint if given."""
    import tempfile

    import ray.train

    if state is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        save(state, Path(folder) / filename)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))



def worker_threads(run: RayTrainRun, local_workers: int) -> int:
    """The torch threads of a CPU training worker: ``train.torch_threads``, or the node's cores shared.

    Args:
        run: the run settings (``torch_threads`` 0 = automatic).
        local_workers: training workers on this node (``get_local_world_size()``).

    Returns:
        At least 1; by default the node's usable cores divided among its workers, so one worker
        alone uses every core of its node rather than only the CPUs it reserves.
    """
    if run.torch_threads:
        return run.torch_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_workers), int(run.cpus_per_worker))
