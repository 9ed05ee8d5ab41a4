"""Ray Data stages that turn metadata rows into tile pixels.

``SlideCoordinates`` expands manifest rows into tile coordinates (or one failure row per
slide); ``TilePixelReader`` is the actor that reads, filters and encodes pixels, keeping a
few slides open so each slide is opened once per worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from PIL import Image

from mixture_ray.errors import MixtureRayError
from mixture_ray.faults import crash_once
from mixture_ray.locations import is_uri
from mixture_ray.slides.factory import open_slide
from mixture_ray.slides.open_cache import OpenSlides
from mixture_ray.store.codec import background_fraction, encode_tile
from mixture_ray.store.schemas import TILE_SCHEMA
from mixture_ray.store.slide_stream import SLIDE_ROWS
from mixture_ray.tile.coords import failure_row, slide_coordinates

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mixture_ray.tile.config import StoredPixels, TileConfig


def describe(exc: BaseException) -> str:
    """One-line error text for a failures table."""
    if isinstance(exc, MixtureRayError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class SlideCoordinates:
    """``map_batches`` callable: manifest rows -> blocks of tile metadata rows.

    Each slide's rows carry ``_slide_rows`` (how many the slide has), so the writer's counts tell
    the driver when the slide is finished; blocks hold at most ``block_rows`` rows, so pixel
    reading starts on a slide's first block while its other blocks wait in the stream.
    """

    def __init__(self, cfg: TileConfig, block_rows: int = 256) -> None:
        self.cfg = cfg
        self.block_rows = block_rows

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        """Tile metadata blocks for each manifest row's slide (a failure row where it cannot be read)."""
        crash_once("tile.coordinates")
        for table in self.slide_tables(batch):
            totals = pa.array(np.full(table.num_rows, table.num_rows, np.int64))
            table = table.append_column(SLIDE_ROWS, totals)
            for start in range(0, table.num_rows, self.block_rows):
                yield table.slice(start, self.block_rows)

    def slide_tables(self, batch: pa.Table) -> list[pa.Table]:
        """One metadata table per manifest row of ``batch``."""
        tables = []
        for row in batch.to_pylist():
            slide_id, case_id, path = row["slide_id"], row["case_id"], row["path"]
            mpp = row.get("mpp")
            try:
                reader = open_slide(str(path), self.cfg.backend)
                try:
                    tables.append(
                        slide_coordinates(
                            reader,
                            slide_id=slide_id,
                            case_id=case_id,
                            manifest_mpp=mpp if mpp is not None and mpp == mpp else None,
                            cfg=self.cfg,
                            flagged=flagged_regions(row),
                            source=str(path) if is_uri(str(path)) else None,
                        )
                    )
                finally:
                    reader.close()
            except Exception as exc:
                tables.append(
                    failure_row(slide_id=slide_id, case_id=case_id, source=path, error=describe(exc))
                )
        return tables


def flagged_regions(row: dict[str, Any]) -> tuple[np.ndarray, float] | None:
    """The QC flagged-region mask of a manifest record (``qc_mask``, ``qc_downsample``), if any."""
    path = row.get("qc_mask") or ""
    if not path:
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 127, float(row["qc_downsample"])


def pixel_reader_kwargs(cfg: TileConfig) -> dict[str, Any]:
    """The few settings a :class:`TilePixelReader` takes, from the tiling config."""
    return {"pixels": cfg.pixels(), "tile_size": cfg.tile_size, "max_background": cfg.max_background,
            "backend": cfg.backend, "tile_cache_mb": cfg.tile_cache_mb}


class TilePixelReader:
    """Actor: read each tile's pixels, apply the exact background rule, encode."""

    def __init__(self, pixels: StoredPixels, *, tile_size: int, max_background: float, backend: str,
                 tile_cache_mb: int, max_open_slides: int = 4) -> None:
        self.pixels, self.tile_size, self.max_background = pixels, tile_size, max_background
        self.slides = OpenSlides(backend, tile_cache_bytes=tile_cache_mb << 20, max_open=max_open_slides)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Read, resize and encode each tile; drop background tiles; keep error rows."""
        crash_once("tile.pixels")
        spec = self.pixels
        rows = batch.to_pylist()
        keep: list[int] = []
        images: list[bytes | None] = []
        fractions: list[float] = []
        errors: list[str | None] = []
        for i, row in enumerate(rows):
            if row["error"] is not None:
                keep.append(i)
                images.append(None)
                fractions.append(float("nan"))
                errors.append(row["error"])
                continue
            try:
                pixels = self.slides.read_tile(row["source"], level=row["level"], x=row["x"], y=row["y"],
                                               read_size=row["read_size"], tile_size=self.tile_size)
                fraction = background_fraction(pixels, spec.background_threshold)
                if fraction > self.max_background:
                    continue
                image = encode_tile(pixels, spec.encoding, spec.jpeg_quality)
                error = None
            except Exception as exc:
                image, fraction, error = (
                    None,
                    float("nan"),
                    f"tile at ({row['x']}, {row['y']}): {describe(exc)}",
                )
            keep.append(i)
            images.append(image)
            fractions.append(fraction)
            errors.append(error)
        kept = batch.take(pa.array(keep, pa.int64()))
        n = len(keep)
        return pa.table(
            {
                "slide_id": kept["slide_id"],
                "case_id": kept["case_id"],
                "magnification": kept["magnification"],
                "mpp": kept["mpp"],
                "level": kept["level"],
                "x": kept["x"],
                "y": kept["y"],
                "tile_size": kept["tile_size"],
                "size_level0": kept["size_level0"],
                "background_fraction": pa.array(np.asarray(fractions, np.float32)),
                "encoding": pa.array([spec.encoding] * n, pa.string()),
                "image": pa.array(images, pa.binary()),
                "label": pa.nulls(n, pa.string()),
                "split": pa.nulls(n, pa.string()),
                "source": kept["source"],
                "error": pa.array(errors, pa.string()),
            },
            schema=TILE_SCHEMA,
        )

    def __del__(self) -> None:
        self.slides.close()
