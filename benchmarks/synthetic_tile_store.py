"""A synthetic tile store of N small tiles, written through the store's own writer API (no slide, no Ray).

N JPEG tiles of ``TILE`` px at 20x (a pool of ``DISTINCT_TILES`` encoded H&E-coloured tiles, reused),
about ``TILES_PER_SLIDE`` per slide (at least 8 slides), written as the tile stage writes them: parts
of ``slide_stream.PART_ROWS`` rows in a staging folder, each reported to a ``PartLedger`` with the
counts a writer task returns (so commits carry markers with rows per slide and magnification, and
slides span parts), then ``StageFolder.finish`` (``_index.json``, ``_SUCCESS``). The result is a
complete store that ``mixture-ray pretrain`` (or any stage reading tiles) accepts.

    >>> build_store(Path("bench_out/store_500000"), 500_000)  # reused when already there
"""

from __future__ import annotations

import json
import shutil
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from pathlib import Path

TILE = 32
MAGNIFICATION = 20.0
TILES_PER_SLIDE = 4_500
DISTINCT_TILES = 4_096
#: Bump when the synthetic store changes: a cached store with another version is rebuilt.
STORE_VERSION = 1


def store_settings(n: int) -> dict[str, Any]:
    """The tile stage's data settings for the synthetic store, plus what makes it synthetic."""
    return {"magnifications": [MAGNIFICATION], "tile_size": TILE, "stride": 0, "background_threshold": 220,
            "max_background": 0.9, "max_tiles_per_slide": 0, "encoding": "jpeg", "jpeg_quality": 90,
            "seed": 0, "qc": None, "synthetic": {"benchmark": "bench_pretrain_feed", "tiles": n,
                                                 "distinct_tiles": DISTINCT_TILES, "version": STORE_VERSION}}


def tile_pool(count: int, seed: int = 0) -> pa.Array:
    """``count`` JPEG tiles of TILE px: a coarse mix of eosin, haematoxylin and background, with noise."""
    from mixture_ray.store.codec import encode_tile

    rng = np.random.default_rng(seed)
    stains = np.array([[215.0, 120.0, 185.0], [110.0, 60.0, 150.0], [238.0, 225.0, 232.0]])
    tiles = []
    for _ in range(count):
        coarse = rng.dirichlet(np.full(3, 0.7), size=(4, 4)) @ stains
        image = coarse.repeat(TILE // 4, 0).repeat(TILE // 4, 1) + rng.normal(0.0, 12.0, (TILE, TILE, 3))
        tiles.append(encode_tile(np.clip(image, 0, 255).astype(np.uint8), "jpeg", 90))
    return pa.array(tiles, pa.binary())


def slide_sizes(n: int) -> list[int]:
    """Tiles per slide: about TILES_PER_SLIDE each, at least 8 slides."""
    slides = max(8, round(n / TILES_PER_SLIDE))
    q, r = divmod(n, slides)
    return [q + 1] * r + [q] * (slides - r)


def part_rows(rows: np.ndarray, slide: np.ndarray, within: np.ndarray, pool: pa.Array) -> pa.Table:
    """The tile-store rows ``rows`` (global indices) of slides ``slide``, ``within`` their slide."""
    from mixture_ray.store.schemas import TILE_SCHEMA

    k = len(rows)
    return pa.table({
        "slide_id": [f"s{i:05d}" for i in slide], "case_id": [f"c{i:05d}" for i in slide],
        "magnification": np.full(k, MAGNIFICATION, np.float32), "mpp": np.full(k, 0.5, np.float32),
        "level": np.zeros(k, np.int16), "x": (within // 128) * TILE, "y": (within % 128) * TILE,
        "tile_size": np.full(k, TILE, np.int32), "size_level0": np.full(k, TILE, np.int32),
        "background_fraction": np.full(k, 0.05, np.float32), "encoding": ["jpeg"] * k,
        "image": pool.take(pa.array((rows * 7919) % len(pool))), "label": pa.nulls(k, pa.string()),
        "split": pa.nulls(k, pa.string()), "source": ["synthetic"] * k, "error": pa.nulls(k, pa.string()),
    }, schema=TILE_SCHEMA)


def part_counts(slide: np.ndarray, sizes: list[int]) -> pa.Table:
    """What a tile writer task reports for one part (``slide_stream.write_part``'s counts)."""
    from mixture_ray.store.slide_stream import COUNT_SCHEMA

    ids, counts = np.unique(slide, return_counts=True)
    n = [int(c) for c in counts]
    return pa.table({"slide_id": [f"s{i:05d}" for i in ids], "consumed": n, "produced": n,
                     "expected": [sizes[i] for i in ids], "written": n, "errors": [0] * len(n),
                     "first_error": pa.nulls(len(n), pa.string()), "case_id": [f"c{i:05d}" for i in ids],
                     "magnifications": [json.dumps({repr(MAGNIFICATION): c}) for c in n]},
                    schema=COUNT_SCHEMA)


def build_store(root: Path, n: int) -> dict[str, Any]:
    """A complete tile store of ``n`` tiles at ``root``; one already there with the same settings is kept."""
    from mixture_ray.locations import Location
    from mixture_ray.store.folder import SUCCESS, read_settings
    from mixture_ray.store.slide_stream import PART_ROWS
    from mixture_ray.store.store_index import read_index

    settings, sizes = store_settings(n), slide_sizes(n)
    reused = bool((root / SUCCESS).exists() and read_settings(root) == json.loads(json.dumps(settings))
                  and sum(e.rows for e in read_index(Location.of(root)).slides.values()) == n)
    start = time.perf_counter()
    if not reused:
        shutil.rmtree(root, ignore_errors=True)
        write_store(root, settings, sizes)
    return {"tiles": n, "slides": len(sizes), "parts": -(-n // PART_ROWS), "part_rows": PART_ROWS,
            "tile_px": TILE, "distinct_tiles": DISTINCT_TILES, "path": str(root), "reused": reused,
            "build_s": None if reused else time.perf_counter() - start,
            "bytes": sum(f.stat().st_size for f in root.glob("chunk-*/*.parquet"))}


def write_store(root: Path, settings: dict[str, Any], sizes: list[int]) -> None:
    """Parts of PART_ROWS rows through the tile stage's writer API: StageFolder, PartLedger, finish."""
    from mixture_ray.store.folder import StageFolder
    from mixture_ray.store.part_ledger import PartLedger
    from mixture_ray.store.slide_stream import PART_ROWS

    n, names = sum(sizes), [f"s{i:05d}" for i in range(len(sizes))]
    store = StageFolder(root, stage="tile", item_column="slide_id")
    store.prepare(settings)
    ledger = PartLedger(store, sources=dict.fromkeys(names, "synthetic"),
                        expected=dict(zip(names, sizes, strict=True)))
    staging = store.new_staging()
    pool = tile_pool(DISTINCT_TILES)
    slide_of = np.repeat(np.arange(len(sizes)), sizes)
    within = np.arange(n) - np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)
    for p, first in enumerate(range(0, n, PART_ROWS)):
        rows = np.arange(first, min(n, first + PART_ROWS))
        part = staging / f"part-bench-{p:06d}.parquet"
        part.write_parquet(part_rows(rows, slide_of[rows], within[rows], pool))
        ledger.add(part, part_counts(slide_of[rows], sizes))
    failures = ledger.close(None)
    shutil.rmtree(staging.path, ignore_errors=True)
    if not store.finish(requested=names, failures=failures, extra={"config": settings, "excluded_by_qc": {}}):
        raise SystemExit(f"bench_pretrain_feed: the synthetic store {root} is incomplete: {failures[:3]}")
