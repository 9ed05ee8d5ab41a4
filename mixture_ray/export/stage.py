"""`mixture-ray export`: write the chosen formats from a run's stores; one failure per slide that cannot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixture_ray.export.anndata_file import write_h5ad
from mixture_ray.export.h5_coords import coords_attributes, trident_folder, write_coords
from mixture_ray.export.heatmaps import heatmap_grid, write_heatmap
from mixture_ray.export.nmf_tiles import AppliedNmf
from mixture_ray.export.qupath import slide_features, write_feature_collection
from mixture_ray.export.tables import cluster_column, cluster_table, label, tile_geometry
from mixture_ray.palette import finding_colours
from mixture_ray.report import Failure, LinesReport
from mixture_ray.store.embeddings import load_embeddings
from mixture_ray.store.folder import StageFolder, read_settings
from mixture_ray.store.predictions import load_predictions
from mixture_ray.store.schemas import TILE_KEY, magnification_label

if TYPE_CHECKING:
    from mixture_ray.export.config import ExportConfig
    from mixture_ray.locations import Uri

KEY = list(TILE_KEY)


def _prediction_rows(store: Path | Uri) -> tuple[pd.DataFrame, tuple[str, ...], dict[str, str]]:
    """Prediction rows with one probability column per class, the classes, and the measurements."""
    pred = load_predictions(store, probabilities=True)
    rows = pred.rows.drop(columns=["probabilities"])
    probs = (np.stack(list(pred.rows["probabilities"])) if len(rows)
             else np.zeros((0, len(pred.classes))))
    for i, name in enumerate(pred.classes):
        rows[f"p_{name}"] = probs[:, i]
    measurements = {f"probability {name}": f"p_{name}" for name in pred.classes}
    measurements["confidence"] = "confidence"
    return rows, pred.classes, measurements


def export_qupath(cfg: ExportConfig, clusters: pd.DataFrame | None) -> tuple[list[str], list[Failure]]:
    """One GeoJSON per slide (and magnification) under ``out_dir/qupath``.

    Measurements: ``probability <finding>`` and ``confidence`` (predictions), ``cluster k=<k>`` per
    clustering (clusters), and ``nmf_k<K>_class<j>``, the mean NMF class weight over the tile's
    footprint (explain; :mod:`mixture_ray.export.nmf_tiles`).

    Args:
        cfg: the export settings (predictions, or clusters with tiles; optionally explain).
        clusters: the cluster ids of every tile (:func:`cluster_table`), or None.

    Returns:
        The report line and no failures.
    """
    if cfg.predictions is not None:
        rows, classes, measurements = _prediction_rows(cfg.predictions)
        class_column = "finding"
    else:
        assert clusters is not None and cfg.tiles is not None
        ks = sorted(int(c.removeprefix("cluster_k")) for c in clusters.columns if c.startswith("cluster_k"))
        k = cfg.qupath_k or ks[0]
        if cluster_column(k) not in clusters:
            from mixture_ray.errors import ConfigError

            raise ConfigError(f"qupath_k: no clustering with k={k} in {cfg.clusters} (found k={ks})")
        rows = tile_geometry(cfg.tiles).merge(clusters[[*KEY, cluster_column(k)]], on=KEY,
                                              validate="one_to_one")
        rows = rows[rows[cluster_column(k)] >= 0]
        rows["cluster"] = [f"cluster {c}" for c in rows[cluster_column(k)]]
        classes = tuple(f"cluster {c}" for c in sorted(set(rows[cluster_column(k)])))
        class_column, measurements = "cluster", {}
    if clusters is not None:
        extra = [c for c in clusters.columns if c.startswith("cluster_k") and c not in rows]
        rows = rows.merge(clusters[[*KEY, *extra]], on=KEY, how="left", validate="one_to_one")
        for column in [c for c in rows.columns if c.startswith("cluster_k")]:
            rows[column] = rows[column].fillna(-1)
            measurements[f"cluster k={column.removeprefix('cluster_k')}"] = column
    nmf = AppliedNmf.read(cfg.explain) if cfg.explain is not None else None
    if nmf is not None:
        measurements.update({name: name for name in nmf.names()})
    colours = finding_colours(classes)
    out = Path(cfg.out_dir) / "qupath"
    several = rows.magnification.nunique(dropna=False) > 1
    files = 0
    for (slide_id, mag), part in rows.groupby(["slide_id", "magnification"], dropna=False, sort=True):
        name = f"{slide_id}_{magnification_label(_float(mag))}" if several else str(slide_id)
        if nmf is not None:
            part = part.assign(**nmf.tile_means(str(slide_id), part))
        features = slide_features(part, class_column=class_column, colours=colours,
                                  measurement_columns=measurements)
        write_feature_collection(out / f"{name}.geojson", features)
        files += 1
    nmf_note = f" (NMF class weights of K={list(nmf.ks)})" if nmf is not None else ""
    return [f"  qupath: {files} GeoJSON files, {len(rows)} tile objects{nmf_note} -> {out}"], []


def export_anndata(cfg: ExportConfig, clusters: pd.DataFrame | None) -> tuple[list[str], list[Failure]]:
    """One ``.h5ad`` per magnification under ``out_dir/anndata``."""
    assert cfg.embeddings is not None
    findings = _prediction_rows(cfg.predictions)[0][[*KEY, "finding"]] if cfg.predictions else None
    geometry = tile_geometry(cfg.tiles) if cfg.tiles is not None else None
    provenance = {"embeddings": str(cfg.embeddings), "embedding": cfg.embedding,
                  "embedding_settings": read_settings(cfg.embeddings),
                  "clusters": str(cfg.clusters), "predictions": str(cfg.predictions)}
    out = Path(cfg.out_dir) / "anndata"
    lines = []
    for mag, (keys, matrix) in load_embeddings(cfg.embeddings, cfg.embedding).items():
        obs = keys.reset_index(drop=True)
        obs["magnification"] = obs["magnification"].astype(float)
        if geometry is not None:
            obs = obs.merge(geometry[[*KEY, "mpp", "size_level0"]], on=KEY, how="left", validate="one_to_one")
        else:
            obs["mpp"] = 10.0 / obs["magnification"]
        if clusters is not None:
            obs = obs.merge(clusters, on=KEY, how="left", validate="one_to_one")
            ks = [c for c in obs.columns if c.startswith("cluster_k")]
            obs[ks] = obs[ks].fillna(-1).astype("int32")
        if findings is not None:
            obs = obs.merge(findings, on=KEY, how="left", validate="one_to_one")
            obs["finding"] = obs["finding"].fillna("unclassified").astype(str)
        path = out / f"embeddings_{label(mag)}.h5ad"
        write_h5ad(path, matrix, obs, {**provenance, "magnification": mag})
        lines.append(f"  anndata: {matrix.shape[0]} tiles x {matrix.shape[1]} features -> {path}")
    return lines, []


def _level0(source: str, backend: str) -> tuple[tuple[tuple[int, int], ...], tuple[float, ...]]:
    """Level sizes and downsamples of a slide file, read with the tiling's backend (its levels)."""
    from mixture_ray.slides import open_slide

    reader = open_slide(str(source), backend)
    try:
        return reader.level_dimensions, reader.level_downsamples
    finally:
        reader.close()


def _tile_step(tiles: Path | Uri) -> tuple[int, int]:
    """(tile size, step) in pixels at the target magnification, from the tile store's settings."""
    settings = read_settings(tiles)
    tile_size = int(settings.get("tile_size", 0))
    return tile_size, int(settings.get("stride") or tile_size)


def export_heatmaps(cfg: ExportConfig) -> tuple[list[str], list[Failure]]:
    """Finding heatmaps (predictions and tiles given) and NMF class heatmaps (explain given)."""
    lines: list[str] = []
    failures: list[Failure] = []
    if cfg.predictions is not None and cfg.tiles is not None:
        lines, failures = export_finding_heatmaps(cfg.predictions, cfg.tiles, Path(cfg.out_dir) / "heatmaps")
    if cfg.explain is not None:
        lines.extend(export_nmf_heatmaps(cfg.explain, Path(cfg.out_dir) / "heatmaps"))
    return lines, failures


def export_nmf_heatmaps(explain: Path, out: Path) -> list[str]:
    """Per applied slide, K and class: ``<slide_id>/nmf_k<K>_class<c>.ome.tif``, one pixel per grid cell.

    The value is ``1 + round(254 w / max w)`` over the slide's covered cells (0 where uncovered).
    """
    import json

    from mixture_ray.store.folder import SUCCESS, require_complete

    require_complete(explain / "apply", "explain apply")
    applied = json.loads((explain / "apply" / SUCCESS).read_text())
    fitted = read_settings(Path(applied["nmf_dir"]))
    grid_mpp = float(fitted.get("grid", fitted)["mpp"])  # flat in folders of earlier versions
    applied_ks = applied.get("n_classes") or read_settings(explain / "apply")["n_classes"]
    files = 0
    for slide_id in applied["slides"]:
        meta = json.loads((explain / "grids" / slide_id / "meta.json").read_text())
        covered = np.load(explain / "grids" / slide_id / "count.npy") > 0
        for k in applied_ks:
            weights = np.load(explain / "apply" / slide_id / f"k{k}_weights.npy")
            for c in range(int(k)):
                w = np.where(covered, weights[..., c], 0.0)
                top = float(w.max())
                scaled = np.round(254 * w / top) if top > 0 else np.zeros_like(w)
                grid = np.where(covered, 1 + scaled, 0).astype(np.uint8)
                write_heatmap(out / slide_id / f"nmf_k{k}_class{c}.ome.tif", grid, grid_mpp * meta["cell_px"],
                              f"{slide_id}: NMF K={k} class {c} (weight / {top:.4g})")
                files += 1
    return [f"  heatmaps: {files} NMF class heatmaps -> {out}"]


def export_finding_heatmaps(predictions: Path | Uri, tiles: Path | Uri,
                            out: Path) -> tuple[list[str], list[Failure]]:
    """Per slide and finding: ``<slide_id>/<finding>.ome.tif``, one pixel per tile step."""
    rows, classes, _ = _prediction_rows(predictions)
    rows["magnification"] = rows["magnification"].astype(float)
    rows = rows[rows["magnification"].notna()]  # imported images have no slide to map onto
    geometry = tile_geometry(tiles)[[*KEY, "mpp", "tile_size", "source"]]
    rows = rows.merge(geometry, on=KEY, validate="one_to_one")
    _, step = _tile_step(tiles)
    backend = str(read_settings(tiles).get("backend", "auto"))
    failures: list[Failure] = []
    files = 0
    for slide_id, part in rows.groupby("slide_id", sort=True):
        source = str(part.source.iloc[0])
        try:
            dims = _level0(source, backend)[0]
        except Exception as exc:  # one slide that cannot be opened must not stop the others
            failures.append(Failure(str(slide_id), source, f"heatmaps: {exc}"))
            continue
        tile_size = int(part.tile_size.iloc[0])
        cell = max(1, round(int(part.size_level0.iloc[0]) * step / tile_size))
        mpp = float(part.mpp.iloc[0]) * step
        for finding in classes:
            grid = heatmap_grid(part, part[f"p_{finding}"].to_numpy(), dims[0], cell)
            write_heatmap(out / str(slide_id) / f"{finding}.ome.tif", grid, mpp, f"{slide_id}: {finding}")
            files += 1
    return [f"  heatmaps: {files} pyramidal OME-TIFF files -> {out}"], failures


def export_h5(cfg: ExportConfig) -> tuple[list[str], list[Failure]]:
    """Per slide and magnification: TRIDENT coordinates (and features) under ``out_dir/h5``."""
    assert cfg.tiles is not None
    tile_size, step = _tile_step(cfg.tiles)
    overlap = max(0, tile_size - step)
    backend = str(read_settings(cfg.tiles).get("backend", "auto"))
    geometry = tile_geometry(cfg.tiles)
    embedded = _embedding_lookup(cfg.embeddings, cfg.embedding) if cfg.embeddings is not None else None
    encoder = f"mixture_ray_{cfg.embedding}"
    failures: list[Failure] = []
    files = 0
    root = Path(cfg.out_dir) / "h5"
    groups = geometry.groupby(["slide_id", "magnification"], dropna=False, sort=True)
    for (slide_id, group_mag), rows in groups:
        source, mag = str(rows.source.iloc[0]), _float(group_mag)
        if mag is None:
            failures.append(Failure(str(slide_id), source, "h5: imported images have no slide geometry"))
            continue
        folder = root / trident_folder(mag, tile_size, overlap)
        try:
            dims, downsamples = _level0(source, backend)
            attrs = coords_attributes(
                slide_id=str(slide_id), savetodir=str(folder / "patches"), patch_size=tile_size,
                patch_size_level0=int(rows.size_level0.iloc[0]), target_magnification=mag,
                overlap=overlap, level=int(rows.level.iloc[0]), level_dimensions=dims,
                level_downsamples=downsamples)
        except Exception as exc:  # one slide that cannot be read must not stop the others
            failures.append(Failure(str(slide_id), source, f"h5: {exc}"))
            continue
        coords = rows[["x", "y"]].to_numpy(np.int64)
        write_coords(folder / "patches" / f"{slide_id}_patches.h5", coords, attrs)
        files += 1
        if embedded is not None and mag in embedded[2]:  # features where that magnification was embedded
            index = embedded[1].reindex(pd.MultiIndex.from_frame(rows[KEY])).to_numpy()
            if np.isnan(index).any():
                failures.append(Failure(str(slide_id), source, "h5: some tiles have no embedding"))
                continue
            write_coords(folder / f"features_{encoder}" / f"{slide_id}.h5", coords, attrs,
                         features=embedded[0][index.astype(np.int64)], encoder=encoder)
            files += 1
    return [f"  h5: {files} files (TRIDENT layout, CLAM attributes) -> {root}"], failures


def _float(value: object) -> float | None:
    """A group key as a magnification: None for a missing one (imported images)."""
    if value is None:
        return None
    number = float(str(value))
    return None if math.isnan(number) else number


def _embedding_lookup(store: Path | Uri, column: str) -> tuple[np.ndarray, pd.Series, set[float | None]]:
    """All embeddings as one matrix, a tile key -> row index lookup, and the magnifications embedded."""
    parts = list(load_embeddings(store, column).values())
    keys = pd.concat([k[KEY] for k, _ in parts], ignore_index=True)
    keys["magnification"] = keys["magnification"].astype(float)
    matrix = np.concatenate([m for _, m in parts]) if parts else np.zeros((0, 0), np.float32)
    lookup = pd.Series(np.arange(len(keys), dtype=float), index=pd.MultiIndex.from_frame(keys))
    return matrix, lookup, {_float(m) for m in keys["magnification"].unique()}


def run(cfg: ExportConfig) -> LinesReport:
    """Write every chosen format from the given stores.

    Args:
        cfg: the export settings.

    Returns:
        The report: one line per format; slides that could not be exported are failures.

    Example:
        >>> run(build_config(ExportConfig, {"out_dir": "export", "formats": ["qupath"],
        ...                                 "predictions": "analysis/predictions"}))
    """
    folder = StageFolder(cfg.out_dir, stage="export", item_column=None)
    settings: dict[str, Any] = {k: getattr(cfg, k) for k in
                                ("formats", "predictions", "clusters", "embeddings", "tiles", "explain",
                                 "embedding", "qupath_k")}
    settings["formats"] = list(cfg.chosen_formats())
    folder.prepare(settings)
    clusters = cluster_table(cfg.clusters) if cfg.clusters is not None else None
    if clusters is not None:
        clusters["magnification"] = clusters["magnification"].astype(float)
    lines: list[str] = []
    failures: list[Failure] = []
    writers = {"qupath": lambda: export_qupath(cfg, clusters),
               "anndata": lambda: export_anndata(cfg, clusters), "h5": lambda: export_h5(cfg),
               "heatmaps": lambda: export_heatmaps(cfg)}
    for name in cfg.chosen_formats():
        written, failed = writers[name]()
        lines.extend(written)
        failures.extend(failed)
    ok = folder.finish(requested=[], failures=failures, extra={"lines": lines})
    return LinesReport(f"export {cfg.out_dir}:", Path(cfg.out_dir), tuple(lines), failures, ok)
