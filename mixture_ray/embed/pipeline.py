"""`mixture-ray embed`: tile store -> Ray Data actor pool (one model each) -> embedding store.

Each committed tile chunk becomes one embedding chunk, committed when written, so a rerun
skips what is done and an interrupted run never looks complete.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import torch

from mixture_ray.config import EmbedConfig
from mixture_ray.embed.embedder import KEY_COLUMNS, TileEmbedder
from mixture_ray.embed.model import RANDOM
from mixture_ray.errors import ConfigError
from mixture_ray.io.committed_store import CommittedStore, Failure, committed_files
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.ssl import checkpoint as ckpt
from mixture_ray.ssl.data import tile_rows

DATA_SETTINGS = ("model", "arch", "dim", "mlp", "magnification", "crop_fraction", "seed")


@dataclasses.dataclass(frozen=True)
class EmbedReport:
    """Outcome of an embedding run."""

    out_dir: Path
    slides_requested: int
    slides_skipped: int
    tiles_embedded: int
    failures: list[Failure]
    complete: bool


def tile_chunks(tiles: Path) -> dict[Path, list[Path]]:
    """Committed tile chunk folder -> its Parquet files."""
    chunks: dict[Path, list[Path]] = defaultdict(list)
    for file in committed_files(tiles):
        chunks[file.parent].append(file)
    return dict(chunks)


def chunk_slides(files: list[Path], magnification: float | None) -> list[str]:
    """Slide ids with tiles (at ``magnification`` when given) in a chunk's files."""
    table = pq.read_table(files, columns=["slide_id", "magnification"])
    if magnification is not None:
        table = table.filter(pc.equal(table["magnification"], magnification))
    return sorted(set(table["slide_id"].to_pylist()))


def keep_slides(batch: pa.Table, slides: list[str]) -> pa.Table:
    """Rows of ``slides`` only (a chunk partly committed by an earlier run)."""
    return batch.filter(pc.is_in(batch["slide_id"], value_set=pa.array(slides, pa.string())))


def build_dataset(files: list[Path], cfg: EmbedConfig, slides: list[str] | None = None) -> ray.data.Dataset:
    """Lazy pipeline: read tiles -> filter -> embed on an actor pool (GPU per actor if any)."""
    ds = tile_rows(files, [*KEY_COLUMNS, "image"], cfg.magnification)
    if slides is not None:
        ds = ds.map_batches(functools.partial(keep_slides, slides=slides), batch_format="pyarrow")
    gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    return ds.map_batches(
        TileEmbedder,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.workers),
        num_cpus=cfg.actor_cpus,
        num_gpus=gpus,
    )


def _settings(cfg: EmbedConfig) -> dict[str, object]:
    values = {k: getattr(cfg, k) for k in DATA_SETTINGS}
    if cfg.model != RANDOM:
        values["model"] = str(ckpt.find_checkpoint(Path(cfg.model)).resolve())
    return values


def check_resources(cfg: EmbedConfig) -> None:
    """The actor pool must leave one CPU for the read tasks, or the pipeline would stall."""
    cpus = ray.cluster_resources().get("CPU", 0.0)
    if cfg.workers * cfg.actor_cpus > cpus - 1:
        raise ConfigError(
            f"workers x actor_cpus = {cfg.workers} x {cfg.actor_cpus} leaves no CPU of the {cpus:g} "
            "in the cluster for reading tiles; lower them (torch_threads sets the actors' threads)"
        )


def run_embedding(cfg: EmbedConfig) -> EmbedReport:
    """Embed every tile of ``cfg.tiles`` not yet committed in ``cfg.out_dir``."""
    store = CommittedStore(cfg.out_dir, stage="embed", item_column="slide_id")
    store.prepare(_settings(cfg))
    done = set(store.committed_items())
    chunks = tile_chunks(cfg.tiles)
    ensure_ray()
    check_resources(cfg)
    failures: list[Failure] = []
    requested: list[str] = []
    skipped = 0
    for folder, files in sorted(chunks.items()):
        slides = chunk_slides(files, cfg.magnification)
        requested.extend(slides)
        if not slides or set(slides) <= done:
            skipped += len(slides)
            continue
        todo = [s for s in slides if s not in done]
        skipped += len(slides) - len(todo)
        tmp = store.new_tmp_dir()
        dataset = build_dataset(files, cfg, todo if len(todo) < len(slides) else None)
        dataset.write_parquet(str(tmp), ray_remote_args={"num_cpus": 0})
        result = store.commit(tmp, {s: folder.name for s in todo})
        failures.extend(result.failures)
    complete = store.finish(
        requested=requested, failures=failures,
        extra={"config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
               "cuda": torch.cuda.is_available()},
    )
    return EmbedReport(
        out_dir=cfg.out_dir, slides_requested=len(requested), slides_skipped=skipped,
        tiles_embedded=sum(store.committed_items().values()), failures=failures, complete=complete,
    )
