"""Apply a fitted NMF to slide grids: W with H fixed, argmax class, heatmaps and overlays.

Writes ``apply/<slide_id>/k<K>_weights.npy`` (rows x cols x K, 0 where uncovered),
``k<K>_classes.npy`` (argmax, -1 where uncovered), ``k<K>_heatmaps.png`` (a panel per class),
``k<K>_overlay.png`` (argmax colours on the thumbnail) and ``k<K>_multiclass.png`` (every class's
heatmap overlaid in its own colour, with a legend, at the thumbnail's size).

When the grid holds per-tile GradCAM (``cams.npy``), also the slide's GradCAM of the positive class
on the same grid (:func:`~mixture_ray.explain.slide_cam.slide_gradcam`): ``gradcam.npy`` (rows x
cols, 0 where uncovered), ``gradcam.png`` (scaled to the slide's max, with a colour bar, at the
thumbnail's size) and ``k<K>_gradcam_compare.png`` (thumbnail | multi-class NMF map | GradCAM side
by side). A grid without it gets no GradCAM files; the reason is logged and returned.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mixture_ray.explain import plots
from mixture_ray.explain.extract import load_grid
from mixture_ray.explain.fitting import load_h, valid_vectors
from mixture_ray.explain.nmf import device_label, resolve_device, transform
from mixture_ray.explain.slide_cam import NoGradCamError, slide_gradcam

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import torch

    from mixture_ray.explain.extract import SlideGrid


def slide_weights(grid: SlideGrid, h: torch.Tensor, chunk: int = 65536) -> np.ndarray:
    """(rows, cols, K) NMF weights of every covered cell (chunks bound the memory)."""
    rows, cols = grid.count.shape
    index, vectors = valid_vectors(grid)
    w = np.zeros((rows * cols, h.shape[0]), np.float32)
    for s in range(0, len(index), chunk):
        part = transform(vectors[s: s + chunk], h)
        w[index[s: s + chunk]] = part.cpu().numpy()
    return w.reshape(rows, cols, -1)


log = logging.getLogger(__name__)

#: The slide GradCAM figure of ``apply/<slide_id>/``.
GRADCAM_PNG = "gradcam.png"


def compare_png(k: int) -> str:
    """File name of the thumbnail | NMF classes | GradCAM figure of K classes."""
    return f"k{k}_gradcam_compare.png"


@dataclasses.dataclass(frozen=True)
class SlideApplied:
    """What :func:`apply_grid` did for one slide."""

    device: str  # torch device label, cpu or cuda:<i>
    shape: tuple[int, int]  # (rows, cols) of the grid
    tiles: int
    gradcam_files: tuple[str, ...]  # GradCAM figures written (file names in the slide's folder)
    gradcam_skipped: str | None  # why there are none, else None

    def summary(self) -> str:
        """One line: grid size, tiles, and the GradCAM figures or why they were skipped."""
        rows, cols = self.shape
        cam = (f"GradCAM figures skipped: {self.gradcam_skipped}" if self.gradcam_skipped is not None
               else "GradCAM: " + ", ".join(self.gradcam_files))
        return f"{rows}x{cols} cells, {self.tiles} tiles; {cam}"


def load_thumb(grid: SlideGrid) -> np.ndarray:
    """The slide thumbnail of a grid folder as RGB uint8 (h, w, 3)."""
    with Image.open(grid.folder / "thumb.png") as image:
        return np.asarray(image.convert("RGB"))


def apply_slide(grid: SlideGrid, h: torch.Tensor, out: Path,
                gradcam: tuple[str, Image.Image] | None = None) -> None:
    """Weights, classes and the figures for one slide and one K.

    Args:
        grid: the slide's loaded grid.
        h: the fitted H (K x C).
        out: the slide's output folder.
        gradcam: (title, image) of the slide's GradCAM figure; given, ``k<K>_gradcam_compare.png``
            shows the thumbnail, the multi-class map and it side by side.
    """
    k = h.shape[0]
    out.mkdir(parents=True, exist_ok=True)
    weights = slide_weights(grid, h)
    valid = grid.count > 0
    classes = np.where(valid, weights.argmax(axis=-1), -1).astype(np.int16)
    np.save(out / f"k{k}_weights.npy", weights)
    np.save(out / f"k{k}_classes.npy", classes)
    plots.heatmaps(weights, valid, out / f"k{k}_heatmaps.png", f"{grid.slide_id}: K={k}")
    thumb = load_thumb(grid)
    plots.overlay(thumb, np.maximum(classes, 0), valid, out / f"k{k}_overlay.png")
    multi = plots.multiclass_image(weights, valid, (thumb.shape[1], thumb.shape[0]))
    multi.save(out / f"k{k}_multiclass.png")
    if gradcam is not None:
        panels = [("slide", Image.fromarray(thumb)), (f"NMF classes (K={k})", multi), gradcam]
        plots.side_by_side(panels).save(out / compare_png(k))


def gradcam_figure(grid: SlideGrid, target: int, out: Path) -> tuple[str, Image.Image]:
    """Write the slide's GradCAM (``gradcam.npy``) and its figure (``gradcam.png``) into ``out``.

    Args:
        grid: the slide's loaded grid, with per-tile GradCAM.
        target: the class GradCAM was computed for (the grid's positive class), for the caption.
        out: the slide's output folder.

    Returns:
        (panel title, the figure) for the side-by-side figures.

    Raises:
        NoGradCamError: the grid has no usable GradCAM (nothing is written).
    """
    cam = slide_gradcam(grid)
    thumb = load_thumb(grid)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "gradcam.npy", cam)
    image = plots.gradcam_image(cam, grid.count > 0, (thumb.shape[1], thumb.shape[0]),
                                f"GradCAM (class {target}), scaled to the slide's max")
    image.save(out / GRADCAM_PNG)
    return f"GradCAM (class {target})", image


def apply_grid(grid_folder: Path, nmf_dir: Path, ks: Sequence[int], *, device: str, out: Path,
               target: int) -> SlideApplied:
    """Apply every K of a fitted NMF to one slide's grid, from files to files (no Ray here).

    Args:
        grid_folder: the slide's ``grids/<slide_id>`` folder.
        nmf_dir: the fitted NMF folder (``k<K>.pt`` per K).
        ks: the class counts K applied.
        device: torch device setting (``auto``: CUDA when torch sees a GPU, else CPU).
        out: the slide's output folder (``apply/<slide_id>``), replaced.
        target: the class the grid's GradCAM is of (the grid settings' ``positive_class``).

    Returns:
        The device used, the grid's shape, its tiles, and the GradCAM figures written (none, with
        the reason, for a grid without GradCAM; the reason is also logged as a warning).
    """
    used = resolve_device(device)
    grid = load_grid(grid_folder)
    shutil.rmtree(out, ignore_errors=True)
    panel: tuple[str, Image.Image] | None = None
    skipped: str | None = None
    try:
        panel = gradcam_figure(grid, target, out)
    except NoGradCamError as exc:
        skipped = str(exc)
        log.warning("explain apply: %s: no GradCAM figure: %s", grid.slide_id, skipped)
    for k in ks:
        apply_slide(grid, load_h(nmf_dir, k, used), out, gradcam=panel)
    files = (GRADCAM_PNG, *(compare_png(k) for k in ks)) if panel is not None else ()
    rows, cols = grid.count.shape
    return SlideApplied(device_label(used), (int(rows), int(cols)), len(grid.tiles), files, skipped)
