"""Ray Train helpers shared by pretrain and finetune: the trainer, report with a checkpoint, a fault hook."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.models.checkpoint import save

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
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mixture_ray.ray_runtime import cluster_resources

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
