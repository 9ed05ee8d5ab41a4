"""Macenko H&E stain estimation and normalisation in numpy (no Ray, no torch).

Method: M. Macenko et al., "A method for normalizing histology slides for quantitative
analysis", IEEE ISBI 2009, pp. 1107-1110. RGB is turned into optical density (OD); pixels with
OD above ``beta`` in every channel are projected onto the plane of the two largest eigenvectors of
their OD covariance; the robust extremes (``alpha`` and ``100 - alpha`` percentiles) of the angle
in that plane are the haematoxylin and eosin OD vectors; least squares gives each pixel's two
concentrations, and the 99th percentile of each is the stain's maximal concentration.
Normalisation rescales the concentrations to a reference's maxima and rebuilds RGB with the
reference's stain vectors. The reference values are those of the original implementation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Transmitted light intensity: what a pixel without stain reads as.
LIGHT = 240.0
#: Reference H&E stain vectors (columns: haematoxylin, eosin) and maximal concentrations.
REFERENCE_VECTORS = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX_CONCENTRATION = np.array([1.9705, 1.0308])
MIN_PIXELS = 50


@dataclasses.dataclass(frozen=True)
class StainEstimate:
    """The H&E stains of an image: OD vectors (3, 2: haematoxylin, eosin) and concentrations.

    Attributes:
        vectors: unit OD vectors, column 0 haematoxylin, column 1 eosin.
        max_concentration: 99th percentile of each stain's concentration over stained pixels.
        stained_pixels: how many pixels the estimate was made from.
    """

    vectors: np.ndarray
    max_concentration: np.ndarray
    stained_pixels: int

    def intensity(self) -> float:
        """Mean ratio of the maximal concentrations to the reference's (1.0: as strong as it)."""
        return float(np.mean(self.max_concentration / REFERENCE_MAX_CONCENTRATION))


REFERENCE = StainEstimate(REFERENCE_VECTORS, REFERENCE_MAX_CONCENTRATION, 0)


def optical_density(rgb: np.ndarray, light: float = LIGHT) -> np.ndarray:
    """Optical density (natural log) of RGB uint8 pixels, shape (..., 3)."""
    return -np.log((rgb.astype(np.float64) + 1.0) / light)


def estimate_stains(rgb: np.ndarray, *, alpha: float = 1.0, beta: float = 0.15) -> StainEstimate:
    """Macenko stain vectors and maximal concentrations of an RGB image.

    Args:
        rgb: (h, w, 3) or (n, 3) uint8 pixels (tissue; background is ignored by ``beta``).
        alpha: percentile of the robust angle extremes.
        beta: OD below which a channel counts as unstained (transparent).

    Returns:
        The stain estimate.

    Raises:
        ValueError: fewer than 50 stained pixels.
    """
    od = optical_density(rgb).reshape(-1, 3)
    stained = od[(od > beta).all(axis=1)]
    if len(stained) < MIN_PIXELS:
        raise ValueError(f"only {len(stained)} stained pixels; a stain estimate needs {MIN_PIXELS}")
    _, vectors = np.linalg.eigh(np.cov(stained.T))
    plane = vectors[:, 1:3]
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)
    projected = stained @ plane
    angle = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angle, [alpha, 100 - alpha])
    v_low = plane @ np.array([np.cos(low), np.sin(low)])
    v_high = plane @ np.array([np.cos(high), np.sin(high)])
    # Haematoxylin absorbs more red than eosin does: the vector with the larger red OD is H.
    pair = [v_low, v_high] if v_low[0] > v_high[0] else [v_high, v_low]
    stains = np.abs(np.stack(pair, axis=1))
    stains /= np.linalg.norm(stains, axis=0, keepdims=True)
    concentration = _concentrations(stained, stains)
    max_concentration = np.percentile(concentration, 99, axis=1)
    return StainEstimate(stains, np.maximum(max_concentration, 1e-6), len(stained))


def _concentrations(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """(2, n) concentrations of (n, 3) OD pixels by least squares against (3, 2) stain vectors."""
    solution, *_ = np.linalg.lstsq(stains, od.T, rcond=None)
    return np.asarray(solution)


def normalise_stain(rgb: np.ndarray, reference: StainEstimate | np.ndarray = REFERENCE) -> np.ndarray:
    """Macenko-normalise an H&E image to a reference's stain vectors and strengths.

    Args:
        rgb: (h, w, 3) uint8 image to normalise.
        reference: a :class:`StainEstimate` or a reference RGB image (estimated here); the default
            is Macenko's published reference.

    Returns:
        The normalised (h, w, 3) uint8 image; an image with too little stain to estimate is
        returned unchanged.
    """
    target = reference if isinstance(reference, StainEstimate) else estimate_stains(reference)
    try:
        source = estimate_stains(rgb)
    except ValueError:
        return rgb
    od = optical_density(rgb).reshape(-1, 3)
    concentration = _concentrations(od, source.vectors)
    concentration *= (target.max_concentration / source.max_concentration)[:, None]
    out = LIGHT * np.exp(-(target.vectors @ concentration))
    normalised: np.ndarray = np.clip(np.rint(out.T), 0, 255).astype(np.uint8).reshape(rgb.shape)
    return normalised
