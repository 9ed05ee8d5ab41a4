"""Per-slide activation grid (one Ray task per slide): tiles -> layer output -> averaged grid.

Writes ``grids/<slide_id>/``: grid.npy (rows x cols x C mean feature), count.npy, tiles.parquet
(one row per tile: position, grid box, the model's positive probability), cams.npy (GradCAM of
each tile's kept feature pixels), thumb.png, meta.json, and _SUCCESS last.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from mixture_ray.explain.gradcam import forward_with_cam
from mixture_ray.explain.grid import GridAccumulator, GridGeometry
from mixture_ray.explain.model import build_model, weights_digest
from mixture_ray.explain.nmf import resolve_device
from mixture_ray.explain.tiles import background_fraction, read_tile, to_batch
from mixture_ray.store.folder import SUCCESS, write_json_atomic

if TYPE_CHECKING:
    from mixture_ray.explain.config import GridRun, GridSpec


def layer_cell(model: torch.nn.Module, spec: GridSpec,
               device: torch.device) -> tuple[int, int, int]:
    """(feature-map edge, target px per feature pixel, channels) of ``spec.layer`` for one tile."""
    probe = torch.zeros(1, 3, spec.tile_size, spec.tile_size, device=device)
    acts, _, _ = forward_with_cam(model, spec.layer, probe, spec.positive_class,
                                  non_negative="relu", cam=False)
    fmap = int(acts.shape[-1])
    if spec.tile_size % fmap:
        raise ValueError(f"tile_size {spec.tile_size} is not a multiple of the {fmap}-px feature map")
    if fmap <= 2 * spec.border:
        raise ValueError(f"border {spec.border} leaves nothing of the {fmap}-px feature map")
    return fmap, spec.tile_size // fmap, int(acts.shape[1])


def extract_slide(spec: GridSpec, run: GridRun, grids: Path, slide_id: str, path: str,
                  mpp: float | None) -> str | None:
    """Build one slide's grid (the body of a Ray task; any error is returned, not raised).

    Args:
        spec: the network, layer and tiling.
        run: device, batch size, memory and CPU settings.
        grids: the grids folder; the slide's grid goes to ``grids/<slide_id>``.
        slide_id: the slide's id.
        path: the slide file.
        mpp: the manifest's microns per pixel, or None to use the file's.

    Returns:
        None when the grid is complete, else the error message. A finished grid is kept only when
        it was made with the same weights (``meta.json`` records :func:`weights_digest`); one made
        with other weights at the same checkpoint path (a retrained detector) is rebuilt.
    """
    from mixture_ray.slides import open_slide, plan_level

    out = grids / slide_id
    try:
        weights = weights_digest(spec.checkpoint)
    except OSError as exc:
        return f"{type(exc).__name__}: checkpoint {spec.checkpoint}: {exc}"
    if (out / SUCCESS).exists() and _made_with(out) == weights:
        return None
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        torch.set_num_threads(max(1, int(run.task_cpus)))  # the float sums' order, as on every node
        device = resolve_device(run.device)
        if device.type == "cuda":  # cuDNN picks deterministic convolutions (GradCAM's backward too)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        model = build_model(spec.arch, spec.num_classes, spec.checkpoint).to(device)
        fmap, cell, channels = layer_cell(model, spec, device)
        reader = open_slide(str(path))
        try:
            manifest_mpp = None if mpp is None or math.isnan(mpp) else mpp
            plan = plan_level(reader, mpp=spec.mpp, manifest_mpp=manifest_mpp)
            w0, h0 = reader.level_dimensions[0]
            wh = (round(w0 / plan.target_downsample), round(h0 / plan.target_downsample))
            geom = GridGeometry(wh[0], wh[1], spec.tile_size, spec.stride, cell, spec.border)
            _accumulate(spec, run, model, device, (reader, plan), geom, (fmap, channels), slide_id, out)
            thumb = reader.thumbnail(run.thumbnail_px)
        finally:
            reader.close()
        Image.fromarray(thumb).save(out / "thumb.png")
        write_json_atomic(out / "meta.json", {
            "slide_id": slide_id, "source": path, "rows": geom.shape[0], "cols": geom.shape[1],
            "cell_px": cell, "cell_level0": cell * plan.target_downsample, "fmap": fmap,
            "target_downsample": plan.target_downsample, "width": wh[0], "height": wh[1],
            "weights": weights})
        (out / SUCCESS).write_text("")
        return None
    except Exception as exc:  # one slide failing must not stop the others
        return f"{type(exc).__name__}: {exc}"


def _made_with(folder: Path) -> str | None:
    """The weights digest a finished grid recorded (None: an earlier version, or unreadable)."""
    import json

    try:
        made = json.loads((folder / "meta.json").read_text()).get("weights")
    except (OSError, ValueError, AttributeError):
        return None
    return str(made) if made is not None else None


def _accumulate(spec: GridSpec, run: GridRun, model: torch.nn.Module, device: torch.device,
                source: tuple[Any, Any], geom: GridGeometry, layer: tuple[int, int], slide_id: str,
                out: Path) -> None:
    (reader, plan), (fmap, channels), (rows, cols) = source, layer, geom.shape
    nbytes = rows * cols * channels * 4
    path = out / "grid.npy" if nbytes > run.memmap_mb * 2**20 else None
    acc: GridAccumulator | None = None
    records: list[dict[str, Any]] = []
    cams: list[np.ndarray] = []
    batch: list[tuple[int, int, np.ndarray]] = []
    origins = geom.origins()
    for i, (x, y) in enumerate(origins):
        tile = read_tile(reader, plan, x, y, spec.tile_size, (geom.width, geom.height))
        if background_fraction(tile, spec.background_threshold) <= spec.max_background:
            batch.append((x, y, tile))
        if batch and (len(batch) == run.batch_size or i == len(origins) - 1):
            images = to_batch([t for _, _, t in batch]).to(device)
            acts, logits, cam = forward_with_cam(model, spec.layer, images, spec.positive_class,
                                                 non_negative=spec.non_negative, cam=spec.gradcam)
            probs = torch.softmax(logits.float(), dim=1)[:, spec.positive_class].cpu().numpy()
            a = acts.float().cpu().numpy()
            if acc is None:
                acc = GridAccumulator((rows, cols), a.shape[1], path=path)
            b = spec.border
            for j, (tx, ty, _) in enumerate(batch):
                box = geom.kept_box(tx, ty, fmap)
                acc.add(a[j], box, b)
                records.append({"slide_id": slide_id, "x": round(tx * plan.target_downsample),
                                "y": round(ty * plan.target_downsample), "tx": tx, "ty": ty,
                                "r0": box[0], "c0": box[1], "r1": box[2], "c1": box[3],
                                "prob": float(probs[j]), "pred": int(probs[j] >= 0.5)})
                if cam is not None:
                    cams.append(cam[j, b: fmap - b, b: fmap - b].float().cpu().numpy())
            batch = []
    if acc is None:
        raise ValueError(f"no tile has at most {spec.max_background:.0%} background")
    grid = acc.mean()
    if path is None:
        np.save(out / "grid.npy", grid)
    np.save(out / "count.npy", acc.count)
    pd.DataFrame.from_records(records).to_parquet(out / "tiles.parquet", index=False)
    if cams:
        np.save(out / "cams.npy", np.stack(cams).astype(np.float32))


@dataclasses.dataclass(frozen=True)
class SlideGrid:
    """A finished slide grid loaded (grid memory-mapped read-only)."""

    slide_id: str
    grid: np.ndarray
    count: np.ndarray
    tiles: pd.DataFrame
    cams: np.ndarray | None
    meta: dict[str, Any]
    folder: Path


def load_grid(folder: Path) -> SlideGrid:
    """Open one ``grids/<slide_id>`` folder."""
    import json

    meta = json.loads((folder / "meta.json").read_text())
    cams = np.load(folder / "cams.npy") if (folder / "cams.npy").exists() else None
    return SlideGrid(meta["slide_id"], np.load(folder / "grid.npy", mmap_mode="r"),
                     np.load(folder / "count.npy"), pd.read_parquet(folder / "tiles.parquet"),
                     cams, meta, folder)
