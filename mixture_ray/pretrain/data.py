"""Decoded tiles for MoCo pretraining (store.tiles reads them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mixture_ray.errors import ConfigError
from mixture_ray.store.folder import committed_locations
from mixture_ray.store.tiles import decode_image_batch, tile_rows

if TYPE_CHECKING:
    import ray

    from mixture_ray.pretrain.config import PretrainConfig


def tile_dataset(cfg: PretrainConfig) -> ray.data.Dataset:
    """Decoded tiles for training; materialised in the object store when ``cache_tiles``."""
    files = committed_locations(cfg.tiles)
    if not files:
        raise ConfigError(f"tiles: {cfg.tiles} holds no tiles")
    ds = tile_rows(files, ["image"], cfg.magnification)
    ds = ds.map_batches(decode_image_batch, batch_format="numpy", batch_size=256)
    if cfg.cache_tiles:
        ds = ds.materialize()
    n = ds.count()
    if n < cfg.batch_size * cfg.train.workers:
        where = f" at magnification {cfg.magnification}" if cfg.magnification is not None else ""
        raise ConfigError(
            f"tiles: {cfg.tiles} has {n} tiles with pixels{where}, fewer than one step needs "
            f"(batch_size {cfg.batch_size} x train.workers {cfg.train.workers})"
        )
    return ds
