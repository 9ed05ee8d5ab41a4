"""Draw a finding map: coloured tiles blended over the slide thumbnail, plus a legend panel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def overlay_tiles(
    thumbnail: np.ndarray, level0_size: tuple[int, int], tiles: np.ndarray, class_index: np.ndarray,
    colours: Sequence[tuple[int, int, int]], alpha: float,
) -> np.ndarray:
    """Blend each tile's class colour over ``thumbnail`` (H, W, 3).

    ``tiles`` is (n, 3) int: level-0 x, y and edge; ``level0_size`` is the slide's (width, height).
    """
    height, width = thumbnail.shape[:2]
    sx, sy = width / level0_size[0], height / level0_size[1]
    layer = np.zeros((height, width, 3), np.float32)
    covered = np.zeros((height, width), bool)
    palette = np.asarray(colours, np.float32)
    for (x, y, size), cls in zip(tiles, class_index, strict=True):
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1, y1 = max(x0 + 1, int(np.ceil((x + size) * sx))), max(y0 + 1, int(np.ceil((y + size) * sy)))
        layer[y0:y1, x0:x1] = palette[cls]
        covered[y0:y1, x0:x1] = True
    out = thumbnail.astype(np.float32)
    out[covered] = (1 - alpha) * out[covered] + alpha * layer[covered]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


#: Height of a text line, the padding around panels, and the edge of a legend swatch (pixels).
LINE, PAD, SWATCH = 16, 8, 12
#: Top-left corner of the map inside the image :func:`with_legend` makes (below the title line).
MAP_ORIGIN = (0, LINE + PAD)


def legend_width(labels: Sequence[str]) -> int:
    """Pixels a legend of ``labels`` needs (padding, swatch and the longest label).

    Args:
        labels: the text of each legend line.

    Returns:
        The legend's width in pixels.
    """
    font = ImageFont.load_default()
    return PAD * 3 + SWATCH + max((int(font.getlength(label)) for label in labels), default=0)


def draw_legend(draw: ImageDraw.ImageDraw, origin: tuple[int, int],
                entries: Sequence[tuple[str, tuple[int, int, int]]]) -> None:
    """One line per entry from ``origin`` down: a colour swatch, then its label.

    Args:
        draw: where to draw.
        origin: top-left corner of the legend.
        entries: (label, RGB) per line, in order.
    """
    font = ImageFont.load_default()
    x, top = origin
    for i, (label, rgb) in enumerate(entries):
        y = top + PAD + i * LINE
        draw.rectangle([x + PAD, y, x + PAD + SWATCH, y + SWATCH], fill=rgb, outline=(0, 0, 0))
        draw.text((x + PAD * 2 + SWATCH, y), label, fill=(0, 0, 0), font=font)


def with_legend(
    image: np.ndarray, title: str, colours: Mapping[str, tuple[int, int, int]], counts: Mapping[str, int]
) -> Image.Image:
    """The map with a title line above and a legend (colour, finding, tile count) to its right."""
    font = ImageFont.load_default()
    entries = [(f"{name} ({counts.get(name, 0)})", rgb) for name, rgb in colours.items()]
    h, w = image.shape[:2]
    top = MAP_ORIGIN[1]
    canvas = Image.new("RGB", (w + legend_width([e[0] for e in entries]),
                               max(h, len(entries) * LINE + PAD * 2) + top), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, PAD // 2), title, fill=(0, 0, 0), font=font)
    canvas.paste(Image.fromarray(image), (MAP_ORIGIN[0], top))
    draw_legend(draw, (w, top), entries)
    return canvas
