"""Training feeds: a tile store streamed to a training worker in a seeded order, epoch by epoch.

Pretraining and fine-tuning read their tiles the same way. The driver knows only the store's
parts (from its index) and, for fine-tuning, the labelled tiles' keys; no pixel is read before
the first step and nothing counts rows by reading them. For each epoch:

1. the read units (each part, or each of ``slices`` interleaved row slices of a part where a
   store has fewer parts than workers) are put in a seeded order
   (``numpy.random.default_rng((seed, epoch))``); worker ``rank`` of ``world`` takes every
   ``world``-th unit of that order, from the ``rank``-th;
2. one Ray Data read task per unit reads its rows (row groups in a seeded order; fine-tuning: only
   the rows the epoch draws, a Parquet pushdown on their slides), shuffles them with a seed of
   (seed, epoch, unit), and decodes them in blocks of ``block_rows``;
3. the dataset runs with ``preserve_order`` (its blocks reach the worker in the order above,
   whatever the machine load or which task finishes first) and a cap on its object-store bytes;
4. the worker draws batches from a bounded, seeded local shuffle buffer
   (:mod:`mixture_ray.model_input.shuffle_buffer`), so a batch mixes parts, slides and cases.

The order of every tile a worker sees is therefore fixed by the seed, the epoch, the store and
the number of workers. The number of workers changes the result: each worker reads another
share of the units, and its batches (and their batch-norm statistics) mix only that share.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from mixture_ray.errors import ConfigError
from mixture_ray.locations import Location
from mixture_ray.model_input.plan import RowFilter
from mixture_ray.model_input.shuffle_buffer import shuffled_batches
from mixture_ray.store.codec import decode_tile, resize_square
from mixture_ray.store.schemas import TILE_KEY

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator, Mapping


KEY = list(TILE_KEY)


@dataclasses.dataclass(frozen=True)
class TrainingFeed:
    """What a training worker streams: the store's parts, how to read them, and the seed.

    Attributes:
        files: the tile parts (paths or URIs), in a fixed order (the index's).
        rows: tiles the feed holds (from the store's index, or the labelled tiles).
        rule: the rows of a part taken when ``keys`` is None (magnification, pixels present).
        seed: the run's seed; orders follow (seed, epoch).
        image_size: decoded tiles are resized to this edge (0 = as stored).
        block_rows: decoded rows per block a read task hands on.
        memory_bytes: object-store bytes the feed's Ray Data execution may hold.
        keys: per part (same index as ``files``), the labelled tiles to read, with ``row``
            (index into the epoch's draw counts) and ``target``; None = every row under ``rule``.
        slices: each part is read as this many units of interleaved rows (row ``i`` of the part,
            or labelled tile ``row``, in unit ``i % slices``), so that every worker has a unit.
        cached: per unit, its decoded tiles kept in the object store (``cache_tiles``); None = read.
    """

    files: tuple[str, ...]
    rows: int
    rule: RowFilter
    seed: int
    image_size: int = 0
    block_rows: int = 256
    memory_bytes: int = 1 << 30
    keys: tuple[pa.Table, ...] | None = None
    slices: int = 1
    cached: tuple[ray.data.Dataset, ...] | None = None

    @staticmethod
    def slices_for(parts: int, workers: int) -> int:
        """Units per part so that ``workers`` workers each get one: 1 unless parts are fewer."""
        return max(1, -(-workers // max(parts, 1)))

    def units(self) -> list[tuple[int, int]]:
        """The read units: (part, slice) pairs, part-major."""
        return [(part, k) for part in range(len(self.files)) for k in range(self.slices)]

    def order(self, epoch: int) -> np.ndarray:
        """The units of ``epoch`` in their seeded order (indices into :meth:`units`)."""
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.files) * self.slices)

    def worker_units(self, epoch: int, rank: int, world: int) -> list[int]:
        """The units worker ``rank`` of ``world`` reads in ``epoch``, in order."""
        return [int(i) for i in self.order(epoch)[rank::world]]

    def dataset(self, epoch: int, *, rank: int = 0, world: int = 1,
                counts: np.ndarray | None = None) -> ray.data.Dataset:
        """The lazy dataset of one worker's tiles in one epoch, in the feed's seeded order.

        Args:
            epoch: the epoch (0-based); each epoch has its own order.
            rank: the worker's rank.
            world: the number of workers.
            counts: with ``keys``, how often the epoch draws each labelled tile (by ``row``);
                tiles drawn 0 times are not read.

        Returns:
            Numpy-ready columns ``image`` (uint8 B x S x S x 3) and ``slide_id``, plus ``row`` and
            ``target`` with ``keys``.

        Raises:
            ConfigError: the worker gets no part (more workers than parts).
        """
        chosen = self.worker_units(epoch, rank, world)
        if not chosen:
            raise ConfigError(f"train.workers: {world} workers share {len(self.units())} read unit(s) of "
                              f"{len(self.files)} tile part(s); worker {rank} gets none "
                              "(lower train.workers)")
        if self.cached is not None:
            first, *rest = (self.cached[i] for i in chosen)
            return _ordered(first.union(*rest) if rest else first, self.memory_bytes)
        units = self.units()
        wanted = None if self.keys is None else {
            i: _drawn(self.keys[units[i][0]], counts, units[i][1], self.slices) for i in chosen}
        read = functools.partial(read_part, seed=self.seed, epoch=epoch, rule=self.rule, keys=wanted,
                                 slices=self.slices, image_size=self.image_size, block_rows=self.block_rows)
        items = ray.data.from_items([self.unit_item(i) for i in chosen], override_num_blocks=len(chosen))
        return _ordered(items.map_batches(read, batch_size=1, batch_format="numpy"), self.memory_bytes)

    def unit_item(self, unit: int) -> dict[str, Any]:
        """The row a read task gets for ``unit``: its index, part file and slice."""
        part, k = self.units()[unit]
        return {"unit": unit, "path": self.files[part], "slice": k}

    def batches(self, first_epoch: int, *, rank: int, world: int, batch_size: int,
                buffer_rows: int) -> Generator[tuple[int, dict[str, np.ndarray]]]:
        """Endless (epoch, batch) pairs from ``first_epoch`` on, through the local shuffle buffer.

        Raises:
            RuntimeError: an epoch of this worker yields no full batch.
        """
        epoch = first_epoch
        while True:
            stream = numpy_batches(self.dataset(epoch, rank=rank, world=world), self.block_rows)
            rng = np.random.default_rng((self.seed, epoch, rank, 1))
            n = 0
            for batch in shuffled_batches(stream, batch_size=batch_size, buffer_rows=buffer_rows, rng=rng):
                n += 1
                yield epoch, batch
            if n == 0:
                raise RuntimeError(f"worker {rank}: epoch {epoch} yielded no full batch of {batch_size} "
                                   "tiles; lower batch_size or train.workers")
            epoch += 1


def numpy_batches(dataset: ray.data.Dataset, batch_size: int) -> Iterable[dict[str, np.ndarray]]:
    """The dataset's rows as numpy column batches of ``batch_size`` rows (the last may be shorter)."""
    return cast("Iterable[dict[str, np.ndarray]]",
                dataset.iter_batches(batch_size=batch_size, batch_format="numpy"))


def _ordered(dataset: ray.data.Dataset, memory_bytes: int) -> ray.data.Dataset:
    """The dataset with its blocks kept in order and its object-store bytes capped."""
    options = dataset.context.execution_options
    options.preserve_order = True
    options.resource_limits = options.resource_limits.copy(object_store_memory=memory_bytes)
    return dataset


def _drawn(keys: pa.Table, counts: np.ndarray | None, k: int, slices: int) -> pa.Table:
    """The keys of slice ``k`` that an epoch draws at least once (all of the slice: ``counts`` None)."""
    rows = keys["row"].to_numpy()
    keep = rows % slices == k
    if counts is not None:
        keep &= counts[rows] > 0
    return keys.filter(pa.array(keep))


def read_part(batch: Mapping[str, Any], *, seed: int, epoch: int, rule: RowFilter,
              keys: Mapping[int, pa.Table] | None, slices: int, image_size: int,
              block_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """``map_batches`` body: one unit's rows in a seeded order, decoded in blocks of ``block_rows``."""
    unit, path, k = (int(batch["unit"][0]), str(batch["path"][0]), int(batch["slice"][0]))
    rng = np.random.default_rng((seed, epoch, unit))
    where = Location.of(path)
    if keys is not None:
        table = _labelled_rows(where, keys[unit])
        yield from _decoded(table.take(rng.permutation(table.num_rows)), image_size, block_rows)
        return
    columns = list(dict.fromkeys(["slide_id", "image", *rule.columns()]))
    with where.fs.open_input_file(where.path) as handle:
        file = pq.ParquetFile(handle)
        sizes = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
        first_rows = np.cumsum([0, *sizes])
        for group in rng.permutation(file.num_row_groups):
            table = file.read_row_group(int(group), columns=columns)
            mine = (np.arange(table.num_rows) + first_rows[group]) % slices == k
            table = table.filter(pc.and_(rule.mask(table), pa.array(mine))).select(["slide_id", "image"])
            yield from _decoded(table.take(rng.permutation(table.num_rows)), image_size, block_rows)


def _labelled_rows(where: Location, wanted: pa.Table) -> pa.Table:
    """The wanted keys (with ``row`` and ``target``) joined to their stored ``image`` bytes."""
    if wanted.num_rows == 0:
        return wanted.append_column("image", pa.array([], pa.binary()))
    slides = pc.unique(wanted["slide_id"])
    images = pq.read_table(where.path, columns=[*KEY, "image"], filesystem=where.fs,
                           filters=pc.field("slide_id").isin(slides)).to_pandas()
    images["magnification"] = images["magnification"].astype("float64")
    frame = wanted.to_pandas()
    frame["magnification"] = frame["magnification"].astype("float64")
    joined = frame.merge(images.drop_duplicates(KEY), on=KEY, how="left")  # NaN == NaN, as pandas does
    missing = joined["image"].isna()
    if missing.any():
        first = joined[missing].iloc[0]
        raise ConfigError(f"tile ({first.slide_id}, {first.x}, {first.y}) has no pixels in its tile file "
                          f"{where} any more")
    return pa.Table.from_pandas(joined[["slide_id", "row", "target", "image"]], preserve_index=False)


def _decoded(table: pa.Table, image_size: int, block_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """Blocks of at most ``block_rows`` rows with ``image`` decoded (and resized) to uint8."""
    for start in range(0, table.num_rows, block_rows):
        block = table.slice(start, block_rows)
        tiles = [resize_square(decode_tile(bytes(b)), image_size) for b in block["image"].to_pylist()]
        shapes = {t.shape for t in tiles}
        if len(shapes) > 1:
            raise ConfigError(f"image_size: tiles have several sizes {sorted(shapes)}; set image_size")
        out = {name: block[name].to_numpy(zero_copy_only=False) for name in block.column_names
               if name != "image"}
        yield {**out, "image": np.stack(tiles)}
