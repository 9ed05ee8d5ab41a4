"""`mixture-ray tile`: manifest -> coordinates -> repartition -> pixel actors -> Parquet.

Slides are processed in commit chunks (``slides_per_commit``); each chunk is one Ray Data
pipeline whose output is committed only when it has finished, so a rerun skips committed
slides and an interrupted run leaves nothing that looks complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import ray

from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.manifest import read_manifest
from mixture_ray.tile.pixels import SlideCoordinates, TilePixelReader, pixel_reader_kwargs
from mixture_ray.tile.report import TilingReport

if TYPE_CHECKING:
    from pathlib import Path

    from mixture_ray.report import Failure
    from mixture_ray.tile.config import TileConfig

#: Settings that change what is written; a rerun into the same folder must match them.
DATA_SETTINGS = (
    "magnifications",
    "tile_size",
    "stride",
    "background_threshold",
    "max_background",
    "max_tiles_per_slide",
    "encoding",
    "jpeg_quality",
    "seed",
)
#: Rows buffered per Parquet file (fewer, larger files than one per block).
WRITE_ROWS_PER_FILE = 1024


def build_chunk_dataset(records: list[dict[str, Any]], cfg: TileConfig) -> ray.data.Dataset:
    """The lazy Ray Data pipeline for one chunk of manifest rows."""
    return (
        ray.data.from_items(records)
        .map_batches(SlideCoordinates(cfg).__call__, batch_size=1, batch_format="pyarrow")
        .repartition(target_num_rows_per_block=cfg.pool.batch_size * 4)
        .map_batches(
            TilePixelReader,
            fn_constructor_kwargs=pixel_reader_kwargs(cfg),
            batch_size=cfg.pool.batch_size,
            batch_format="pyarrow",
            # The pool starts at one actor and grows: the coordinate tasks need a CPU slot first.
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cfg.pool.workers),
            num_cpus=cfg.pool.actor_cpus,
        )
    )


def write_chunk(dataset: ray.data.Dataset, path: Path) -> None:
    """Write a chunk's tiles; the writer is I/O bound so it takes no CPU slot from the actors."""
    dataset.write_parquet(str(path), min_rows_per_file=WRITE_ROWS_PER_FILE, ray_remote_args={"num_cpus": 0})


def run(cfg: TileConfig) -> TilingReport:
    """Tile the manifest's slides into a tile store (an image folder: :func:`tile.images.run_import`).

    Args:
        cfg: the tiling settings.

    Returns:
        The run's report: tiles written, items skipped as already committed, failures.

    Example:
        >>> run(build_config(TileConfig, {"manifest": "cohort/manifest.csv", "out_dir": "tiles"}))
    """
    return tile_slides(cfg)


def tile_slides(cfg: TileConfig) -> TilingReport:
    """Tile every slide of ``cfg.manifest`` not yet committed in ``cfg.out_dir``."""
    manifest = read_manifest(cfg.manifest)
    store = StageFolder(cfg.out_dir, stage="tile", item_column="slide_id")
    store.prepare({k: getattr(cfg, k) for k in DATA_SETTINGS})
    done = store.committed_items()
    todo = manifest[~manifest["slide_id"].isin(list(done))]
    ensure_ray()
    failures: list[Failure] = []
    records = cast("list[dict[str, Any]]", todo.to_dict("records"))
    for start in range(0, len(records), cfg.slides_per_commit):
        chunk = records[start : start + cfg.slides_per_commit]
        tmp = store.new_tmp_dir()
        write_chunk(build_chunk_dataset(chunk, cfg), tmp)
        result = store.commit(tmp, {r["slide_id"]: r["path"] for r in chunk})
        failures.extend(result.failures)
    return TilingReport.finish(store, requested=manifest["slide_id"].tolist(),
                               skipped=len(manifest) - len(todo), failures=failures, config=cfg)
