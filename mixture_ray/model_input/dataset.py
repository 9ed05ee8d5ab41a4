"""The Ray Data stages that hand a model actor ready uint8 tiles.

``read`` tasks read the pending rows of one tile file (only the needed columns); then either
``decode`` tasks turn the stored JPEG/PNG bytes into one uint8 (B, H, W, 3) array per batch, or
:class:`SlidePixelReader` actors (each keeping its slides open) read every tile straight from its
slide (coordinates-only stores). Both run on CPUs apart from the model actors, which receive
numpy batches with ``pixels`` (uint8) and ``error`` ("", or why the tile has no pixels).
With ``input.decode = model`` the encoded bytes go to the model actor instead, which decodes them
on its own device (:mod:`mixture_ray.models.jpeg_decode`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from PIL import Image

from mixture_ray.errors import ConfigError
from mixture_ray.locations import Location
from mixture_ray.model_input.stain import REFERENCE, StainEstimate, estimate_stains, normalise_stain
from mixture_ray.slides.open_cache import OpenSlides
from mixture_ray.store.codec import decode_tile, resize_square

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from mixture_ray.config import TileInput
    from mixture_ray.model_input.plan import RowFilter, TilePlan

#: Columns the slide readers need besides the keys.
SLIDE_COLUMNS = ("level", "x", "y", "size_level0", "tile_size", "source")


#: Rows a read task hands on at a time (a part holds tens of thousands of rows with their pixels).
READ_ROWS = 2048


def read_rows(batch: dict[str, Any], *, columns: Sequence[str], rule: RowFilter,
              slides: Sequence[str]) -> Iterator[pa.Table]:
    """``map_batches`` body: the pending rows of one tile file, only ``columns``, in bounded blocks."""
    (path,) = batch["path"]
    wanted = list(dict.fromkeys([*columns, *rule.columns()]))
    where = Location.of(str(path))
    value_set = pa.array(list(slides), pa.string())
    with where.fs.open_input_file(where.path) as handle:
        for record_batch in pq.ParquetFile(handle).iter_batches(batch_size=READ_ROWS, columns=wanted):
            table = pa.Table.from_batches([record_batch])
            keep = pc.and_(rule.mask(table), pc.is_in(table["slide_id"], value_set=value_set))
            kept = table.filter(keep).select(list(columns))
            if kept.num_rows:
                yield kept


def _keys(batch: pa.Table, keys: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: batch[name].to_numpy(zero_copy_only=False) for name in keys}


def stack_tiles(tiles: list[np.ndarray | None], size: int) -> np.ndarray:
    """One uint8 (B, S, S, 3) array: tiles resized to ``size`` (or the first tile's); None -> zeros."""
    shapes = [t.shape for t in tiles if t is not None]
    side = size or (shapes[0][0] if shapes else 1)
    out = np.zeros((len(tiles), side, side, 3), np.uint8)
    for i, tile in enumerate(tiles):
        if tile is not None:
            out[i] = resize_square(tile, side) if tile.shape[:2] != (side, side) else tile
    return out


def stain_target(source: TileInput) -> StainEstimate | None:
    """The stains tiles are normalised to (``input.stain``), or None when they are not."""
    if source.stain == "none":
        return None
    if source.stain_reference is None:
        return REFERENCE
    with Image.open(source.stain_reference) as image:
        return estimate_stains(np.asarray(image.convert("RGB")))


def _normalised(tile: np.ndarray, stain: StainEstimate | None) -> np.ndarray:
    return tile if stain is None else normalise_stain(tile, stain)


def decode_rows(batch: pa.Table, *, keys: Sequence[str], size: int,
                stain: StainEstimate | None = None) -> dict[str, np.ndarray]:
    """``map_batches`` body: stored tile bytes -> ``pixels`` uint8 and ``error`` per row, with the keys.

    With ``stain``, each tile's H&E stains are normalised to it (Macenko) after decoding.
    """
    tiles: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for i, data in enumerate(batch["image"].to_pylist()):
        try:
            if data is None:
                raise ValueError("tile has no pixels (tiled with encoding=none; use input.pixels=slides)")
            tiles.append(_normalised(decode_tile(bytes(data)), stain))
            errors.append(None)
        except Exception as exc:
            tiles.append(None)
            errors.append(f"tile ({batch['x'][i]}, {batch['y'][i]}): {exc}")
    return {**_keys(batch, keys), "pixels": stack_tiles(tiles, size),
            "error": np.array([e or "" for e in errors], dtype=object)}


class SlidePixelReader:
    """``map_batches`` class: tile coordinates -> ``pixels`` read from the slides (kept open per actor).

    Args:
        keys: columns passed on to the model.
        size: edge of the returned tiles (0 = each row's ``tile_size``).
        backend: slide reader backend.
        tile_cache_mb: decoded native-tile cache per open slide and level.
    """

    def __init__(self, *, keys: Sequence[str], size: int, backend: str, tile_cache_mb: int,
                 stain: StainEstimate | None = None) -> None:
        self.keys, self.size, self.stain = tuple(keys), size, stain
        self.slides = OpenSlides(backend, tile_cache_bytes=tile_cache_mb << 20)

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        """Read each row's tile at its level and resize it to the stored tile size."""
        tiles: list[np.ndarray | None] = []
        errors: list[str | None] = []
        for row in batch.select(list(SLIDE_COLUMNS)).to_pylist():
            try:
                read_size = self.slides.level_read_size(row["source"], level=row["level"],
                                                        size_level0=row["size_level0"])
                tile = self.slides.read_tile(row["source"], level=row["level"], x=row["x"], y=row["y"],
                                             read_size=read_size, tile_size=row["tile_size"])
                tiles.append(_normalised(tile, self.stain))
                errors.append(None)
            except Exception as exc:
                tiles.append(None)
                where = f"tile ({row['x']}, {row['y']}) of {row['source']}"
                errors.append(f"{where}: {type(exc).__name__}: {exc}")
        return {**_keys(batch, self.keys), "pixels": stack_tiles(tiles, self.size),
                "error": np.array([e or "" for e in errors], dtype=object)}

    def __del__(self) -> None:
        self.slides.close()


def model_input(plan: TilePlan, rule: RowFilter, source: TileInput, *, keys: Sequence[str], size: int,
                batch_size: int) -> ray.data.Dataset:
    """The lazy dataset of ready tiles for a model actor: keys, ``pixels`` (or ``image``) and ``error``.

    Args:
        plan: the run's files and pending slides.
        rule: the row filter (``rule.from_slides`` reads pixels from the slides).
        source: the ``input`` settings (CPUs, readers, decode place).
        keys: columns passed on to the model.
        size: tile edge the model wants (0 = as stored).
        batch_size: rows per decode or read batch (the model's batch size).

    Returns:
        The dataset; ``input.decode = model`` leaves the encoded ``image`` bytes to the model.
    """
    pending = sorted(plan.expected)
    if rule.from_slides:
        columns = list(dict.fromkeys([*keys, *SLIDE_COLUMNS]))
    else:
        columns = list(dict.fromkeys([*keys, "image"]))
    read = functools.partial(read_rows, columns=columns, rule=rule, slides=pending)
    files = ray.data.from_items([{"path": str(f)} for f in plan.files],
                                override_num_blocks=max(1, len(plan.files)))
    rows = files.map_batches(read, batch_size=1, batch_format="numpy", num_cpus=source.cpus)
    if rule.from_slides:
        return rows.map_batches(
            SlidePixelReader,
            fn_constructor_kwargs={"keys": tuple(keys), "size": size, "backend": source.backend,
                                   "tile_cache_mb": source.tile_cache_mb, "stain": stain_target(source)},
            batch_size=batch_size, batch_format="pyarrow", num_cpus=source.cpus,
            compute=ray.data.ActorPoolStrategy(size=source.readers))
    if source.decode == "model":
        return rows
    decode = functools.partial(decode_rows, keys=tuple(keys), size=size, stain=stain_target(source))
    return rows.map_batches(decode, batch_size=batch_size, batch_format="pyarrow", num_cpus=source.cpus)


def check_cpus(pool_workers: int, actor_cpus: float, source: TileInput, cluster_cpus: float) -> None:
    """The model actors must leave the CPUs of one decode task (or the slide readers) free.

    Raises:
        ConfigError: naming the settings to lower, when the pipeline would stall.
    """
    readers = source.cpus * (source.readers if source.pixels == "slides" else 1)
    if pool_workers * actor_cpus + readers > cluster_cpus:
        raise ConfigError(
            f"pool.workers x pool.actor_cpus = {pool_workers} x {actor_cpus:g} plus {readers:g} CPU(s) for "
            f"reading tiles (input.cpus, input.readers) exceed the {cluster_cpus:g} CPUs of the cluster; "
            "lower them (torch_threads sets the model actors' threads)")
