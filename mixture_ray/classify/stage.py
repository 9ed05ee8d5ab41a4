"""`mixture-ray classify`: tile store -> ready tissue tiles (CPU stages) -> classifier actors -> predictions.

One streaming Ray Data execution per run (:mod:`mixture_ray.model_input.run`); each slide is
committed as soon as its last prediction is written, so a rerun skips slides already classified
and an interrupted run never looks complete. The class order is kept in the
store's ``_settings.json`` (``classes``); :func:`load_predictions` reads it back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mixture_ray.classify.classifier_actor import KEY_COLUMNS, TileClassifier
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri, address_text
from mixture_ray.model_input.run import ModelStage
from mixture_ray.models.classifier import CLASSIFIER_FILE, load_classifier
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.schemas import magnification_label

if TYPE_CHECKING:
    from mixture_ray.classify.config import ClassifyConfig


@dataclasses.dataclass(frozen=True)
class ClassifyReport(Report):
    """Outcome of a classification run."""

    out_dir: Path | Uri
    classes: tuple[str, ...]
    magnification: float | None
    slides_requested: int
    slides_skipped: int
    tiles_classified: int
    failures: list[Failure]
    complete: bool

    def summary(self) -> str:
        """Tiles classified, the classes, and failures."""
        lines = [f"prediction store {self.out_dir}: {self.tiles_classified} tiles of {self.slides_requested} "
                 f"slides at {magnification_label(self.magnification)} "
                 f"({self.slides_skipped} already done), "
                 f"classes {list(self.classes)}"]
        return "\n".join(lines)


def classifier_file(path: Path) -> Path:
    """The classifier.pt of a finetune run folder, or the file itself; a clear error when absent."""
    file = path / CLASSIFIER_FILE if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(
            f"classifier: {file} does not exist; give a finetune run folder or its {CLASSIFIER_FILE}"
        )
    return file.resolve()


def run(cfg: ClassifyConfig) -> ClassifyReport:
    """Classify every tissue tile of ``cfg.tiles`` not yet committed in ``cfg.out_dir``.

    Args:
        cfg: the tile store, the classifier and the actor pool.

    Returns:
        The run's report: tiles classified, slides skipped as already committed, failures.
    """
    file = classifier_file(cfg.classifier)
    net, payload = load_classifier(file)
    magnification = cfg.magnification if cfg.magnification is not None else payload.get("magnification")
    settings = {"classifier": str(file), "classes": list(net.classes), "magnification": magnification,
                "max_background": cfg.max_background, "tiles": address_text(cfg.tiles)}
    if cfg.input.stain != "none":  # recorded only when used: earlier stores still resume
        settings["stain"] = [cfg.input.stain, str(cfg.input.stain_reference)]
    store = StageFolder(cfg.out_dir, stage="classify", item_column="slide_id")
    store.prepare(settings)
    ensure_ray()
    stage = ModelStage(
        name="classify", actor=TileClassifier,
        actor_kwargs={"classifier": file, "actor_cpus": cfg.pool.actor_cpus,
                      "torch_threads": cfg.torch_threads},
        keys=KEY_COLUMNS, size=int(payload.get("image_size") or 0), pool=cfg.pool, source=cfg.input)
    run = stage.run(store, cfg.tiles, magnification=magnification, max_background=cfg.max_background)
    complete = store.finish(
        requested=run.requested, failures=run.failures,
        extra={"classes": list(net.classes), "magnification": magnification,
               "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
               "devices": {"gpus_per_actor": run.gpus_per_actor, "driver_cuda": torch.cuda.is_available()}},
    )
    return ClassifyReport(
        out_dir=cfg.out_dir, classes=tuple(net.classes), magnification=magnification,
        slides_requested=len(run.requested), slides_skipped=run.skipped,
        tiles_classified=sum(store.committed_items().values()), failures=run.failures, complete=complete,
    )
