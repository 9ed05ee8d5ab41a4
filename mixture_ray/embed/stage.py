"""`mixture-ray embed`: tile store -> ready tiles (CPU stages) -> model actors -> embedding store.

One streaming Ray Data execution per run (:mod:`mixture_ray.model_input.run`): tiles are decoded
(or read from the slides) in CPU stages, the model actors are created once and only run the
model, and each slide is committed as soon as its last embedding is written, so a rerun skips
what is done and an interrupted run never looks complete.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mixture_ray.embed.embedder import KEY_COLUMNS, TileEmbedder
from mixture_ray.locations import Uri
from mixture_ray.model_input.run import ModelStage
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.encoder import RANDOM, EncoderSpec
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import StageFolder

if TYPE_CHECKING:
    from mixture_ray.embed.config import EmbedConfig

DATA_SETTINGS = ("model", "arch", "dim", "mlp", "magnification", "crop_fraction", "seed")


@dataclasses.dataclass(frozen=True)
class EmbedReport(Report):
    """Outcome of an embedding run."""

    out_dir: Path | Uri
    slides_requested: int
    slides_skipped: int
    tiles_embedded: int
    failures: list[Failure]
    complete: bool

    def summary(self) -> str:
        """Tiles embedded, slides skipped as already done, and failures."""
        lines = [f"embedding store {self.out_dir}: {self.tiles_embedded} tiles of {self.slides_requested} "
                 f"slides ({self.slides_skipped} already done before this run)"]
        return "\n".join(lines)


def _settings(cfg: EmbedConfig) -> dict[str, object]:
    values: dict[str, object] = {k: getattr(cfg, k) for k in DATA_SETTINGS}
    if cfg.input.stain != "none":  # recorded only when used: earlier stores still resume
        values["stain"] = [cfg.input.stain, str(cfg.input.stain_reference)]
    if cfg.model != RANDOM:
        values["model"] = str(ckpt.find_checkpoint(Path(cfg.model)).resolve())
    return values


def run(cfg: EmbedConfig) -> EmbedReport:
    """Embed every tile of ``cfg.tiles`` not yet committed in ``cfg.out_dir``.

    Args:
        cfg: the embedding settings: tile store, checkpoint (or ``random``) and actor pool.

    Returns:
        The run's report: tiles embedded, slides skipped as already committed, failures.
    """
    store = StageFolder(cfg.out_dir, stage="embed", item_column="slide_id", inputs=[cfg.tiles])
    store.prepare(_settings(cfg))
    ensure_ray()
    stage = ModelStage(
        name="embed", actor=TileEmbedder,
        actor_kwargs={"encoder": EncoderSpec(cfg.model, cfg.arch, cfg.dim, cfg.mlp, cfg.seed),
                      "crop_fraction": cfg.crop_fraction,
                      "threads": cfg.torch_threads or int(cfg.pool.actor_cpus)},
        keys=KEY_COLUMNS, size=0, pool=cfg.pool, source=cfg.input)
    run = stage.run(store, cfg.tiles, magnification=cfg.magnification)
    failures, requested = run.failures, run.requested
    complete = store.finish(
        requested=requested, failures=failures,
        extra={"config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
               "devices": {"gpus_per_actor": run.gpus_per_actor, "driver_cuda": torch.cuda.is_available()}},
    )
    return EmbedReport(
        out_dir=cfg.out_dir, slides_requested=len(requested), slides_skipped=run.skipped,
        tiles_embedded=sum(store.committed_items().values()), failures=failures, complete=complete,
    )
