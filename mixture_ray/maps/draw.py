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


def with_legend(
    image: np.ndarray, title: str, colours: Mapping[str, tuple[int, int, int]], counts: Mapping[str, int]
) -> Image.Image:
    """The map with a title line above and a legend (colour, finding, tile count) to its right."""
    font = ImageFont.load_default()
    line, pad, swatch = 16, 8, 12
    names = list(colours)
    label_w = max((int(font.getlength(f"{n} ({counts.get(n, 0)})")) for n in names), default=0)
    legend_w = pad * 3 + swatch + label_w
    h, w = image.shape[:2]
    canvas = Image.new("RGB", (w + legend_w, max(h, len(names) * line + pad * 2) + line + pad), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad // 2), title, fill=(0, 0, 0), font=font)
    top = line + pad
    canvas.paste(Image.fromarray(image), (0, top))
    for i, name in enumerate(names):
        y = top + pad + i * line
        draw.rectangle([w + pad, y, w + pad + swatch, y + swatch], fill=colours[name], outline=(0, 0, 0))
        draw.text((w + pad * 2 + swatch, y), f"{name} ({counts.get(name, 0)})", fill=(0, 0, 0), font=font)
    return canvas
