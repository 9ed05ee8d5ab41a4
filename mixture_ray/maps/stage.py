"""`mixture-ray maps`: one Ray task per slide draws its map; agreement with known truth.

A map shows the findings of one prediction store, or the raw k-means clusters of one clustering
(``clusters``, ``k``, ``magnification``: the non-integrated baseline). Several prediction stores
(one per magnification) give each slide a composite: the slide, then each magnification's map.

Output folder::

    out_dir/<slide>.png     thumbnail + colours + legend, or the composite (written to a temporary name first)
    out_dir/agreement.csv   per slide (and magnification, for composites): tiles, accuracy against
                            ground truth (when truth_cohort is set)
    out_dir/legend.json     [{finding, rgb}] in class order (clusters: [{finding: c<id>, cluster, rgb}]),
                            the same for every slide
    out_dir/_failures.csv, and _SUCCESS (all slides drawn) or _INCOMPLETE.json
"""

from __future__ import annotations

import dataclasses
import math
import os
import urllib.parse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixture_ray.locations import recorded_address
from mixture_ray.maps.composite import ORIGINAL, composite_figure
from mixture_ray.maps.draw import overlay_tiles, with_legend
from mixture_ray.maps.layers import RGB, Layer, cluster_layer, layer_colours, prediction_layers
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import StageFolder, write_json_atomic
from mixture_ray.store.manifest import read_manifest
from mixture_ray.synth.agreement import slide_agreement

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mixture_ray.maps.config import MapsConfig


@dataclasses.dataclass(frozen=True)
class MapsReport(Report):
    """Maps drawn, per-slide agreement (empty without truth) and failures."""

    out_dir: Path
    maps: list[Path]
    agreement: pd.DataFrame
    failures: list[Failure]
    complete: bool

    def summary(self) -> str:
        """Maps drawn, agreement with the truth when known, and failures."""
        lines = [f"maps {self.out_dir}: {len(self.maps)} slides drawn"]
        if "accuracy" in self.agreement and len(self.agreement):
            lines.append(f"  tile agreement with ground truth: mean {self.agreement['accuracy'].mean():.3f} "
                         f"(per slide in {self.out_dir / 'agreement.csv'})")
        return "\n".join(lines)


def map_file(out_dir: Path, slide_id: str) -> Path:
    """The PNG of a slide; the id is percent-encoded so any id is one safe file name."""
    return out_dir / f"{urllib.parse.quote(slide_id, safe='')}.png"


def draw_slide_map(
    cfg: MapsConfig, slide_id: str, path: str, layers: Sequence[Layer], colours: Mapping[str, RGB]
) -> dict[str, Any]:
    """Ray task body: read the thumbnail, draw the slide's PNG, score agreement when truth is given.

    Args:
        cfg: the drawing settings.
        slide_id: the slide.
        path: its file.
        layers: each layer with only this slide's rows; several make a composite.
        colours: class -> RGB shared by all layers.

    Returns:
        ``slide_id``, ``map`` (the PNG) and ``rows``: one agreement row per layer.
    """
    from mixture_ray.slides.factory import open_slide

    reader = open_slide(path, cfg.backend)
    try:
        thumbnail = reader.thumbnail(cfg.thumbnail_px)
        level0 = reader.level_dimensions[0]
    finally:
        reader.close()
    images = [_overlay(thumbnail, level0, layer, colours, cfg.alpha) for layer in layers]
    if len(layers) == 1:
        (layer,) = layers
        counts = {str(k): int(v) for k, v in layer.rows["finding"].value_counts().items()}
        shown = {c: rgb for c, rgb in colours.items() if layer.kind == "findings" or c in counts}
        canvas = with_legend(images[0], f"{slide_id}: {len(layer.rows)} tiles, {layer.title}", shown, counts)
    else:
        maps = [(layer.label, image) for layer, image in zip(layers, images, strict=True)]
        header = f"{slide_id}: tiles " + ", ".join(f"{len(layer.rows)} at {layer.label}" for layer in layers)
        canvas = composite_figure(header, [(ORIGINAL, thumbnail), *maps], colours)
    target = map_file(Path(cfg.out_dir), slide_id)
    tmp = target.with_name(f".{uuid.uuid4().hex}.png.tmp")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, target)
    return {"slide_id": slide_id, "map": str(target), "rows": [_agreement(cfg, layer) for layer in layers]}


def _overlay(thumbnail: np.ndarray, level0: tuple[int, int], layer: Layer, colours: Mapping[str, RGB],
             alpha: float) -> np.ndarray:
    return overlay_tiles(
        thumbnail, level0, layer.rows[["x", "y", "size_level0"]].to_numpy(np.int64),
        layer.rows["class_index"].to_numpy(np.int64), [colours[c] for c in layer.classes], alpha,
    )


def _agreement(cfg: MapsConfig, layer: Layer) -> dict[str, Any]:
    row: dict[str, Any] = {"magnification": layer.magnification, "tiles": len(layer.rows)}
    if cfg.truth_cohort is not None and len(layer.rows):
        row.update(slide_agreement(Path(cfg.truth_cohort), layer.rows, layer.classes))
    return row


def _safe_draw(cfg: MapsConfig, slide_id: str, path: str, layers: Sequence[Layer],
               colours: Mapping[str, RGB]) -> dict[str, Any]:
    try:
        return draw_slide_map(cfg, slide_id, path, layers, colours)
    except Exception as exc:  # one slide's failure is recorded, the others go on
        return {"slide_id": slide_id, "error": f"{type(exc).__name__}: {exc}"}


def load_layers(cfg: MapsConfig) -> list[Layer]:
    """What the maps show: the prediction stores, or the chosen clustering.

    Args:
        cfg: predictions, or clusters with k and magnification.

    Returns:
        The layers, lowest magnification first.
    """
    if cfg.clusters is not None:
        assert cfg.k is not None and cfg.magnification is not None  # checked by validate()
        return [cluster_layer(Path(cfg.clusters), cfg.k, cfg.magnification)]
    return prediction_layers(cfg.predictions)


def run(cfg: MapsConfig) -> MapsReport:
    """Draw every slide of the predictions (or clustering) that is in the manifest (one Ray task each).

    Args:
        cfg: the prediction store(s) or the clustering, the manifest and the drawing settings.

    Returns:
        The maps drawn, per-slide agreement with the truth (empty without it) and failures.
    """
    import ray

    from mixture_ray.ray_runtime import ensure_ray, slide_reader_gpus

    layers = load_layers(cfg)
    colours = layer_colours(layers)
    paths = {str(r.slide_id): str(r.path) for r in read_manifest(cfg.manifest).itertuples()}
    out_dir = Path(cfg.out_dir)
    folder = StageFolder(out_dir, stage="maps", item_column=None)
    folder.prepare(_settings(cfg, layers))
    write_json_atomic(out_dir / "legend.json", _legend(layers, colours))
    slides = sorted({str(s) for layer in layers for s in layer.rows["slide_id"].unique()})
    failures = [Failure(s, "", f"slide is not in the manifest {cfg.manifest}; add it or drop its tiles")
                for s in slides if s not in paths]
    ensure_ray()
    task = ray.remote(_safe_draw).options(num_cpus=1, num_gpus=slide_reader_gpus(cfg.gpus, cfg.backend))
    split = [layer.by_slide() for layer in layers]  # rows grouped once, not filtered once per slide
    empty = [layer.for_slide("") for layer in layers]
    pairs = list(zip(split, empty, strict=True))
    refs = [task.remote(cfg, s, paths[s], [parts.get(s, none) for parts, none in pairs], colours)
            for s in slides if s in paths]
    results = ray.get(refs)
    drawn = [r for r in results if "error" not in r]
    failures += [Failure(r["slide_id"], paths[r["slide_id"]], r["error"])
                 for r in results if "error" in r]
    agreement = pd.DataFrame([{"slide_id": r["slide_id"], "map": r["map"], **row}
                              for r in drawn for row in r["rows"]], columns=_columns(cfg, layers))
    agreement.to_csv(out_dir / "agreement.csv", index=False)
    complete = folder.finish(requested=slides, failures=failures,
                             extra={"slides_drawn": len(drawn), "mean_accuracy": _mean(agreement)})
    return MapsReport(out_dir, [Path(r["map"]) for r in drawn], agreement, failures, complete)


def _settings(cfg: MapsConfig, layers: Sequence[Layer]) -> dict[str, Any]:
    drawing = {"thumbnail_px": cfg.thumbnail_px, "alpha": cfg.alpha}
    if cfg.clusters is not None:
        return {"clusters": str(Path(cfg.clusters).resolve()), "k": cfg.k, "magnification": cfg.magnification,
                "classes": list(layers[0].classes), **drawing}
    stores = [recorded_address(p) for p in cfg.predictions]
    classes = [list(layer.classes) for layer in layers]
    if len(stores) == 1:  # the settings of a single store, as before composites
        return {"predictions": stores[0], "classes": classes[0], **drawing}
    return {"predictions": stores, "classes": classes, **drawing}


def _legend(layers: Sequence[Layer], colours: Mapping[str, RGB]) -> list[dict[str, Any]]:
    """legend.json: each class with its colour (and, for clusters, the cluster id)."""
    if layers[0].kind == "clusters":
        classes = layers[0].classes
        return [{"finding": c, "cluster": i, "rgb": list(colours[c])} for i, c in enumerate(classes)]
    return [{"finding": c, "rgb": list(rgb)} for c, rgb in colours.items()]


def _columns(cfg: MapsConfig, layers: Sequence[Layer]) -> list[str]:
    base = ["slide_id", "map", *(["magnification"] if len(layers) > 1 else []), "tiles"]
    if cfg.truth_cohort is None:
        return base
    return [*base, "tiles_known_truth", "tiles_unknown_truth", "accuracy"]


def _mean(agreement: pd.DataFrame) -> float | None:
    if "accuracy" not in agreement or agreement["accuracy"].isna().all():
        return None
    value = float(agreement["accuracy"].mean())
    return None if math.isnan(value) else value
