"""Apply a fitted NMF to slide grids: W with H fixed, argmax class, heatmaps and overlays.

Writes ``apply/<slide_id>/k<K>_weights.npy`` (rows x cols x K, 0 where uncovered),
``k<K>_classes.npy`` (argmax, -1 where uncovered), ``k<K>_heatmaps.png`` (a panel per class),
``k<K>_overlay.png`` (argmax colours on the thumbnail) and ``k<K>_multiclass.png`` (every class's
heatmap overlaid in its own colour, with a legend, at the thumbnail's size).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mixture_ray.explain import plots
from mixture_ray.explain.extract import load_grid
from mixture_ray.explain.fitting import load_h, valid_vectors
from mixture_ray.explain.nmf import device_label, resolve_device, transform

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


def apply_slide(grid: SlideGrid, h: torch.Tensor, out: Path) -> None:
    """Weights, classes and the three figures for one slide and one K."""
    k = h.shape[0]
    out.mkdir(parents=True, exist_ok=True)
    weights = slide_weights(grid, h)
    valid = grid.count > 0
    classes = np.where(valid, weights.argmax(axis=-1), -1).astype(np.int16)
    np.save(out / f"k{k}_weights.npy", weights)
    np.save(out / f"k{k}_classes.npy", classes)
    plots.heatmaps(weights, valid, out / f"k{k}_heatmaps.png", f"{grid.slide_id}: K={k}")
    thumb = np.asarray(Image.open(grid.folder / "thumb.png").convert("RGB"))
    plots.overlay(thumb, np.maximum(classes, 0), valid, out / f"k{k}_overlay.png")
    plots.multiclass(weights, valid, (thumb.shape[1], thumb.shape[0]), out / f"k{k}_multiclass.png")


def apply_grid(grid_folder: Path, nmf_dir: Path, ks: Sequence[int], *, device: str,
               out: Path) -> tuple[str, tuple[int, int], int]:
    """Apply every K of a fitted NMF to one slide's grid, from files to files (no Ray here).

    Args:
        grid_folder: the slide's ``grids/<slide_id>`` folder.
        nmf_dir: the fitted NMF folder (``k<K>.pt`` per K).
        ks: the class counts K applied.
        device: torch device setting (``auto``: CUDA when torch sees a GPU, else CPU).
        out: the slide's output folder (``apply/<slide_id>``), replaced.

    Returns:
        (device label ``cpu`` or ``cuda:<i>``, (rows, cols) of the grid, tiles of the slide).
    """
    used = resolve_device(device)
    grid = load_grid(grid_folder)
    shutil.rmtree(out, ignore_errors=True)
    for k in ks:
        apply_slide(grid, load_h(nmf_dir, k, used), out)
    rows, cols = grid.count.shape
    return device_label(used), (int(rows), int(cols)), len(grid.tiles)
