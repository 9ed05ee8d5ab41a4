"""`mixture-ray maps`: one Ray task per slide draws its finding map; agreement with known truth.

Output folder::

    out_dir/<slide>.png     thumbnail + finding colours + legend (written to a temporary name first)
    out_dir/agreement.csv   per slide: tiles, accuracy against ground truth (when truth_cohort is set)
    out_dir/legend.json     [{finding, rgb}] in class order, the same for every slide
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

from mixture_ray.maps.draw import overlay_tiles, with_legend
from mixture_ray.palette import finding_colours
from mixture_ray.report import Failure, Report
from mixture_ray.store.folder import StageFolder, write_json_atomic
from mixture_ray.store.manifest import read_manifest
from mixture_ray.store.predictions import load_predictions
from mixture_ray.synth.agreement import slide_agreement

if TYPE_CHECKING:
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
    cfg: MapsConfig, slide_id: str, path: str, tiles: pd.DataFrame, classes: list[str]
) -> dict[str, Any]:
    """Ray task body: read the thumbnail, draw and save the map; agreement when truth is given."""
    from mixture_ray.slides.factory import open_slide

    colours = finding_colours(classes)
    reader = open_slide(path, cfg.backend)
    try:
        thumbnail = reader.thumbnail(cfg.thumbnail_px)
        level0 = reader.level_dimensions[0]
    finally:
        reader.close()
    image = overlay_tiles(
        thumbnail, level0, tiles[["x", "y", "size_level0"]].to_numpy(np.int64),
        tiles["class_index"].to_numpy(np.int64), [colours[c] for c in classes], cfg.alpha,
    )
    counts = {str(k): int(v) for k, v in tiles["finding"].value_counts().items()}
    canvas = with_legend(image, f"{slide_id}: {len(tiles)} tiles", colours, counts)
    target = map_file(Path(cfg.out_dir), slide_id)
    tmp = target.with_name(f".{uuid.uuid4().hex}.png.tmp")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, target)
    result: dict[str, Any] = {"slide_id": slide_id, "map": str(target), "tiles": len(tiles)}
    if cfg.truth_cohort is not None:
        result.update(slide_agreement(Path(cfg.truth_cohort), tiles, classes))
    return result


def _safe_draw(cfg: MapsConfig, slide_id: str, path: str, tiles: pd.DataFrame,
               classes: list[str]) -> dict[str, Any]:
    try:
        return draw_slide_map(cfg, slide_id, path, tiles, classes)
    except Exception as exc:  # one slide's failure is recorded, the others go on
        return {"slide_id": slide_id, "error": f"{type(exc).__name__}: {exc}"}


def run(cfg: MapsConfig) -> MapsReport:
    """Draw every slide of the prediction store that is in the manifest (one Ray task each).

    Args:
        cfg: the prediction store, the manifest and the drawing settings.

    Returns:
        The maps drawn, per-slide agreement with the truth (empty without it) and failures.
    """
    import ray

    from mixture_ray.ray_runtime import ensure_ray

    predictions = load_predictions(cfg.predictions)
    paths = {str(r.slide_id): str(r.path) for r in read_manifest(cfg.manifest).itertuples()}
    out_dir = Path(cfg.out_dir)
    folder = StageFolder(out_dir, stage="maps", item_column=None)
    folder.prepare(_settings(cfg, predictions.classes))
    classes = list(predictions.classes)
    write_json_atomic(out_dir / "legend.json",
                      [{"finding": c, "rgb": list(rgb)} for c, rgb in finding_colours(classes).items()])
    by_slide = {str(s): rows.reset_index(drop=True) for s, rows in predictions.rows.groupby("slide_id")}
    failures = [Failure(s, "", f"slide is not in the manifest {cfg.manifest}; add it or drop its predictions")
                for s in sorted(by_slide) if s not in paths]
    ensure_ray()
    task = ray.remote(_safe_draw).options(num_cpus=1)
    refs = [task.remote(cfg, s, paths[s], by_slide[s], classes) for s in sorted(by_slide) if s in paths]
    results = ray.get(refs)
    rows = [r for r in results if "error" not in r]
    failures += [Failure(r["slide_id"], paths[r["slide_id"]], r["error"])
                 for r in results if "error" in r]
    agreement = pd.DataFrame(rows, columns=_columns(cfg))
    agreement.to_csv(out_dir / "agreement.csv", index=False)
    complete = folder.finish(requested=sorted(by_slide), failures=failures,
                             extra={"slides_drawn": len(rows), "mean_accuracy": _mean(agreement)})
    return MapsReport(out_dir, [Path(r["map"]) for r in rows], agreement, failures, complete)


def _settings(cfg: MapsConfig, classes: tuple[str, ...]) -> dict[str, Any]:
    return {"predictions": str(Path(cfg.predictions).resolve()), "classes": list(classes),
            "thumbnail_px": cfg.thumbnail_px, "alpha": cfg.alpha}


def _columns(cfg: MapsConfig) -> list[str]:
    base = ["slide_id", "map", "tiles"]
    if cfg.truth_cohort is None:
        return base
    return [*base, "tiles_known_truth", "tiles_unknown_truth", "accuracy"]


def _mean(agreement: pd.DataFrame) -> float | None:
    if "accuracy" not in agreement or agreement["accuracy"].isna().all():
        return None
    value = float(agreement["accuracy"].mean())
    return None if math.isnan(value) else value
