"""`mixture-ray import-images`: an ImageFolder tree (class = folder) as a tile store, one tile per image."""

from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import ray
from PIL import Image, UnidentifiedImageError

from mixture_ray.errors import ManifestError
from mixture_ray.ray_runtime import ensure_ray
from mixture_ray.store.codec import background_fraction, encode_tile
from mixture_ray.store.folder import StageFolder
from mixture_ray.store.schemas import TILE_SCHEMA
from mixture_ray.tile.report import TilingReport

if TYPE_CHECKING:
    from mixture_ray.report import Failure
    from mixture_ray.tile.config import ImportImagesConfig, StoredPixels

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})


def list_image_folder(root: Path) -> list[dict[str, Any]]:
    """One record per file under ``root/<class>/`` (any depth above the class folder)."""
    if not root.is_dir():
        raise ManifestError(f"image folder {root}: not a folder")
    records = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            continue  # files at the top have no class folder
        records.append(
            {
                "slide_id": rel.with_suffix("").as_posix(),
                "path": str(path),
                "label": rel.parts[-2],
                "split": rel.parts[0] if len(rel.parts) > 2 else None,
            }
        )
    if not records:
        raise ManifestError(
            f"image folder {root}: no files in class sub-folders (expected ROOT/<class>/<image>)"
        )
    return records


def _load(record: dict[str, Any]) -> np.ndarray:
    path = Path(record["path"])
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(
            f"{path}: not an image file (suffix {path.suffix or 'none'}); remove it from the tree"
        )
    try:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: cannot decode the image ({exc}); remove or re-export it") from exc
    side = min(rgb.shape[:2])
    top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    return rgb[top : top + side, left : left + side]


def import_batch(batch: pa.Table, pixels: StoredPixels) -> pa.Table:
    """Decode, square-crop and re-encode each image; failures become error rows."""
    columns: dict[str, list[Any]] = {k: [] for k in ("tile_size", "background_fraction", "image", "error")}
    for record in batch.to_pylist():
        try:
            rgb = _load(record)
            columns["tile_size"].append(rgb.shape[0])
            columns["background_fraction"].append(background_fraction(rgb, pixels.background_threshold))
            columns["image"].append(encode_tile(rgb, pixels.encoding, pixels.jpeg_quality))
            columns["error"].append(None)
        except ValueError as exc:
            columns["tile_size"].append(0)
            columns["background_fraction"].append(float("nan"))
            columns["image"].append(None)
            columns["error"].append(str(exc))
    n = batch.num_rows
    ids = batch["slide_id"]
    return pa.table(
        {
            "slide_id": ids,
            "case_id": ids,
            "magnification": pa.nulls(n, pa.float32()),
            "mpp": pa.nulls(n, pa.float32()),
            "level": pa.array(np.zeros(n, np.int16)),
            "x": pa.array(np.zeros(n, np.int64)),
            "y": pa.array(np.zeros(n, np.int64)),
            "tile_size": pa.array(columns["tile_size"], pa.int32()),
            "size_level0": pa.array(columns["tile_size"], pa.int32()),
            "background_fraction": pa.array(columns["background_fraction"], pa.float32()),
            "encoding": pa.array([pixels.encoding] * n, pa.string()),
            "image": pa.array(columns["image"], pa.binary()),
            "label": batch["label"],
            "split": batch["split"],
            "source": batch["path"],
            "error": pa.array(columns["error"], pa.string()),
        },
        schema=TILE_SCHEMA,
    )


def run_import(cfg: ImportImagesConfig) -> TilingReport:
    """Import the image folder ``cfg.images`` into the tile store ``cfg.out_dir`` (resumable).

    Args:
        cfg: the import settings.

    Returns:
        The report: images requested, skipped (committed earlier), committed, and failed.

    Example:
        >>> from mixture_ray.config import build_config
        >>> from mixture_ray.tile.config import ImportImagesConfig
        >>> run_import(build_config(ImportImagesConfig, {"images": "tiles/", "out_dir": "store"}))
    """
    records = list_image_folder(cfg.images)
    store = StageFolder(cfg.out_dir, stage="import-images", item_column="slide_id")
    pixels = cfg.pixels()
    store.prepare({"from_images": str(cfg.images), **dataclasses.asdict(pixels)})
    done = store.committed_items()
    todo = [r for r in records if r["slide_id"] not in done]
    ensure_ray()
    failures: list[Failure] = []
    for start in range(0, len(todo), cfg.images_per_commit):
        chunk = todo[start : start + cfg.images_per_commit]
        tmp = store.new_tmp_dir()
        (
            ray.data.from_items(chunk)
            .map_batches(
                functools.partial(import_batch, pixels=pixels), batch_size=cfg.batch_size,
                batch_format="pyarrow",
            )
            .write_parquet(str(tmp))
        )
        failures.extend(store.commit(tmp, {r["slide_id"]: r["path"] for r in chunk}).failures)
    return TilingReport.finish(store, requested=[r["slide_id"] for r in records],
                               skipped=len(records) - len(todo), failures=failures, config=cfg)
