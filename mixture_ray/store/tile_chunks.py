"""Run a per-tile Ray Data stage chunk by chunk over a tile store, committing each chunk.

Each committed tile chunk becomes one output chunk (a :class:`StageFolder` commit) holding
the chunk's slides, so a rerun skips slides already done and an interrupted run never looks
complete. Stages that map tiles to rows (embedding, classification) share this loop.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from mixture_ray.errors import ConfigError
from mixture_ray.ray_runtime import cluster_resources
from mixture_ray.report import Failure
from mixture_ray.store.folder import StageFolder, committed_files

#: Builds the lazy dataset of one tile chunk: (its Parquet files, only these slides or None = all).
BuildDataset = Callable[[list[Path], list[str] | None], ray.data.Dataset]


@dataclasses.dataclass(frozen=True)
class ChunkRun:
    """What a chunked run saw: slides requested, slides skipped as already committed, failures."""

    requested: list[str]
    skipped: int
    failures: list[Failure]


def tile_chunks(tiles: Path) -> dict[Path, list[Path]]:
    """Committed tile chunk folder -> its Parquet files."""
    chunks: dict[Path, list[Path]] = defaultdict(list)
    for file in committed_files(tiles):
        chunks[file.parent].append(file)
    return dict(chunks)


def chunk_slides(
    files: list[Path], magnification: float | None, max_background: float | None = None
) -> list[str]:
    """Slide ids with tiles (at ``magnification``, at most ``max_background``, when given) in a chunk."""
    columns = ["slide_id", "magnification"] + (["background_fraction"] if max_background is not None else [])
    table = pq.read_table(files, columns=columns)
    if magnification is not None:
        table = table.filter(pc.equal(table["magnification"], magnification))
    if max_background is not None:
        table = table.filter(pc.less_equal(table["background_fraction"], max_background))
    return sorted(set(table["slide_id"].to_pylist()))


def keep_slides(batch: pa.Table, slides: list[str]) -> pa.Table:
    """Rows of ``slides`` only (a chunk partly committed by an earlier run)."""
    return batch.filter(pc.is_in(batch["slide_id"], value_set=pa.array(slides, pa.string())))


def check_actor_cpus(workers: int, actor_cpus: float) -> None:
    """An actor pool must leave one CPU for the read tasks, or the pipeline would stall."""
    cpus = cluster_resources().get("CPU", 0.0)
    if workers * actor_cpus > cpus - 1:
        raise ConfigError(
            f"pool.workers x pool.actor_cpus = {workers} x {actor_cpus} leaves no CPU of the {cpus:g} "
            "in the cluster for reading tiles; lower them (torch_threads sets the actors' threads)"
        )


def run_tile_chunks(
    store: StageFolder, tiles: Path, magnification: float | None, build: BuildDataset,
    *, max_background: float | None = None,
) -> ChunkRun:
    """Write and commit ``build(files, slides)`` for every tile chunk with slides not yet in ``store``.

    Slides are those with tiles at ``magnification`` (and at most ``max_background``) when given;
    ``build`` must apply the same filters.
    """
    done = set(store.committed_items())
    failures: list[Failure] = []
    requested: list[str] = []
    skipped = 0
    for folder, files in sorted(tile_chunks(tiles).items()):
        slides = chunk_slides(files, magnification, max_background)
        requested.extend(slides)
        todo = [s for s in slides if s not in done]
        skipped += len(slides) - len(todo)
        if not todo:
            continue
        tmp = store.new_tmp_dir()
        dataset = build(files, todo if len(todo) < len(slides) else None)
        dataset.write_parquet(str(tmp), ray_remote_args={"num_cpus": 0})
        failures.extend(store.commit(tmp, dict.fromkeys(todo, folder.name)).failures)
    return ChunkRun(requested, skipped, failures)
