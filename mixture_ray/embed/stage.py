"""`mixture-ray embed`: tile store -> Ray Data actor pool (one model each) -> embedding store.

Each committed tile chunk becomes one embedding chunk, committed when written
(:mod:`mixture_ray.store.tile_chunks`), so a rerun skips what is done and an interrupted run
never looks complete.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import ray
import torch

from mixture_ray.embed.embedder import KEY_COLUMNS, TileEmbedder
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.encoder import RANDOM, EncoderSpec
from mixture_ray.ray_runtime import cluster_resources, ensure_ray
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.tile_chunks import check_actor_cpus, keep_slides, run_tile_chunks
from mixture_ray.store.tiles import tile_rows

if TYPE_CHECKING:
    from mixture_ray.embed.config import EmbedConfig

DATA_SETTINGS = ("model", "arch", "dim", "mlp", "magnification", "crop_fraction", "seed")


@dataclasses.dataclass(frozen=True)
class EmbedReport(Report):
    """Outcome of an embedding run."""

    out_dir: Path
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


def build_dataset(files: list[Path], slides: list[str] | None, *, cfg: EmbedConfig) -> ray.data.Dataset:
    """Lazy pipeline: read tiles -> filter -> embed on an actor pool (GPU per actor if any)."""
    ds = tile_rows(files, [*KEY_COLUMNS, "image"], cfg.magnification)
    if slides is not None:
        ds = ds.map_batches(functools.partial(keep_slides, slides=slides), batch_format="pyarrow")
    gpus = 1 if cluster_resources().get("GPU", 0) > 0 else 0
    return ds.map_batches(
        TileEmbedder,
        fn_constructor_kwargs={"encoder": EncoderSpec(cfg.model, cfg.arch, cfg.dim, cfg.mlp, cfg.seed),
                               "crop_fraction": cfg.crop_fraction,
                               "threads": cfg.torch_threads or int(cfg.pool.actor_cpus)},
        batch_size=cfg.pool.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.pool.workers),
        num_cpus=cfg.pool.actor_cpus,
        num_gpus=gpus,
    )


def _settings(cfg: EmbedConfig) -> dict[str, object]:
    values = {k: getattr(cfg, k) for k in DATA_SETTINGS}
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
    store = StageFolder(cfg.out_dir, stage="embed", item_column="slide_id")
    store.prepare(_settings(cfg))
    ensure_ray()
    check_actor_cpus(cfg.pool.workers, cfg.pool.actor_cpus)
    run = run_tile_chunks(store, cfg.tiles, cfg.magnification,
                          functools.partial(build_dataset, cfg=cfg))
    failures, requested = run.failures, run.requested
    complete = store.finish(
        requested=requested, failures=failures,
        extra={"config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
               "cuda": torch.cuda.is_available()},
    )
    return EmbedReport(
        out_dir=cfg.out_dir, slides_requested=len(requested), slides_skipped=run.skipped,
        tiles_embedded=sum(store.committed_items().values()), failures=failures, complete=complete,
    )
