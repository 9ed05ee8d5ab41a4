"""`mixture-ray export`: write the chosen formats from a run's stores; one failure per slide that cannot.

The driver never reads a store's rows. From each store's index it plans groups of slides
(:mod:`mixture_ray.export.slide_groups`); Ray tasks read the parts that hold their group, write
the group's per-slide files (:mod:`mixture_ray.export.slide_tasks`) and return counts and
failures. The AnnData files are built from blocks read in tasks and streamed to disk by the driver
(:mod:`mixture_ray.export.anndata_export`). The driver holds per-slide metadata and per-format
decisions (classes, colours, measurement names), so its memory is flat in the number of tiles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.errors import ConfigError
from mixture_ray.export.anndata_export import export_anndata
from mixture_ray.export.nmf_tiles import AppliedNmf
from mixture_ray.export.slide_groups import TASKS_IN_FLIGHT, StoreSlides, ordered_map
from mixture_ray.export.slide_tasks import (
    GroupResult,
    H5Plan,
    HeatmapPlan,
    QupathPlan,
    finding_heatmap_slides,
    h5_slides,
    nmf_heatmap_slides,
    qupath_slides,
)
from mixture_ray.export.tables import cluster_column, cluster_files, cluster_summary, prediction_measurements
from mixture_ray.palette import finding_colours
from mixture_ray.report import Failure, LinesReport
from mixture_ray.store.folder import SUCCESS, StageFolder, read_settings, require_complete

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mixture_ray.export.config import ExportConfig
    from mixture_ray.locations import Uri

#: Slides of an explain apply whose NMF heatmaps one task writes.
NMF_SLIDES_PER_TASK = 16


def _gather(task: Callable[..., GroupResult], calls: Sequence[tuple[Any, ...]]) -> GroupResult:
    """Run the group tasks; their counts summed and their failures in slide order."""
    files = rows = 0
    failures: list[Failure] = []
    for result in ordered_map(task, calls, TASKS_IN_FLIGHT):
        files, rows = files + result.files, rows + result.rows
        failures.extend(result.failures)
    return GroupResult(files, rows, tuple(sorted(failures, key=lambda f: f.item_id)))


def _holding(store: StoreSlides | None, slides: Sequence[str]) -> list[str] | None:
    """The parts of ``store`` holding ``slides`` (None without the store)."""
    return None if store is None else store.holding(slides)


def export_qupath(cfg: ExportConfig) -> tuple[list[str], list[Failure]]:
    """One GeoJSON per slide (and magnification) under ``out_dir/qupath``.

    Measurements: ``probability <finding>`` and ``confidence`` (predictions), ``cluster k=<k>`` per
    clustering (clusters), and ``nmf_k<K>_class<j>``, the mean NMF class weight over the tile's
    footprint (explain; :mod:`mixture_ray.export.nmf_tiles`).

    Args:
        cfg: the export settings (predictions, or clusters with tiles; optionally explain).

    Returns:
        The report line and no failures.
    """
    clusters = cluster_files(cfg.clusters) if cfg.clusters is not None else None
    tiles = StoreSlides.open(cfg.tiles) if cfg.tiles is not None else None
    predictions = StoreSlides.open(cfg.predictions) if cfg.predictions is not None else None
    k: int | None = None
    if cfg.predictions is not None and predictions is not None:
        classes = tuple(str(c) for c in read_settings(cfg.predictions)["classes"])
        measurements = prediction_measurements(classes)
        several, primary, ks = len(predictions.mag_keys()) > 1, predictions, list(clusters or ())
    else:
        assert clusters is not None and tiles is not None
        k = cfg.qupath_k or next(iter(clusters))
        if k not in clusters:
            raise ConfigError(f"qupath_k: no clustering with k={k} in {cfg.clusters} "
                              f"(found k={list(clusters)})")
        summaries = list(ordered_map(cluster_summary, [(str(p),) for p in clusters[k]], TASKS_IN_FLIGHT))
        classes = tuple(f"cluster {c}" for c in sorted({c for ids, _ in summaries for c in ids}))
        several = len({m for _, mags in summaries for m in mags}) > 1
        primary, measurements, ks = tiles, {}, [k, *(other for other in clusters if other != k)]
    measurements.update({f"cluster k={c}": cluster_column(c) for c in ks})
    nmf = AppliedNmf.read(cfg.explain) if cfg.explain is not None else None
    if nmf is not None:
        measurements.update({name: name for name in nmf.names()})
    out = Path(cfg.out_dir) / "qupath"
    plan = QupathPlan(out, classes, finding_colours(classes), measurements, several, clusters, k, nmf)
    calls = [(plan, g, _holding(predictions, g), _holding(tiles, g)) for g in primary.groups()]
    done = _gather(qupath_slides, calls)
    nmf_note = f" (NMF class weights of K={list(nmf.ks)})" if nmf is not None else ""
    return [f"  qupath: {done.files} GeoJSON files, {done.rows} tile objects{nmf_note} -> {out}"], []


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

    The value is ``1 + round(254 w / max w)`` over the slide's covered cells (0 where uncovered);
    a Ray task writes the files of :data:`NMF_SLIDES_PER_TASK` slides.
    """
    require_complete(explain / "apply", "explain apply")
    applied = json.loads((explain / "apply" / SUCCESS).read_text())
    fitted = read_settings(Path(applied["nmf_dir"]))
    grid_mpp = float(fitted.get("grid", fitted)["mpp"])  # flat in folders of earlier versions
    ks = [int(k) for k in applied.get("n_classes") or read_settings(explain / "apply")["n_classes"]]
    slides = [str(s) for s in applied["slides"]]
    calls = [(explain, slides[i:i + NMF_SLIDES_PER_TASK], ks, grid_mpp, out)
             for i in range(0, len(slides), NMF_SLIDES_PER_TASK)]
    return [f"  heatmaps: {_gather(nmf_heatmap_slides, calls).files} NMF class heatmaps -> {out}"]


def export_finding_heatmaps(predictions: Path | Uri, tiles: Path | Uri,
                            out: Path) -> tuple[list[str], list[Failure]]:
    """Per slide and finding: ``<slide_id>/<finding>.ome.tif``, one pixel per tile step."""
    classes = tuple(str(c) for c in read_settings(predictions)["classes"])
    plan = HeatmapPlan(out, classes, _tile_step(tiles)[1], str(read_settings(tiles).get("backend", "auto")))
    predicted, geometry = StoreSlides.open(predictions), StoreSlides.open(tiles)
    calls = [(plan, g, predicted.holding(g), geometry.holding(g)) for g in predicted.groups()]
    done = _gather(finding_heatmap_slides, calls)
    return [f"  heatmaps: {done.files} pyramidal OME-TIFF files -> {out}"], list(done.failures)


def export_h5(cfg: ExportConfig) -> tuple[list[str], list[Failure]]:
    """Per slide and magnification: TRIDENT coordinates (and features) under ``out_dir/h5``."""
    assert cfg.tiles is not None
    tile_size, step = _tile_step(cfg.tiles)
    geometry = StoreSlides.open(cfg.tiles)
    embedded = StoreSlides.open(cfg.embeddings) if cfg.embeddings is not None else None
    root = Path(cfg.out_dir) / "h5"
    backend = str(read_settings(cfg.tiles).get("backend", "auto"))
    plan = H5Plan(root, tile_size, max(0, tile_size - step), backend, f"mixture_ray_{cfg.embedding}",
                  cfg.embedding, frozenset(embedded.mag_keys()) if embedded is not None else frozenset())
    calls = [(plan, g, geometry.holding(g), _holding(embedded, g)) for g in geometry.groups()]
    done = _gather(h5_slides, calls)
    return [f"  h5: {done.files} files (TRIDENT layout, CLAM attributes) -> {root}"], list(done.failures)


def _anndata(cfg: ExportConfig) -> tuple[list[str], list[Failure]]:
    return export_anndata(cfg), []


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
    lines: list[str] = []
    failures: list[Failure] = []
    writers: dict[str, Callable[[ExportConfig], tuple[list[str], list[Failure]]]] = {
        "qupath": export_qupath, "anndata": _anndata, "h5": export_h5, "heatmaps": export_heatmaps}
    for name in cfg.chosen_formats():
        written, failed = writers[name](cfg)
        lines.extend(written)
        failures.extend(failed)
    ok = folder.finish(requested=[], failures=failures, extra={"lines": lines})
    return LinesReport(f"export {cfg.out_dir}:", Path(cfg.out_dir), tuple(lines), failures, ok)

