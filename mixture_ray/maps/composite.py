"""The composite slide figure: the slide, then its map at each magnification, one shared legend.

Layout (MIXTURE Fig. 4 / S3)::

    header (slide id)
    original     2.5x         5x           20x          legend
    [thumbnail]  [map 2.5x]   [map 5x]     [map 20x]    # finding ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from mixture_ray.maps.draw import LINE, PAD, draw_legend, legend_width

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy as np

#: Title of the first panel, the slide without colours.
ORIGINAL = "original"


def panel_origin(index: int, panel_width: int) -> tuple[int, int]:
    """Top-left corner of panel ``index``'s image in a composite (panel 0 is the slide itself).

    Args:
        index: the panel, from the left.
        panel_width: width of every panel's image in pixels.

    Returns:
        (x, y) of the panel's image in the composite.
    """
    return PAD + index * (panel_width + PAD), LINE * 2 + PAD


def composite_figure(
    header: str, panels: Sequence[tuple[str, np.ndarray]], colours: Mapping[str, tuple[int, int, int]]
) -> Image.Image:
    """Panels side by side, each under its title, with one legend to their right.

    Args:
        header: the line above everything (slide id, tile counts).
        panels: (title, RGB image) per panel, all of one size; the slide first.
        colours: finding -> RGB for the shared legend, in legend order.

    Returns:
        The composite image.
    """
    if not panels:
        raise ValueError("a composite needs at least one panel")
    font = ImageFont.load_default()
    height, width = panels[0][1].shape[:2]
    top = panel_origin(0, width)[1]
    legend_x = panel_origin(len(panels), width)[0] - PAD
    canvas = Image.new("RGB", (legend_x + legend_width(list(colours)),
                               top + max(height, len(colours) * LINE + PAD) + PAD), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, PAD // 2), header, fill=(0, 0, 0), font=font)
    for i, (title, image) in enumerate(panels):
        if image.shape[:2] != (height, width):
            raise ValueError(f"panel {title!r} is {image.shape[:2]}, the first is {(height, width)}")
        x, y = panel_origin(i, width)
        draw.text((x, y - LINE), title, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(image), (x, y))
    draw_legend(draw, (legend_x, top - PAD), list(colours.items()))
    return canvas
