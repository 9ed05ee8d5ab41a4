"""`mixture-ray tile`: manifest -> coordinate tasks -> pixel actors -> row-sized Parquet parts.

One Ray Data execution per run streams every pending slide: coordinate tasks emit bounded blocks
of tile coordinates, the pixel actors (created once per run) read and encode tiles, writer tasks
write row-sized parts holding many slides, and the driver commits each slide as soon as its last
tile is in a written part (:mod:`mixture_ray.store.slide_stream`). A rerun skips committed
slides; an interrupted run leaves nothing that looks complete.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast

import ray

from mixture_ray.progress import ProgressLine
from mixture_ray.ray_runtime import ensure_ray, slide_reader_gpus
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.manifest import read_manifest
from mixture_ray.store.qc_table import read_qc
from mixture_ray.store.slide_stream import SlideBatchRunner, stream_slides
from mixture_ray.tile.pixels import SlideCoordinates, TilePixelReader, pixel_reader_kwargs
from mixture_ray.tile.report import TilingReport

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

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
    "qc",
)


def build_dataset(records: list[dict[str, Any]], cfg: TileConfig) -> ray.data.Dataset:
    """The lazy pipeline of one run: a block per slide -> coordinate blocks -> pixel actors (+ tally rows).

    Coordinate tasks reserve no CPU (they are short: one thumbnail per slide) and run at most
    ``pool.workers`` at a time, so they interleave with the pixel actors instead of waiting for
    a free core.
    """
    return (
        ray.data.from_items(records, override_num_blocks=max(1, len(records)))
        .map_batches(SlideCoordinates(cfg).__call__, batch_size=1, batch_format="pyarrow",
                     compute=ray.data.TaskPoolStrategy(size=max(1, min(cfg.pool.workers, len(records)))),
                     num_cpus=0)
        .map_batches(
            SlideBatchRunner,
            fn_constructor_kwargs={"inner": TilePixelReader, "inner_kwargs": pixel_reader_kwargs(cfg)},
            batch_size=cfg.pool.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=cfg.pool.workers),
            num_cpus=cfg.pool.actor_cpus,
            num_gpus=slide_reader_gpus(cfg.pool.gpus, cfg.backend),
        )
    )


@dataclasses.dataclass(frozen=True)
class QcUse:
    """What the QC table means for tiling: slides to skip, and each slide's flagged-region mask."""

    excluded: dict[str, str]
    masks: dict[str, tuple[str, float]]

    def columns(self, slide_id: str) -> dict[str, Any]:
        """The mask columns of a slide's manifest record ("" when none)."""
        path, downsample = self.masks.get(slide_id, ("", 0.0))
        return {"qc_mask": path, "qc_downsample": downsample}


def read_qc_use(qc: Path | None, slides: pd.Series) -> QcUse:
    """The QC decisions for the manifest's ``slides`` (nothing without a QC folder)."""
    if qc is None:
        return QcUse({}, {})
    table = read_qc(qc)
    rows = table.rows[table.rows["slide_id"].isin(slides)]
    failed = rows[rows["decision"] == "fail"]
    excluded = {str(s): f"failed QC: {r}" for s, r in zip(failed["slide_id"], failed["reason"], strict=True)}
    usable = rows[(rows["decision"] != "fail") & rows["mask"].notna() & (rows["mask"] != "")]
    masks = {str(s): (str(table.root / str(m)), float(d)) for s, m, d in
             zip(usable["slide_id"], usable["mask"], usable["mask_downsample"].astype(float), strict=True)}
    return QcUse(excluded, masks)


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
    qc = read_qc_use(cfg.qc, manifest["slide_id"])
    manifest = manifest[~manifest["slide_id"].isin(list(qc.excluded))]
    done = store.committed_items()
    todo = manifest[~manifest["slide_id"].isin(list(done))]
    store.plan(len(manifest))
    ensure_ray()
    records = cast("list[dict[str, Any]]", todo.to_dict("records"))
    if cfg.qc is not None:
        records = [{**r, **qc.columns(r["slide_id"])} for r in records]
    failures = []
    if records:
        staging = store.new_staging()
        progress = ProgressLine("tile", total_items=len(records), unit="tile positions")
        failures = stream_slides(build_dataset(records, cfg), store=store, staging=staging,
                                 sources={r["slide_id"]: r["path"] for r in records}, progress=progress,
                                 part_rows=cfg.pool.part_rows)
    return TilingReport.finish(store, requested=manifest["slide_id"].tolist(),
                               skipped=len(manifest) - len(todo), failures=failures, config=cfg,
                               excluded=qc.excluded)
