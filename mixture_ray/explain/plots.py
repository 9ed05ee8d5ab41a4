"""Heatmaps, class overlays and analysis figures (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


def class_colours(k: int) -> np.ndarray:
    """Return k RGB colours (uint8) from the tab10/tab20 palette."""
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    return (np.array([cmap(i % cmap.N)[:3] for i in range(k)]) * 255).astype(np.uint8)


def heatmaps(weights: np.ndarray, valid: np.ndarray, path: Path, title: str) -> None:
    """One intensity panel per class (rows x cols x K weights); uncovered cells masked."""
    k = weights.shape[-1]
    cols = min(k, 4)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < k:
            img = np.ma.masked_where(~valid, weights[..., i])
            im = ax.imshow(img, cmap="magma", interpolation="nearest")
            ax.set_title(f"class {i}", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def multiclass(weights: np.ndarray, valid: np.ndarray, size: tuple[int, int], path: Path) -> None:
    """Write :func:`multiclass_image` of the weights as a PNG.

    Args:
        weights: rows x cols x K NMF weights.
        valid: rows x cols covered cells.
        size: (width, height) of the image in pixels (the slide thumbnail's).
        path: the PNG written.
    """
    multiclass_image(weights, valid, size).save(path)


def multiclass_image(weights: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Every class's heatmap in its own colour on one image of ``size`` (the slide's aspect).

    Each class's weight is scaled by its 99th percentile over the covered cells and clipped
    (a_c in [0, 1]); a cell takes the mean of the class colours weighted by a_c², blended on white
    by max_c a_c, so a cell where only class c is active, at or above that level, is exactly c's
    colour (:func:`class_colours`, as in the overlay), and where classes overlap the stronger one
    sets the hue. Uncovered cells are white. A legend box is drawn in the top-left corner.

    Args:
        weights: rows x cols x K NMF weights.
        valid: rows x cols covered cells.
        size: (width, height) of the image in pixels (the slide thumbnail's).

    Returns:
        The RGB image.
    """
    k = weights.shape[-1]
    lut = class_colours(k).astype(float)
    covered = weights[valid] if valid.any() else np.zeros((1, k))
    top = np.percentile(covered, 99, axis=0)
    top = np.where(top > 0, top, covered.max(axis=0))
    level = np.where(valid[..., None], weights / np.where(top > 0, top, 1.0), 0.0).clip(0, 1)
    share = level**2
    total = share.sum(axis=-1, keepdims=True)
    mix = (share @ lut) / np.where(total > 0, total, 1.0)
    alpha = level.max(axis=-1, keepdims=True)
    rgb = np.rint((1 - alpha) * 255 + alpha * mix).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST)
    _legend(image, [f"class {c}" for c in range(k)], class_colours(k))
    return image


def _legend(image: Image.Image, labels: Sequence[str], colours: np.ndarray) -> None:
    """A white box in the top-left corner: one colour square and label per line."""
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    line = 14
    width = 18 + max(int(draw.textlength(t, font=font)) for t in labels) + 6
    draw.rectangle((2, 2, 2 + width, 4 + line * len(labels)), fill=(255, 255, 255), outline=(0, 0, 0))
    for i, (text, colour) in enumerate(zip(labels, colours, strict=True)):
        y = 5 + i * line
        draw.rectangle((6, y, 16, y + 10), fill=tuple(int(v) for v in colour), outline=(0, 0, 0))
        draw.text((20, y - 1), text, fill=(0, 0, 0), font=font)


def overlay(thumb: np.ndarray, classes: np.ndarray, valid: np.ndarray, path: Path,
            alpha: float = 0.45) -> None:
    """Argmax class colours blended on the thumbnail (uncovered cells left as they are)."""
    k = int(classes.max(initial=0)) + 1
    lut = class_colours(max(k, 1))
    rgb = lut[np.clip(classes, 0, len(lut) - 1)]
    h, w = thumb.shape[:2]
    big = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.NEAREST)).astype(float)
    mask = np.asarray(Image.fromarray(valid.astype(np.uint8) * 255).resize(
        (w, h), Image.Resampling.NEAREST)) > 0
    out = thumb.astype(float)
    out[mask] = (1 - alpha) * out[mask] + alpha * big[mask]
    Image.fromarray(out.clip(0, 255).astype(np.uint8)).save(path)


#: Colour map of GradCAM figures: perceptual, and its light end is yellow, never the white of
#: cells without tissue.
GRADCAM_CMAP = "viridis"
#: Height in pixels of the colour bar band under a GradCAM map (caption, colour ramp, 0 and max).
COLOUR_BAR_PX = 44
_TITLE_PX = 18  # the title row above each panel of :func:`side_by_side`
_GAP_PX = 8  # white space between panels


def _cmap_rgb(level: np.ndarray) -> np.ndarray:
    """uint8 RGB of :data:`GRADCAM_CMAP` at ``level`` in [0, 1] (any shape; a last axis of 3 added)."""
    from matplotlib import colormaps

    rgba: np.ndarray = np.asarray(colormaps[GRADCAM_CMAP](np.asarray(level, np.float64).clip(0, 1)))
    rgb: np.ndarray = np.rint(rgba[..., :3] * 255).astype(np.uint8)
    return rgb


def gradcam_image(cam: np.ndarray, valid: np.ndarray, size: tuple[int, int], label: str) -> Image.Image:
    """A slide's GradCAM in :data:`GRADCAM_CMAP`, scaled to its max, with a colour bar under it.

    Each covered cell takes the colour of cam / (the max of cam over covered cells); uncovered
    cells (no tissue tile) are white. With a max of 0 every covered cell has the colour of 0.

    Args:
        cam: rows x cols slide GradCAM (non-negative).
        valid: rows x cols covered cells.
        size: (width, height) of the map in pixels (the slide thumbnail's).
        label: the colour bar's caption, e.g. "GradCAM (class 1), scaled to the slide's max".

    Returns:
        The RGB image: the map at ``size`` on top, the colour bar band (:data:`COLOUR_BAR_PX` high:
        caption, colour ramp, "0" and the max) under it; as wide as the map, or as the caption
        where that is wider (the map then left-aligned on white).
    """
    top = float(cam[valid].max()) if valid.any() else 0.0
    level = np.zeros(cam.shape, np.float64)
    if top > 0:
        level[valid] = cam[valid] / top
    rgb = _cmap_rgb(level)
    rgb[~valid] = 255
    picture = Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST)
    bar = _colour_bar(size[0], label, top)
    out = Image.new("RGB", (max(size[0], bar.width), size[1] + bar.height), (255, 255, 255))
    out.paste(picture, (0, 0))
    out.paste(bar, (0, size[1]))
    return out


def _colour_bar(width: int, label: str, top: float) -> Image.Image:
    """The caption, a left-to-right colour ramp from 0 to 1, and its end values "0" and ``top``."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    high = f"max {top:.3g}"
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(width, int(probe.textlength(label, font=font)) + 8,
                int(probe.textlength(f"0 {high}", font=font)) + 16)
    band = Image.new("RGB", (width, COLOUR_BAR_PX), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    draw.text((4, 2), label, fill=(0, 0, 0), font=font)
    x0, x1 = 4, width - 4
    ramp = _cmap_rgb(np.broadcast_to(np.linspace(0.0, 1.0, x1 - x0), (10, x1 - x0)))
    band.paste(Image.fromarray(ramp), (x0, 16))
    draw.rectangle((x0 - 1, 15, x1, 26), outline=(0, 0, 0))
    draw.text((x0, 29), "0", fill=(0, 0, 0), font=font)
    draw.text((x1 - int(draw.textlength(high, font=font)), 29), high, fill=(0, 0, 0), font=font)
    return band


def side_by_side(panels: Sequence[tuple[str, Image.Image]]) -> Image.Image:
    """Panels left to right, each under its title, on white.

    Args:
        panels: (title, RGB image) per panel.

    Returns:
        An image of width sum(panel widths) + 8 px between panels and height 18 px (the title row)
        + the tallest panel; panels are top-aligned under their titles (a title is cut at its
        panel's width).
    """
    from PIL import ImageDraw, ImageFont

    width = sum(p.width for _, p in panels) + _GAP_PX * (len(panels) - 1)
    height = _TITLE_PX + max(p.height for _, p in panels)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    font = ImageFont.load_default()
    x = 0
    for title, panel in panels:
        strip = Image.new("RGB", (panel.width, _TITLE_PX), (255, 255, 255))
        ImageDraw.Draw(strip).text((2, 3), title, fill=(0, 0, 0), font=font)
        canvas.paste(strip, (x, 0))
        canvas.paste(panel.convert("RGB"), (x, _TITLE_PX))
        x += panel.width + _GAP_PX
    return canvas


def matrix(values: np.ndarray, path: Path, title: str, *, xlabels: Sequence[str] | None = None,
           ylabels: Sequence[str] | None = None, err: np.ndarray | None = None,
           vmin: float = -1.0, vmax: float = 1.0) -> None:
    """Annotated matrix plot (value, or value ± err)."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * values.shape[1], 1.0 + 0.6 * values.shape[0]))
    ax.imshow(values, cmap="coolwarm", vmin=vmin, vmax=vmax)
    for (r, c), v in np.ndenumerate(values):
        text = f"{v:.2f}" if err is None else f"{v:.2f}\n±{err[r, c]:.2f}"
        ax.text(c, r, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(values.shape[1]), xlabels or [str(i) for i in range(values.shape[1])],
                  rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(values.shape[0]), ylabels or [str(i) for i in range(values.shape[0])],
                  fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def bars(groups: dict[str, np.ndarray], path: Path, title: str, ylabel: str) -> None:
    """Grouped bars: one group per class, one bar per key of ``groups``."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / max(len(groups), 1)
    for i, (name, values) in enumerate(groups.items()):
        ax.bar(np.arange(len(values)) + i * width, np.nan_to_num(values), width, label=name)
    ax.set_xlabel("NMF class")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def roc(fpr: np.ndarray, tpr: np.ndarray, auc: float, path: Path, title: str) -> None:
    """ROC curve with its AUC."""
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.plot(fpr, tpr, label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
