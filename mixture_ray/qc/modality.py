"""Is the slide a bright-field H&E? Dark-background (fluorescence) and DAB-dominant (IHC) checks."""

from __future__ import annotations

import dataclasses

import numpy as np

from mixture_ray.qc.masks import colour_planes


@dataclasses.dataclass(frozen=True)
class Modality:
    """What the slide looks like: background brightness, bright signal and brown (DAB) share.

    Attributes:
        background_value: median brightness (HSV value, 0-255) of the image's outer frame.
        bright_signal_fraction: share of pixels that are bright and saturated on a dark frame.
        dab_fraction: share of tissue pixels with DAB-brown hue.
        eosin_fraction: share of tissue pixels with eosin-pink hue.
        verdict: ``he`` or the reason it is not H&E.
    """

    background_value: float
    bright_signal_fraction: float
    dab_fraction: float
    eosin_fraction: float
    verdict: str


def frame(image: np.ndarray, share: float = 0.05) -> np.ndarray:
    """The pixels of the outer ``share`` of each side of an (h, w, ...) image."""
    h, w = image.shape[:2]
    dy, dx = max(1, round(h * share)), max(1, round(w * share))
    rest = image.shape[2:]
    sides = [image[:dy], image[-dy:], image[:, :dx], image[:, -dx:]]
    return np.concatenate([side.reshape(-1, *rest) for side in sides])


#: Least saturation of a DAB-brown pixel (hue 10-50 degrees). Light DAB is weakly saturated: a brown
#: whose blue drops about twice as far from white as its red has saturation 0.15 at an optical
#: density of about 0.3 (the previous cut-off, 0.25, left a lightly stained IHC slide under
#: ``dab_share``); H&E tissue seldom has that hue at any saturation (eosin is pink, 290-10 degrees).
DAB_MIN_SATURATION = 0.15


def classify_modality(rgb: np.ndarray, tissue: np.ndarray, *, dark_background: float = 80.0,
                      dab_share: float = 0.3) -> Modality:
    """Decide whether a low-resolution image is bright-field H&E.

    Args:
        rgb: (h, w, 3) uint8 image of the whole slide.
        tissue: its tissue mask.
        dark_background: a frame median brightness below this is a dark background.
        dab_share: a slide whose tissue is at least this share DAB-brown (hue 10-50 degrees,
            saturation above :data:`DAB_MIN_SATURATION`, not near-white), and more brown than pink,
            is IHC.

    Returns:
        The measurements and the verdict: ``he``, ``fluorescence``, ``dark background`` or ``ihc``.
    """
    p = colour_planes(rgb)
    background = float(np.median(frame(p.value)))
    bright = float(np.mean((p.value > 100) & (p.saturation > 0.4)))
    if tissue.any():
        hue, sat, val = p.hue[tissue], p.saturation[tissue], p.value[tissue]
        dab = float(np.mean((hue >= 10) & (hue <= 50) & (sat > DAB_MIN_SATURATION) & (val < 230)))
        eosin = float(np.mean(((hue >= 290) | (hue < 10)) & (sat > 0.1)))
    else:
        dab = eosin = 0.0
    if background < dark_background:
        verdict = "fluorescence" if bright > 0.01 else "dark background"
    elif dab >= dab_share and dab > eosin:
        verdict = "ihc"
    else:
        verdict = "he"
    return Modality(background, bright, dab, eosin, verdict)
