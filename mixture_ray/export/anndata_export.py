"""The AnnData export: one ``.h5ad`` per magnification, its rows built in Ray tasks and streamed to disk.

Rows are in tile-key order (slide, y, x), as :func:`mixture_ray.store.embeddings.load_embeddings`
gives them. The embedding store's index gives each slide's rows at the magnification, hence each
slide's offset in the file, before any row is read. Groups of slides (part by part) are read in
Ray tasks that join their tiles' geometry, cluster ids and findings and return the obs block and
the features; the driver writes each slide's rows at its offset as the blocks arrive
(:class:`~mixture_ray.export.anndata_file.H5adWriter`), holding at most :data:`BLOCKS_IN_FLIGHT`
blocks of :data:`BLOCK_ROWS` rows.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.export.anndata_file import H5adWriter, obs_names
from mixture_ray.export.slide_groups import UNKNOWN, StoreSlides, key_value, ordered_map
from mixture_ray.export.tables import (
    KEY,
    cluster_files,
    cluster_table,
    embedding_rows,
    findings,
    label,
    tile_geometry,
)
from mixture_ray.store.folder import read_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from mixture_ray.export.config import ExportConfig

#: Rows of a block (a group of slides of one magnification) read by one task.
BLOCK_ROWS = 20_000
#: Blocks submitted and not yet written, at most: the driver holds no more rows than these.
BLOCKS_IN_FLIGHT = 4


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """What every block of one file joins: the embedding column and the clusterings."""

    embedding: str
    clusters: dict[int, list[Path]] | None


def anndata_block(plan: BlockPlan, slides: Sequence[str], mag: str, embeddings: Sequence[str],
                  tiles: Sequence[str] | None,
                  predictions: Sequence[str] | None) -> tuple[pd.DataFrame, np.ndarray]:
    """Task body: the obs rows and features of ``slides`` at the magnification key ``mag``.

    Returns:
        obs (slide_id, case_id, x, y, magnification, mpp, [size_level0], [cluster_k<k>...],
        [finding]) sorted by slide, y, x and named by :func:`obs_names`, and the (rows, n_features)
        float32 features.
    """
    obs, matrix = embedding_rows(embeddings, slides, plan.embedding, mag)
    if tiles is not None:
        geometry = tile_geometry(tiles, slides)[[*KEY, "mpp", "size_level0"]]
        obs = obs.merge(geometry, on=KEY, how="left", validate="one_to_one")
    else:
        obs["mpp"] = 10.0 / obs["magnification"]
    if plan.clusters is not None:
        obs = obs.merge(cluster_table(plan.clusters, slides), on=KEY, how="left", validate="one_to_one")
        ks = [c for c in obs.columns if c.startswith("cluster_k")]
        obs[ks] = obs[ks].fillna(-1).astype("int32")
    if predictions is not None:
        found = findings(predictions, slides)
        obs = obs.merge(found, on=KEY, how="left", validate="one_to_one")
        obs["finding"] = obs["finding"].fillna("unclassified").astype(str)
    obs.index = obs_names(obs)
    return obs, matrix


def export_anndata(cfg: ExportConfig) -> list[str]:
    """One ``.h5ad`` per magnification under ``out_dir/anndata``; the report lines."""
    assert cfg.embeddings is not None
    embedded = StoreSlides.open(cfg.embeddings)
    tiles = StoreSlides.open(cfg.tiles) if cfg.tiles is not None else None
    predictions = StoreSlides.open(cfg.predictions) if cfg.predictions is not None else None
    clusters = cluster_files(cfg.clusters) if cfg.clusters is not None else None
    plan = BlockPlan(cfg.embedding, clusters)
    provenance = {"embeddings": str(cfg.embeddings), "embedding": cfg.embedding,
                  "embedding_settings": read_settings(cfg.embeddings),
                  "clusters": str(cfg.clusters), "predictions": str(cfg.predictions)}
    lines = []
    for mag in sorted(embedded.mag_keys(), key=lambda m: -1.0 if m == UNKNOWN else float(m)):
        value = key_value(mag)
        path = Path(cfg.out_dir) / "anndata" / f"embeddings_{label(value)}.h5ad"
        rows = {s: e.magnifications[mag] for s, e in embedded.slides.items() if mag in e.magnifications}
        starts = dict(zip(rows, itertools.accumulate(rows.values(), initial=0), strict=False))
        writer = H5adWriter(path, sum(rows.values()),
                            {**provenance, "magnification": float("nan") if value is None else value})
        groups = embedded.groups(BLOCK_ROWS, mag)
        calls = [(plan, g, mag, embedded.holding(g), tiles.holding(g) if tiles else None,
                  predictions.holding(g) if predictions else None) for g in groups]
        blocks = ordered_map(anndata_block, calls, BLOCKS_IN_FLIGHT)
        for group, (obs, matrix) in zip(groups, blocks, strict=True):
            _write_slides(writer, group, rows, starts, obs, matrix, str(cfg.embeddings))
        writer.close()
        lines.append(f"  anndata: {writer.n_obs} tiles x {writer.n_vars} features -> {path}")
    return lines


def _write_slides(writer: H5adWriter, slides: Sequence[str], rows: dict[str, int], starts: dict[str, int],
                  obs: pd.DataFrame, matrix: np.ndarray, store: Any) -> None:
    """Write a block's rows (sorted by slide), each run of slides consecutive in the file in one write."""
    ordered = sorted(slides)
    found, counts = np.unique(obs["slide_id"].astype(str).to_numpy(), return_counts=True)
    if found.tolist() != ordered or counts.tolist() != [rows[s] for s in ordered]:
        raise ValueError(f"embeddings {store}: the rows of slides {ordered[:3]}... differ from the "
                         f"store's index ({len(obs)} rows, the index says {sum(rows[s] for s in ordered)})")
    local = length = run_start = 0
    for slide in ordered:
        if length and run_start + length != starts[slide]:
            writer.write(run_start, matrix[local:local + length], obs.iloc[local:local + length])
            local, length = local + length, 0
        if not length:
            run_start = starts[slide]
        length += rows[slide]
    writer.write(run_start, matrix[local:local + length], obs.iloc[local:local + length])
