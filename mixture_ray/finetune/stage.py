"""`mixture-ray finetune`: locate labelled tiles, stream them to the TorchTrainer, fit (or resume), export.

Run folder ``out_dir/name``: Ray Train checkpoints, ``classifier.pt`` (best epoch by validation
balanced accuracy, weights only), ``metrics.json`` / ``metrics_per_class.csv`` /
``metrics_confusion.csv`` (validation, best epoch), ``history.csv``, ``split.json`` and, last,
``_SUCCESS`` with the run id (MLflow's when tracked: :mod:`mixture_ray.tracking`) and the lineage.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import ray

from mixture_ray.errors import StageIncompleteError
from mixture_ray.finetune import data as ftdata
from mixture_ray.finetune.stream import labelled_feed
from mixture_ray.finetune.train import TRAIN_FILE, train_loop
from mixture_ray.model_input.feed import TrainingFeed
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.classifier import CLASSIFIER_FILE
from mixture_ray.models.encoder import RANDOM
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import SUCCESS, write_json_atomic
from mixture_ray.store.lineage import lineage_fields, new_run_id
from mixture_ray.tracking import end_run, flat_params, start_run
from mixture_ray.train_progress import TrainingProgress
from mixture_ray.train_run import check_data_pipeline_cpus, torch_trainer

if TYPE_CHECKING:
    from mixture_ray.finetune.config import FinetuneConfig


@dataclasses.dataclass(frozen=True)
class FinetuneReport(Report):
    """Outcome of a fine-tuning run."""

    run_dir: Path
    classifier: Path
    classes: tuple[str, ...]
    step: int
    start_step: int
    best_epoch: int
    val_balanced_accuracy: float
    n_train: int
    n_val: int
    metrics: dict[str, Any]
    complete: bool = True
    failures: tuple[Failure, ...] = ()

    def summary(self) -> str:
        """Steps, data sizes, the best epoch and where the classifier went."""
        return (f"finetune {self.run_dir}: step {self.step} (resumed from {self.start_step}), "
                f"{self.n_train} train / {self.n_val} validation tiles, classes {list(self.classes)}; "
                f"best epoch {self.best_epoch}: validation balanced accuracy "
                f"{self.val_balanced_accuracy:.3f}\n"
                f"  classifier: {self.classifier}\n  metrics: {self.run_dir / 'metrics.json'}")


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The case split, the training tiles' class indices and feed, and the validation tiles (lazy)."""

    classes: tuple[str, ...]
    split: ftdata.CaseSplit
    train_targets: np.ndarray
    n_val: int
    train: TrainingFeed
    val: ray.data.Dataset


def prepare(cfg: FinetuneConfig) -> Prepared:
    """Labels -> the tile files holding them -> case split -> a training feed and validation tiles.

    Only labels and the tile store's small columns are read here; pixels are read and decoded
    by Ray Data tasks as the workers consume them (training keys in a seeded order per epoch).

    Args:
        cfg: the fine-tuning settings.

    Returns:
        The classes, the case split, the training targets and feed, and the validation dataset.
    """
    labels = ftdata.load_labels(cfg.labels)
    classes = ftdata.class_order(labels, cfg.findings, cfg.labels)
    joined = ftdata.join_tiles(labels, cfg.tiles, cfg.magnification, cfg.splits)
    split = ftdata.split_by_case(joined, cfg.val_fraction, cfg.seed, cfg.labels)
    parts = {}
    for part, cases in (("train", split.train), ("val", split.val)):
        rows = joined[joined["case_id"].astype(str).isin(set(cases))].reset_index(drop=True)
        parts[part] = (rows, ftdata.encode_targets(rows["finding"], classes))
    ftdata.check_train_classes(parts["train"][1], classes, cfg.labels)
    train = labelled_feed(*parts["train"], cfg.image_size, seed=cfg.seed, workers=cfg.train.workers)
    val = labelled_feed(*parts["val"], cfg.image_size, seed=cfg.seed).dataset(0)
    return Prepared(tuple(classes), split, parts["train"][1], len(parts["val"][1]), train, val)


def _resolved(cfg: FinetuneConfig) -> FinetuneConfig:
    model = cfg.model if cfg.model == RANDOM else str(Path(cfg.model).resolve())
    return dataclasses.replace(cfg, model=model, out_dir=cfg.out_dir.resolve())


def run(cfg: FinetuneConfig) -> FinetuneReport:
    """Train (or resume) the finding classifier; exports out_dir/name/classifier.pt.

    Args:
        cfg: the fine-tuning settings, with the Ray Train run settings in ``cfg.train``.

    Returns:
        The run folder, the exported classifier, its classes and its validation metrics.
    """
    cfg = _resolved(cfg)
    ensure_ray()
    prep = prepare(cfg)
    run_dir = cfg.out_dir / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "split.json", {"train_cases": list(prep.split.train),
                                               "val_cases": list(prep.split.val),
                                               "classes": list(prep.classes)})
    loop_config = {"cfg": cfg, "classes": prep.classes, "targets": ray.put(prep.train_targets),
                   "feed": prep.train, "val": prep.val}
    check_data_pipeline_cpus(cfg.train, {"val": prep.val})  # the workers stream their own epochs
    (run_dir / SUCCESS).unlink(missing_ok=True)
    tracked = start_run(cfg.train.tracking_uri, out_dir=cfg.out_dir, experiment=cfg.train.experiment,
                        stage="finetune", name=cfg.name, params=flat_params(cfg))
    run_id = tracked.run_id if tracked else new_run_id()
    try:
        with TrainingProgress("finetune", total_steps=0) as progress:  # the workers post the total
            loop_config = {**loop_config, "progress": progress.sink, "tracking": tracked}
            trainer = torch_trainer(train_loop, loop_config, cfg.train, storage=cfg.out_dir, name=cfg.name)
            result = trainer.fit()
        if result.checkpoint is None:
            raise StageIncompleteError(f"finetune run {run_dir} produced no checkpoint")
        with result.checkpoint.as_directory() as folder:
            state = ckpt.load(Path(folder) / TRAIN_FILE)
        if state["best"] is None:
            raise StageIncompleteError(f"finetune run {run_dir}: no epoch finished, nothing to export")
    except BaseException:
        end_run(tracked, "FAILED")
        raise
    classifier = run_dir / CLASSIFIER_FILE
    ckpt.save({**state["best"], "magnification": cfg.magnification, "image_size": cfg.image_size,
               "val_balanced_accuracy": state["best_score"], "labels": str(cfg.labels), "run_id": run_id},
              classifier)
    end_run(tracked, "FINISHED", params={"checkpoint": result.checkpoint.path, "classifier": str(classifier)})
    write_json_atomic(run_dir / "metrics.json", {**state["best_metrics"], "split": "validation",
                                                 "best_epoch": state["best_epoch"]})
    best = state["best_metrics"]
    pd.DataFrame(best["per_class"]).to_csv(run_dir / "metrics_per_class.csv", index=False)
    pd.DataFrame(best["confusion"], index=best["classes"], columns=best["classes"]).to_csv(
        run_dir / "metrics_confusion.csv"
    )
    pd.DataFrame(state["history"]).to_csv(run_dir / "history.csv", index=False)
    write_json_atomic(run_dir / SUCCESS, {
        "stage": "finetune", "step": int(state["step"]), "classifier": str(classifier),
        "mlflow": tracked.record() if tracked else None,
        **lineage_fields(run_id, [str(cfg.labels), str(cfg.tiles), str(cfg.model)])})
    metrics = dict(result.metrics or {})
    return FinetuneReport(
        run_dir=run_dir, classifier=classifier, classes=prep.classes, step=int(state["step"]),
        start_step=int(metrics.get("start_step", 0)), best_epoch=int(state["best_epoch"]),
        val_balanced_accuracy=float(state["best_score"]), n_train=len(prep.train_targets),
        n_val=prep.n_val, metrics=metrics,
    )
