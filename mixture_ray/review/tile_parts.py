"""The review's reads of a tile store: only the parts that hold the wanted slides, one Ray task per part.

A montage needs the pixels of a few sampled tiles. The store's index names the parts of each
slide (:mod:`mixture_ray.store.store_index`), so the wanted keys are grouped by the parts that
hold their slides and each such part is read by one task, which pushes a slide/x/y filter down
to Parquet and returns only the wanted rows' key columns and image bytes. The driver holds the
sample and what the tasks return, never a part or the store, so its memory follows the montage
size, not the number of tiles. Parts are local files or objects of one store (``s3://...``); the
same code reads both through the part's :class:`~mixture_ray.locations.Location`.

At most :data:`READS_IN_FLIGHT` tasks run at once, and results are put back in the store's part
order, so one seed gives the same montages every run. A store whose index lists no parts per slide
(written before the index did) is read from every committed part.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mixture_ray.locations import Location
from mixture_ray.store.folder import require_finished
from mixture_ray.store.schemas import TILE_KEY, TILE_SCHEMA
from mixture_ray.store.store_index import read_index

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Sequence

KEY = list(TILE_KEY)
#: What a read task returns per wanted tile: the key columns and the encoded pixels.
IMAGE_COLUMNS = [*KEY, "image"]
#: Read tasks submitted and not yet collected, at most (each returns only wanted rows).
READS_IN_FLIGHT = 32
SITE = "site"
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class TileParts:
    """The committed part files of a tile store and, per slide, the parts that hold its rows.

    Attributes:
        files: the committed parts, in the store's index order (local paths or objects of one store).
        slide_parts: slide id -> positions in ``files`` of the parts holding its rows (None for a
            slide whose parts the index does not name: any part may hold it); None when the index
            lists no slides (every slide may then be in any part).
    """

    files: tuple[Location, ...]
    slide_parts: dict[str, tuple[int, ...] | None] | None = None

    @classmethod
    def open(cls, store: str | os.PathLike[str] | Location) -> TileParts:
        """The parts of a finished tile store (a local folder or an object-store URI).

        Args:
            store: the tile store.

        Returns:
            Its committed parts and the parts of each slide, from its index (no data file read).

        Raises:
            StageIncompleteError: the store has no ``_SUCCESS`` marker.
        """
        where = Location.of(store)
        require_finished(where)
        index = read_index(where)  # read once: it gives the parts and the slides in them
        files = [where / name for name in index.files]
        position = {f.path: i for i, f in enumerate(files)}
        slide_parts: dict[str, tuple[int, ...] | None] = {}
        for slide, entry in index.slides.items():
            found = [position.get((where / name).path) for name in dict.fromkeys(entry.files)]
            named = found and None not in found
            slide_parts[slide] = tuple(sorted(int(p) for p in found if p is not None)) if named else None
        return cls(tuple(files), slide_parts if slide_parts else None)

    @classmethod
    def of_files(cls, files: Iterable[str | os.PathLike[str] | Location]) -> TileParts:
        """Parts given as files only (no index): every slide may be in any of them."""
        return cls(tuple(Location.of(f) for f in files))

    def parts_of(self, slide: str) -> tuple[int, ...] | None:
        """Positions in :attr:`files` of the parts that hold ``slide``.

        Returns:
            The positions (none when the slide is not stored), or None when any part may hold it.
        """
        if self.slide_parts is None:
            return None
        return self.slide_parts.get(slide, ())

    def holding(self, slides: Iterable[str]) -> list[Location]:
        """The parts that hold any of ``slides``, in store order."""
        wanted: set[int] = set()
        for slide in slides:
            parts = self.parts_of(str(slide))
            if parts is None:
                return list(self.files)
            wanted.update(parts)
        return [self.files[p] for p in sorted(wanted)]


def key_strings(
    slide_id: pa.Array | pa.ChunkedArray, x: pa.Array | pa.ChunkedArray, y: pa.Array | pa.ChunkedArray
) -> pa.Array | pa.ChunkedArray:
    """One string per row naming its (slide_id, x, y), for exact set membership in pyarrow."""
    return pc.binary_join_element_wise(slide_id, pc.cast(x, pa.string()), pc.cast(y, pa.string()), "\x1f")


def read_images(
    tile_files: Sequence[str | os.PathLike[str] | Location], keys: pd.DataFrame, batch_rows: int = 256
) -> pa.Table:
    """Key columns and ``image`` of the stored rows whose (slide_id, x, y) is among ``keys``.

    The scan pushes a slide/x/y filter down to Parquet (row groups without a wanted slide or
    coordinate are skipped) and keeps, batch by batch, only the rows whose exact (slide_id, x, y)
    is wanted, so memory holds the wanted tiles and one batch, never a whole slide or the cohort.

    Args:
        tile_files: Parquet files of a tile store (local paths or URIs on one store).
        keys: the wanted tiles (slide_id, x, y; magnification is matched by the caller's join).
        batch_rows: rows per scanned batch.

    Returns:
        slide_id, x, y, magnification and image of the matching rows (every magnification stored
        at a wanted position), in file order.
    """
    locations = [Location.of(f) for f in tile_files]
    if not locations:
        return TILE_SCHEMA.empty_table().select(IMAGE_COLUMNS)
    dataset = ds.dataset([f.path for f in locations], format="parquet", filesystem=locations[0].fs)
    if keys.empty:
        return dataset.schema.empty_table().select(IMAGE_COLUMNS)
    slide_ids = pa.array(keys["slide_id"].astype(str), pa.string())
    xs, ys = pa.array(keys["x"], pa.int64()), pa.array(keys["y"], pa.int64())
    wanted = pc.unique(key_strings(slide_ids, xs, ys))
    expression = (
        pc.field("slide_id").isin(pc.unique(slide_ids))
        & pc.field("x").isin(pc.unique(xs))
        & pc.field("y").isin(pc.unique(ys))
    )
    kept = [dataset.schema.empty_table().select(IMAGE_COLUMNS)]
    for batch in dataset.to_batches(columns=IMAGE_COLUMNS, filter=expression, batch_size=batch_rows):
        mask = pc.is_in(key_strings(batch["slide_id"], batch["x"], batch["y"]), value_set=wanted)
        kept.append(pa.Table.from_batches([batch.filter(mask)]))
    return pa.concat_tables(kept)


def join_images(keys: pd.DataFrame, images: pa.Table) -> pd.DataFrame:
    """``keys`` with the ``image`` of each tile read; a key with no stored tile gets NaN.

    A left join on the tile key, magnification compared as float (NaN == NaN), in ``keys``' order.
    """
    found = images.to_pandas()
    found["magnification"] = found["magnification"].astype("float64")
    wanted = keys.copy()
    wanted["magnification"] = wanted["magnification"].astype("float64")
    return wanted.merge(found, on=KEY, how="left")


def fetch_images(parts: TileParts, keys: pd.DataFrame) -> pd.DataFrame:
    """``keys`` (slide_id, x, y, magnification, ...) with the encoded ``image`` of each tile.

    The keys are grouped by the parts that hold their slides; each part is read in a Ray task
    (:func:`read_images`, only the wanted rows come back) and the rows are put in part order.

    Args:
        parts: the tile store's parts (:meth:`TileParts.open`).
        keys: the wanted tiles, in the order the result keeps.

    Returns:
        ``keys`` with an ``image`` column (bytes, or NaN where the tile is not stored).
    """
    reads = [(str(parts.files[part]), wanted) for part, wanted in _keys_by_part(parts, keys)]
    tables = per_part(_read_part_images, reads)
    images = (pa.concat_tables(tables, promote_options="default") if tables
              else TILE_SCHEMA.empty_table().select(IMAGE_COLUMNS))
    return join_images(keys, images)


def _keys_by_part(parts: TileParts, keys: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """The slide/x/y of the wanted keys, per part that holds their slides, in part order."""
    rows_of_part: dict[int, list[np.ndarray]] = {}
    anywhere: list[np.ndarray] = []  # rows of slides that any part may hold
    for slide, positions in keys.groupby(keys["slide_id"].astype(str), sort=True).indices.items():
        rows = np.asarray(positions, dtype=np.int64)
        held = parts.parts_of(str(slide))  # one step per sampled slide and part, not per tile
        if held is None:
            anywhere.append(rows)
        for part in held or ():
            rows_of_part.setdefault(part, []).append(rows)
    if anywhere:
        for part in range(len(parts.files)):
            rows_of_part.setdefault(part, []).extend(anywhere)
    wanted = keys[["slide_id", "x", "y"]]
    return [(part, wanted.iloc[np.sort(np.concatenate(rows_of_part[part]))].reset_index(drop=True))
            for part in sorted(rows_of_part)]


def _read_part_images(address: str, keys: pd.DataFrame) -> pa.Table:
    """Task body: the wanted rows of one part (see :func:`read_images`)."""
    return read_images([address], keys)


def store_sites(parts: TileParts) -> dict[str, str] | None:
    """Slide id -> site from the tile store's ``site`` column, or None when it has none.

    The first part's schema decides whether there is a column. Every part's ``slide_id`` and
    ``site`` are read in a task, which keeps the first non-null site of each slide; the driver
    keeps, per slide, the one of the first part in store order (the first row of a scan).

    Args:
        parts: the tile store's parts.

    Returns:
        The site of each slide with one (as text, not stripped), or None.
    """
    if not parts.files:
        return None
    first = parts.files[0]
    if SITE not in pq.read_schema(first.path, filesystem=first.fs).names:
        return None
    found = pd.concat(per_part(_part_sites, [(str(f),) for f in parts.files]), ignore_index=True)
    found = found.drop_duplicates("slide_id", keep="first")
    return dict(zip(found["slide_id"], found[SITE], strict=True))


def _part_sites(address: str) -> pd.DataFrame:
    """Task body: the first non-null site of each slide of one part (empty without the column)."""
    where = Location.of(address)
    if SITE not in pq.read_schema(where.path, filesystem=where.fs).names:
        return pd.DataFrame({"slide_id": pd.Series(dtype=object), SITE: pd.Series(dtype=object)})
    table = pq.read_table(where.path, columns=["slide_id", SITE], filesystem=where.fs)
    table = table.filter(pc.and_(pc.is_valid(table["slide_id"]), pc.is_valid(table[SITE])))
    pairs: pd.DataFrame = table.to_pandas().drop_duplicates("slide_id", keep="first").astype(str)
    return pairs


def per_part(task: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
    """Run ``task(*args)`` for each of ``calls`` as a Ray task; results in the order of ``calls``.

    Ray is started (embedded, local) when it is not running. At most :data:`READS_IN_FLIGHT`
    tasks are submitted and not yet collected at any time.
    """
    if not calls:
        return []
    import ray

    from mixture_ray.ray_runtime import ensure_ray

    ensure_ray()
    remote = ray.remote(task).options(num_cpus=1)
    results: dict[int, T] = {}
    in_flight: dict[Any, int] = {}

    def collect_one() -> None:
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        results[in_flight.pop(ready[0])] = ray.get(ready[0])

    for position, args in enumerate(calls):
        while len(in_flight) >= READS_IN_FLIGHT:
            collect_one()
        in_flight[remote.remote(*args)] = position
    while in_flight:
        collect_one()
    return [results[position] for position in range(len(calls))]
