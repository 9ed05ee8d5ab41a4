"""Site batch effects of the v2 cohort: a stain and a scanner per site, applied at render time.

Stain: level-0 RGB is turned into optical density (OD), unmixed into haematoxylin, eosin and a
residual by colour deconvolution (the stain vectors of :mod:`procedural`), re-mixed with the
site's stain vectors (haematoxylin bluer or redder and stronger or fainter, eosin stronger or
fainter) and turned back into RGB. Scanner: a per-channel gain, a gamma and a brightness offset.
Glass (OD near 0) stays near white, so tiling's background rule still holds. Site 0 is the
identity; sites 1..5 are fixed presets, later ones are drawn from the seed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mixture_ray.synth.procedural import E_OD, H_OD

# Haematoxylin hue direction: +1 bluer (absorbs more red), -1 redder / more purple.
H_HUE = np.array([0.14, 0.0, -0.1], dtype=np.float32)
_BASIS = np.stack([H_OD, E_OD, np.cross(H_OD, E_OD) / np.linalg.norm(np.cross(H_OD, E_OD))])
_UNMIX = np.linalg.inv(_BASIS.astype(np.float64))
_OD_LUT = (-np.log((np.arange(256, dtype=np.float64) + 1.0) / 256.0)).astype(np.float32)

# (h_strength, h_hue, e_strength, gain RGB, gamma, offset) of sites 1..5.
PRESETS: tuple[tuple[float, float, float, tuple[float, float, float], float, float], ...] = (
    (1.2, 1.0, 0.82, (0.97, 0.99, 1.02), 1.0, 0.0),
    (0.85, -0.5, 1.25, (1.02, 0.98, 0.96), 1.07, -2.0),
    (1.1, -1.0, 1.05, (0.98, 0.98, 0.99), 1.1, -4.0),
    (0.88, 0.5, 0.85, (1.0, 1.01, 1.02), 0.94, 2.0),
    (1.15, 0.0, 1.2, (1.01, 0.97, 0.98), 1.04, -2.0),
)


@dataclasses.dataclass(frozen=True)
class Site:
    """One site's stain (haematoxylin strength and hue, eosin strength) and scanner response."""

    name: str
    h_strength: float = 1.0
    h_hue: float = 0.0
    e_strength: float = 1.0
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: float = 1.0
    offset: float = 0.0

    @property
    def identity(self) -> bool:
        """True when the transform leaves pixels unchanged."""
        return self == Site(self.name)

    def od_matrix(self) -> np.ndarray:
        """3x3 matrix taking reference OD (row vector) to this site's OD."""
        target = np.stack([self.h_strength * (H_OD + self.h_hue * H_HUE),
                           self.e_strength * E_OD, _BASIS[2]]).astype(np.float64)
        matrix: np.ndarray = (_UNMIX @ target).astype(np.float32)
        return matrix

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """This site's look of a reference RGB image.

        Args:
            rgb: (..., 3) uint8 pixels as rendered with the reference stain.

        Returns:
            (..., 3) uint8 pixels with the site's stain and scanner applied.
        """
        if self.identity:
            return rgb
        od = np.maximum(_OD_LUT[rgb] @ self.od_matrix(), 0.0)
        linear = np.exp(-od)  # transmitted light, 1 = glass
        out = 255.0 * linear ** np.float32(self.gamma) * np.asarray(self.gain, np.float32)
        looked: np.ndarray = np.clip(np.rint(out + self.offset), 0, 255).astype(np.uint8)
        return looked

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, with the OD matrix for reference."""
        out = dataclasses.asdict(self)
        out["gain"] = list(self.gain)
        out["od_matrix"] = np.round(self.od_matrix(), 5).tolist()
        return out


def make_sites(rng: np.random.Generator, n: int) -> tuple[Site, ...]:
    """``n`` sites: site 0 the identity, then the presets, then random draws from ``rng``.

    Args:
        rng: drawn from only for sites beyond the presets.
        n: number of sites (>= 1).

    Returns:
        The sites, named ``site0`` .. ``site{n-1}``.
    """
    out = [Site("site0")]
    for k in range(1, n):
        if k <= len(PRESETS):
            h, hue, e, gain, gamma, offset = PRESETS[k - 1]
        else:
            h, hue, e = rng.uniform(0.85, 1.2), rng.uniform(-1, 1), rng.uniform(0.8, 1.25)
            gain = tuple(float(g) for g in rng.uniform(0.97, 1.02, 3))  # type: ignore[assignment]
            gamma, offset = rng.uniform(0.94, 1.1), rng.uniform(-4, 2)
        out.append(Site(f"site{k}", float(h), float(hue), float(e), gain, float(gamma),
                        float(offset)))
    return tuple(out)


def deal_sites(rng: np.random.Generator, n_cases: int, n_sites: int) -> np.ndarray:
    """Site index of each case: balanced (counts differ by at most one), shuffled.

    Args:
        rng: the shuffle's random source.
        n_cases: number of cases.
        n_sites: number of sites.

    Returns:
        (n_cases,) int array of site indices.
    """
    dealt: np.ndarray = rng.permutation(np.arange(n_cases) % n_sites)
    return dealt
