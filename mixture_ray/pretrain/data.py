"""The pretraining feed: the tile store's parts and row count from its index, streamed per epoch.

Nothing is read or decoded on the driver: the parts holding tiles at the chosen magnification,
and how many tiles they hold, come from the store's index (:func:`mixture_ray.model_input.plan.plan_rows`).
The workers stream the parts in a seeded order per epoch (:mod:`mixture_ray.model_input.feed`).
With ``cache_tiles`` the decoded tiles are kept in Ray's object store, one dataset per part, but
only when they fit in half of it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

from mixture_ray.errors import ConfigError
from mixture_ray.model_input.feed import TrainingFeed, read_part
from mixture_ray.model_input.plan import RowFilter, plan_rows
from mixture_ray.store.folder import read_settings

if TYPE_CHECKING:
    import ray

    from mixture_ray.pretrain.config import PretrainConfig

#: Share of the object store a tile cache may fill.
CACHE_SHARE = 0.5


def tile_feed(cfg: PretrainConfig) -> TrainingFeed:
    """The pretraining feed of ``cfg.tiles``, cached in the object store when asked and it fits.

    Raises:
        ConfigError: naming the store, when it holds fewer tiles than one step needs, or
            when ``cache_tiles`` asks for more bytes than the object store can spare.
    """
    plan = plan_rows(cfg.tiles, RowFilter(magnification=cfg.magnification), done=())
    rows = sum(plan.expected.values())
    if rows < cfg.batch_size * cfg.train.workers:
        where = f" at magnification {cfg.magnification}" if cfg.magnification is not None else ""
        raise ConfigError(
            f"tiles: {cfg.tiles} has {rows} tiles with pixels{where}, fewer than one step needs "
            f"(batch_size {cfg.batch_size} x train.workers {cfg.train.workers})"
        )
    feed = TrainingFeed(files=tuple(plan.files), rows=rows, rule=RowFilter(magnification=cfg.magnification),
                        seed=cfg.seed, memory_bytes=cfg.feed_memory_mb << 20,
                        slices=TrainingFeed.slices_for(len(plan.files), cfg.train.workers))
    if not cfg.cache_tiles:
        return feed
    check_cache_fits(cfg, rows)
    return dataclasses.replace(feed, cached=cache_parts(feed))


def check_cache_fits(cfg: PretrainConfig, rows: int) -> None:
    """Refuse ``cache_tiles`` when the decoded tiles would fill more than half the object store.

    Raises:
        ConfigError: naming the estimated bytes (tiles x edge x edge x 3) and the object store's.
    """
    from mixture_ray.ray_runtime import cluster_resources

    side = int(read_settings(cfg.tiles).get("tile_size", 280))
    need = rows * side * side * 3
    store = float(cluster_resources().get("object_store_memory", 0.0))
    if need > CACHE_SHARE * store:
        raise ConfigError(
            f"cache_tiles: the {rows} decoded tiles of {cfg.tiles} ({side} x {side} x 3 bytes each) need "
            f"about {need / 2**30:.2f} GiB, more than {CACHE_SHARE:.0%} of Ray's object store "
            f"({store / 2**30:.2f} GiB); set cache_tiles: false to stream them"
        )


def cache_parts(feed: TrainingFeed) -> tuple[ray.data.Dataset, ...]:
    """Each read unit's decoded tiles (in the order of epoch 0), materialised in the object store."""
    import ray.data

    cached = []
    for unit in range(len(feed.units())):
        read = functools.partial(read_part, seed=feed.seed, epoch=0, rule=feed.rule, keys=None,
                                 slices=feed.slices, image_size=feed.image_size, block_rows=feed.block_rows)
        items = ray.data.from_items([feed.unit_item(unit)], override_num_blocks=1)
        cached.append(items.map_batches(read, batch_size=1, batch_format="numpy").materialize())
    return tuple(cached)


def tile_dataset(cfg: PretrainConfig) -> ray.data.Dataset:
    """Every decoded tile of the feed, in the order one worker streams in epoch 0 (checks and tools)."""
    return tile_feed(cfg).dataset(0)
