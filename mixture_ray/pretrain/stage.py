"""`mixture-ray pretrain`: build the TorchTrainer, fit (or resume), export the encoder."""

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


def export_encoder(checkpoint_dir: Path, out: Path, cfg: PretrainConfig) -> dict[str, Any]:
    """Write the query encoder of a training checkpoint as ``elex.pt``; returns the state read."""
    state = ckpt.load(checkpoint_dir / ckpt.TRAIN_FILE)
    ckpt.save(
        {"format": ckpt.ENCODER_FORMAT, "spec": state["spec"], "state_dict": state["query"],
         "step": state["step"], "magnification": cfg.magnification,
         "crop_fraction": cfg.crop_fraction, "tiles": str(cfg.tiles)},
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
    with TrainingProgress("pretrain", total_steps=cfg.max_steps) as progress:
        trainer = torch_trainer(train_loop, {"cfg": cfg, "feed": feed, "progress": progress.sink}, cfg.train,
                                storage=cfg.out_dir, name=cfg.name)
        result = trainer.fit()
    if result.checkpoint is None:
        raise StageIncompleteError(f"pretrain run {run_dir} produced no checkpoint")
    encoder = run_dir / ckpt.ENCODER_FILE
    with result.checkpoint.as_directory() as folder:
        state = export_encoder(Path(folder), encoder, cfg)
    metrics = dict(result.metrics or {})
    return PretrainReport(
        run_dir=run_dir, encoder=encoder, step=int(state["step"]),
        start_step=int(metrics.get("start_step", 0)), loss=float(metrics.get("loss", float("nan"))),
        samples_per_s_per_worker=float(metrics.get("samples_per_s_per_worker", 0.0)), metrics=metrics,
    )
