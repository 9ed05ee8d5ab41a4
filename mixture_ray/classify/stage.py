"""`mixture-ray classify`: tile store -> tissue tiles -> classifier actors -> prediction store.

Each committed tile chunk becomes one committed prediction chunk, so a rerun skips slides
already classified and an interrupted run never looks complete. The class order is kept in the
store's ``_settings.json`` (``classes``); :func:`load_predictions` reads it back.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch

from mixture_ray.classify.classifier_actor import KEY_COLUMNS, TileClassifier
from mixture_ray.errors import ConfigError
from mixture_ray.models.classifier import CLASSIFIER_FILE, load_classifier
from mixture_ray.ray_runtime import cluster_resources, ensure_ray
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.schemas import magnification_label
from mixture_ray.store.tile_chunks import check_actor_cpus, keep_slides, run_tile_chunks
from mixture_ray.store.tiles import tile_rows

if TYPE_CHECKING:
    from mixture_ray.classify.config import ClassifyConfig


@dataclasses.dataclass(frozen=True)
class ClassifyReport(Report):
    """Outcome of a classification run."""

    out_dir: Path
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


def keep_tissue(batch: pa.Table, max_background: float) -> pa.Table:
    """Rows whose background fraction is at most ``max_background``."""
    return batch.filter(pc.less_equal(batch["background_fraction"], max_background))


def build_dataset(
    files: list[Path], slides: list[str] | None, *, cfg: ClassifyConfig, classifier: Path,
    magnification: float | None,
) -> ray.data.Dataset:
    """Lazy pipeline: read tiles -> tissue (and pending slides) only -> classifier actor pool."""
    ds = tile_rows(files, [*KEY_COLUMNS, "image"], magnification)
    ds = ds.map_batches(functools.partial(keep_tissue, max_background=cfg.max_background),
                        batch_format="pyarrow")
    if slides is not None:
        ds = ds.map_batches(functools.partial(keep_slides, slides=slides), batch_format="pyarrow")
    gpus = 1 if cluster_resources().get("GPU", 0) > 0 else 0
    return ds.map_batches(
        TileClassifier,
        fn_constructor_kwargs={"classifier": classifier, "actor_cpus": cfg.pool.actor_cpus,
                               "torch_threads": cfg.torch_threads},
        batch_size=cfg.pool.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.pool.workers),
        num_cpus=cfg.pool.actor_cpus,
        num_gpus=gpus,
    )


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
                "max_background": cfg.max_background, "tiles": str(Path(cfg.tiles).resolve())}
    store = StageFolder(cfg.out_dir, stage="classify", item_column="slide_id")
    store.prepare(settings)
    ensure_ray()
    check_actor_cpus(cfg.pool.workers, cfg.pool.actor_cpus)
    build = functools.partial(build_dataset, cfg=cfg, classifier=file, magnification=magnification)
    run = run_tile_chunks(store, cfg.tiles, magnification, build, max_background=cfg.max_background)
    complete = store.finish(
        requested=run.requested, failures=run.failures,
        extra={"classes": list(net.classes), "magnification": magnification,
               "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
               "cuda": torch.cuda.is_available()},
    )
    return ClassifyReport(
        out_dir=cfg.out_dir, classes=tuple(net.classes), magnification=magnification,
        slides_requested=len(run.requested), slides_skipped=run.skipped,
        tiles_classified=sum(store.committed_items().values()), failures=run.failures, complete=complete,
    )
