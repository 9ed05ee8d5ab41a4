"""The QC thumbnail: the slide with flagged regions tinted, sampled tiles boxed, a title line."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Colours of what is drawn: pen ink, folds, blurry tiles, sharp sampled tiles.
PEN, FOLD, BLURRY, SHARP = (255, 0, 255), (255, 140, 0), (220, 0, 0), (0, 160, 0)
TITLE = {"pass": (0, 120, 0), "flag": (200, 110, 0), "fail": (200, 0, 0)}


def _tint(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.5) -> None:
    image[mask] = ((1 - alpha) * image[mask] + alpha * np.asarray(colour, np.float32)).astype(np.uint8)


def qc_thumbnail(thumbnail: np.ndarray, *, pen: np.ndarray, fold: np.ndarray, boxes: np.ndarray,
                 blurry: np.ndarray, level0_size: tuple[int, int], title: str, decision: str) -> Image.Image:
    """Draw what QC found over the slide thumbnail.

    Args:
        thumbnail: (h, w, 3) uint8 image of the slide.
        pen: pen-ink mask in thumbnail geometry.
        fold: fold mask in thumbnail geometry.
        boxes: (n, 3) level-0 x, y and edge of the sampled tiles.
        blurry: (n,) True for the blurry ones.
        level0_size: the slide's level-0 (width, height).
        title: one line written above the image.
        decision: pass, flag or fail (the title's colour).

    Returns:
        The drawn image.
    """
    image = thumbnail.copy()
    _tint(image, pen, PEN)
    _tint(image, fold, FOLD)
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + 16), "white")
    canvas.paste(Image.fromarray(image), (0, 16))
    draw = ImageDraw.Draw(canvas)
    sx, sy = image.shape[1] / level0_size[0], image.shape[0] / level0_size[1]
    for (x, y, edge), bad in zip(boxes, blurry, strict=True):
        draw.rectangle([x * sx, 16 + y * sy, (x + edge) * sx - 1, 16 + (y + edge) * sy - 1],
                       outline=BLURRY if bad else SHARP, width=2 if bad else 1)
    draw.text((2, 2), title, fill=TITLE.get(decision, (0, 0, 0)), font=ImageFont.load_default())
    return canvas


def boxes_mask(shape: tuple[int, int], boxes: np.ndarray, level0_size: tuple[int, int]) -> np.ndarray:
    """A (h, w) mask of level-0 boxes (x, y, edge) drawn into an image of ``shape``."""
    mask = np.zeros(shape, bool)
    sx, sy = shape[1] / level0_size[0], shape[0] / level0_size[1]
    for x, y, edge in boxes:
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        y1, x1 = max(y0 + 1, int(np.ceil((y + edge) * sy))), max(x0 + 1, int(np.ceil((x + edge) * sx)))
        mask[y0:y1, x0:x1] = True
    return mask
