"""Ray task bodies of the per-slide formats: each writes the files of one group of slides.

A task gets a plan (what the driver decided once for the cohort: classes, colours, measurements,
tile step) and a group of slides with the parts of each store that hold them. It reads those
slides' rows only (:mod:`mixture_ray.export.tables`), writes their QuPath GeoJSON, TRIDENT .h5 or
OME-TIFF heatmaps, and returns a :class:`GroupResult`: counts and the slides that failed, never rows.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mixture_ray.export.h5_coords import coords_attributes, trident_folder, write_coords
from mixture_ray.export.heatmaps import heatmap_grid, write_heatmap
from mixture_ray.export.nmf_tiles import AppliedNmf
from mixture_ray.export.qupath import slide_features, write_feature_collection
from mixture_ray.export.slide_groups import mag_key
from mixture_ray.export.tables import (
    KEY,
    cluster_column,
    cluster_table,
    embedding_rows,
    prediction_rows,
    tile_geometry,
)
from mixture_ray.report import Failure
from mixture_ray.store.schemas import TILE_ID_COLUMNS, magnification_label

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Files are written per slide and magnification.
SLIDE_MAG = ["slide_id", "magnification"]


@dataclasses.dataclass(frozen=True)
class GroupResult:
    """What a task returns: files written, rows (tiles) exported, and the slides that failed."""

    files: int = 0
    rows: int = 0
    failures: tuple[Failure, ...] = ()


@dataclasses.dataclass(frozen=True)
class QupathPlan:
    """A QuPath export: classes from predictions (``k`` None) or from the clustering with ``k``."""

    out: Path
    classes: tuple[str, ...]
    colours: dict[str, tuple[int, int, int]]
    measurements: dict[str, str]
    several: bool
    clusters: dict[int, list[Path]] | None
    k: int | None
    nmf: AppliedNmf | None


@dataclasses.dataclass(frozen=True)
class H5Plan:
    """A TRIDENT .h5 export: tile geometry, and the embedding column and magnifications for features."""

    root: Path
    tile_size: int
    overlap: int
    backend: str
    encoder: str
    embedding: str
    embedded: frozenset[str]


@dataclasses.dataclass(frozen=True)
class HeatmapPlan:
    """A finding heatmap export: the classes, the tile step (px) and the slide reader backend."""

    out: Path
    classes: tuple[str, ...]
    step: int
    backend: str


def qupath_slides(plan: QupathPlan, slides: Sequence[str], predictions: Sequence[str] | None,
                  tiles: Sequence[str] | None) -> GroupResult:
    """Task body: one GeoJSON per slide (and magnification) of ``slides``."""
    if plan.k is None:
        assert predictions is not None
        rows = prediction_rows(predictions, slides, plan.classes)
        class_column = "finding"
    else:
        assert plan.clusters is not None and tiles is not None
        chosen = cluster_column(plan.k)
        clusters = cluster_table({plan.k: plan.clusters[plan.k]}, slides)
        rows = tile_geometry(tiles, slides).merge(clusters, on=KEY, validate="one_to_one")
        rows = rows[rows[chosen] >= 0]
        rows["cluster"] = [f"cluster {c}" for c in rows[chosen]]
        class_column = "cluster"
    if plan.clusters is not None:
        extra = {k: f for k, f in plan.clusters.items() if cluster_column(k) not in rows}
        if extra:
            rows = rows.merge(cluster_table(extra, slides), on=KEY, how="left", validate="one_to_one")
        for column in [c for c in rows.columns if c.startswith("cluster_k")]:
            rows[column] = rows[column].fillna(-1)
    files = 0
    for (slide_id, mag), part in rows.groupby(SLIDE_MAG, dropna=False, sort=True):
        name = f"{slide_id}_{magnification_label(_magnification(mag))}" if plan.several else str(slide_id)
        if plan.nmf is not None:
            part = part.assign(**plan.nmf.tile_means(str(slide_id), part))
        features = slide_features(part, class_column=class_column, colours=plan.colours,
                                  measurement_columns=plan.measurements)
        write_feature_collection(plan.out / f"{name}.geojson", features)
        files += 1
    return GroupResult(files, len(rows))


def _magnification(value: object) -> float | None:
    """A group key as a magnification: None for a missing one (imported images)."""
    number = float(str(value))
    return None if math.isnan(number) else number


def _level0(source: str, backend: str) -> tuple[tuple[tuple[int, int], ...], tuple[float, ...]]:
    """Level sizes and downsamples of a slide file, read with the tiling's backend (its levels)."""
    from mixture_ray.slides import open_slide

    reader = open_slide(str(source), backend)
    try:
        return reader.level_dimensions, reader.level_downsamples
    finally:
        reader.close()


def h5_slides(plan: H5Plan, slides: Sequence[str], tiles: Sequence[str],
              embeddings: Sequence[str] | None) -> GroupResult:
    """Task body: per slide and magnification of ``slides``, the coordinates (and features) .h5."""
    geometry = tile_geometry(tiles, slides)
    lookup: pd.Series | None = None
    matrix = np.zeros((0, 0), np.float32)
    if embeddings is not None:
        keys, matrix = _embeddings(embeddings, slides, plan)
        lookup = pd.Series(np.arange(len(keys), dtype=float), index=pd.MultiIndex.from_frame(keys[KEY]))
    failures: list[Failure] = []
    files = 0
    for (slide_id, group_mag), rows in geometry.groupby(SLIDE_MAG, dropna=False, sort=True):
        source, mag = str(rows.source.iloc[0]), _magnification(group_mag)
        if mag is None:
            failures.append(Failure(str(slide_id), source, "h5: imported images have no slide geometry"))
            continue
        folder = plan.root / trident_folder(mag, plan.tile_size, plan.overlap)
        try:
            dims, downsamples = _level0(source, plan.backend)
            attrs = coords_attributes(
                slide_id=str(slide_id), savetodir=str(folder / "patches"), patch_size=plan.tile_size,
                patch_size_level0=int(rows.size_level0.iloc[0]), target_magnification=mag,
                overlap=plan.overlap, level=int(rows.level.iloc[0]), level_dimensions=dims,
                level_downsamples=downsamples)
        except Exception as exc:  # one slide that cannot be read must not stop the others
            failures.append(Failure(str(slide_id), source, f"h5: {exc}"))
            continue
        coords = rows[["x", "y"]].to_numpy(np.int64)
        write_coords(folder / "patches" / f"{slide_id}_patches.h5", coords, attrs)
        files += 1
        if lookup is not None and mag_key(mag) in plan.embedded:  # features where that magnification was
            index = lookup.reindex(pd.MultiIndex.from_frame(rows[KEY])).to_numpy()
            if np.isnan(index).any():
                failures.append(Failure(str(slide_id), source, "h5: some tiles have no embedding"))
                continue
            encoder = plan.encoder  # embedded
            write_coords(folder / f"features_{encoder}" / f"{slide_id}.h5", coords, attrs,
                         features=matrix[index.astype(np.int64)], encoder=encoder)
            files += 1
    return GroupResult(files, len(geometry), tuple(failures))


def _embeddings(files: Sequence[str], slides: Sequence[str], plan: H5Plan) -> tuple[pd.DataFrame, np.ndarray]:
    """Keys and embeddings of ``slides`` at every magnification embedded."""
    parts = [embedding_rows(files, slides, plan.embedding, key) for key in sorted(plan.embedded)]
    keys = (pd.concat([k for k, _ in parts], ignore_index=True) if parts
            else pd.DataFrame(columns=list(TILE_ID_COLUMNS)))
    found = [m for k, m in parts if len(k)]
    return keys, (np.concatenate(found) if found else np.zeros((0, 0), np.float32))


def finding_heatmap_slides(plan: HeatmapPlan, slides: Sequence[str], predictions: Sequence[str],
                           tiles: Sequence[str]) -> GroupResult:
    """Task body: per slide of ``slides`` and finding, ``<slide_id>/<finding>.ome.tif``."""
    rows = prediction_rows(predictions, slides, plan.classes)
    rows = rows[rows["magnification"].notna()]  # imported images have no slide to map onto
    geometry = tile_geometry(tiles, slides)[[*KEY, "mpp", "tile_size", "source"]]
    rows = rows.merge(geometry, on=KEY, validate="one_to_one")
    failures: list[Failure] = []
    files = 0
    for slide_id, part in rows.groupby("slide_id", sort=True):
        source = str(part.source.iloc[0])
        try:
            dims = _level0(source, plan.backend)[0]
        except Exception as exc:  # one slide that cannot be opened must not stop the others
            failures.append(Failure(str(slide_id), source, f"heatmaps: {exc}"))
            continue
        tile_size = int(part.tile_size.iloc[0])
        cell = max(1, round(int(part.size_level0.iloc[0]) * plan.step / tile_size))
        mpp = float(part.mpp.iloc[0]) * plan.step
        for finding in plan.classes:
            grid = heatmap_grid(part, part[f"p_{finding}"].to_numpy(), dims[0], cell)
            path = plan.out / str(slide_id) / f"{finding}.ome.tif"
            write_heatmap(path, grid, mpp, f"{slide_id}: {finding}")
            files += 1
    return GroupResult(files, len(rows), tuple(failures))


def nmf_heatmap_slides(explain: Path, slides: Sequence[str], ks: Sequence[int], grid_mpp: float,
                       out: Path) -> GroupResult:
    """Task body: per slide of ``slides``, K and class, ``<slide_id>/nmf_k<K>_class<c>.ome.tif``.

    The value is ``1 + round(254 w / max w)`` over the slide's covered cells (0 where uncovered).
    """
    files = 0
    for slide_id in slides:
        meta = json.loads((explain / "grids" / slide_id / "meta.json").read_text())
        covered = np.load(explain / "grids" / slide_id / "count.npy") > 0
        for k in ks:
            weights = np.load(explain / "apply" / slide_id / f"k{k}_weights.npy")
            for c in range(int(k)):
                w = np.where(covered, weights[..., c], 0.0)
                top = float(w.max())
                scaled = np.round(254 * w / top) if top > 0 else np.zeros_like(w)
                grid = np.where(covered, 1 + scaled, 0).astype(np.uint8)
                write_heatmap(out / slide_id / f"nmf_k{k}_class{c}.ome.tif", grid, grid_mpp * meta["cell_px"],
                              f"{slide_id}: NMF K={k} class {c} (weight / {top:.4g})")
                files += 1
    return GroupResult(files)
