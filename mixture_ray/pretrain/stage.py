"""`mixture-ray pretrain`: build the TorchTrainer, fit (or resume), export the encoder.

The run folder ``out_dir/name`` gets ``elex.pt`` and, last, ``_SUCCESS`` with the run id (MLflow's
when tracked: :mod:`mixture_ray.tracking`) and the tile store's lineage.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.errors import StageIncompleteError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.pretrain.data import tile_feed
from mixture_ray.pretrain.train import train_loop
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import SUCCESS, write_json_atomic
from mixture_ray.store.lineage import lineage_fields, new_run_id
from mixture_ray.tracking import end_run, flat_params, start_run
from mixture_ray.train_progress import TrainingProgress
from mixture_ray.train_run import check_data_pipeline_cpus, torch_trainer

if TYPE_CHECKING:
    from mixture_ray.pretrain.config import PretrainConfig


@dataclasses.dataclass(frozen=True)
class PretrainReport(Report):
    """Outcome of a pretraining run."""

    run_dir: Path
    encoder: Path
    step: int
    start_step: int
    loss: float
    samples_per_s_per_worker: float
    metrics: dict[str, Any]
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """Steps, loss, throughput and where the encoder went."""
        return (f"pretrain {self.run_dir}: step {self.step} (resumed from {self.start_step}), "
                f"loss {self.loss:.4f}, {self.samples_per_s_per_worker:.1f} samples/s/worker; "
                f"encoder: {self.encoder}")


def export_encoder(checkpoint_dir: Path, out: Path, cfg: PretrainConfig, *, run_id: str | None = None
                   ) -> dict[str, Any]:
    """Write the query encoder of a training checkpoint as ``elex.pt``; returns the state read.

    ``run_id``: the run's MLflow id, kept in the file (a new id when not tracked), and in the state.
    """
    state = ckpt.load(checkpoint_dir / ckpt.TRAIN_FILE)
    state["run_id"] = run_id or new_run_id()
    ckpt.save(
        {"format": ckpt.ENCODER_FORMAT, "spec": state["spec"], "state_dict": state["query"],
         "step": state["step"], "magnification": cfg.magnification,
         "crop_fraction": cfg.crop_fraction, "tiles": str(cfg.tiles), "run_id": state["run_id"]},
        out,
    )
    return state


def run(cfg: PretrainConfig) -> PretrainReport:
    """Train (or resume) MoCo on ``cfg.tiles``; the encoder lands in out_dir/name/elex.pt.

    Args:
        cfg: the pretraining settings, with the Ray Train run settings in ``cfg.train``.

    Returns:
        The run folder, the exported encoder, the steps trained, the final loss and throughput.
    """
    ensure_ray()
    feed = tile_feed(cfg)
    if feed.cached is None:  # the workers stream their own epochs: they need the data pipeline's CPU
        check_data_pipeline_cpus(cfg.train, {"train": feed.dataset(0)})
    run_dir = cfg.out_dir / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SUCCESS).unlink(missing_ok=True)
    tracked = start_run(cfg.train.tracking_uri, out_dir=cfg.out_dir, experiment=cfg.train.experiment,
                        stage="pretrain", name=cfg.name, params=flat_params(cfg))
    try:
        with TrainingProgress("pretrain", total_steps=cfg.max_steps) as progress:
            loop_config = {"cfg": cfg, "feed": feed, "progress": progress.sink, "tracking": tracked}
            trainer = torch_trainer(train_loop, loop_config, cfg.train, storage=cfg.out_dir, name=cfg.name)
            result = trainer.fit()
        if result.checkpoint is None:
            raise StageIncompleteError(f"pretrain run {run_dir} produced no checkpoint")
        encoder = run_dir / ckpt.ENCODER_FILE
        with result.checkpoint.as_directory() as folder:
            state = export_encoder(Path(folder), encoder, cfg, run_id=tracked.run_id if tracked else None)
    except BaseException:
        end_run(tracked, "FAILED")
        raise
    end_run(tracked, "FINISHED", params={"checkpoint": result.checkpoint.path, "encoder": str(encoder)})
    metrics = dict(result.metrics or {})
    write_json_atomic(run_dir / SUCCESS, {
        "stage": "pretrain", "step": int(state["step"]), "encoder": str(encoder),
        "mlflow": tracked.record() if tracked else None,
        **lineage_fields(tracked.run_id if tracked else state.get("run_id"), [str(cfg.tiles)])})
    return PretrainReport(
        run_dir=run_dir, encoder=encoder, step=int(state["step"]),
        start_step=int(metrics.get("start_step", 0)), loss=float(metrics.get("loss", float("nan"))),
        samples_per_s_per_worker=float(metrics.get("samples_per_s_per_worker", 0.0)), metrics=metrics,
    )
