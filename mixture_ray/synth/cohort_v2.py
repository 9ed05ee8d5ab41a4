"""What a v2 cohort adds to v1: a site per case and a sub-type per layout region.

All v2 draws come from their own seed stream (the fourth child of the cohort seed), so the
layouts, masks, fractions and outcomes of a v2 cohort equal those of the v1 cohort with the same
seed; only the look of the slides (sub-type textures, site stain and scanner) differs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.synth import findings, subtypes
from mixture_ray.synth.sites import Site, deal_sites, make_sites

if TYPE_CHECKING:
    from collections.abc import Iterable

SUBTYPE_MASKS = "masks_subtype"


@dataclasses.dataclass(frozen=True)
class CaseLook:
    """A v2 case's site, probability of sub-type "b" per finding and region random source."""

    site: Site
    p_b: dict[int, float]
    rng: np.random.Generator

    def region_subtypes(self, codes: np.ndarray) -> np.ndarray:
        """Sub-type index of every layout region (draws from this case's random source)."""
        return subtypes.region_subtypes(self.rng, codes, self.p_b)


@dataclasses.dataclass(frozen=True)
class DesignV2:
    """The sites of a v2 cohort and the look of each case."""

    sites: tuple[Site, ...]
    cases: tuple[CaseLook, ...]

    @classmethod
    def draw(cls, seed: np.random.SeedSequence, n_cases: int, n_sites: int) -> DesignV2:
        """Sites, balanced shuffled site of each case and per-case sub-type probabilities.

        Args:
            seed: the v2 seed stream (independent of the v1 draws).
            n_cases: number of cases.
            n_sites: number of sites.

        Returns:
            The design; ``cases[i]`` is case ``i``'s look.
        """
        site_seed, *case_seeds = seed.spawn(n_cases + 1)
        rng = np.random.default_rng(site_seed)
        sites = make_sites(rng, n_sites)
        dealt = deal_sites(rng, n_cases, n_sites)
        looks = []
        for i, case_seed in enumerate(case_seeds):
            case_rng = np.random.default_rng(case_seed)
            looks.append(CaseLook(sites[int(dealt[i])], subtypes.case_probabilities(case_rng), case_rng))
        return cls(sites, tuple(looks))

    def describe(self) -> dict[str, Any]:
        """truth.json fields of the v2 design (sites, sub-types, how they were drawn)."""
        return {
            "sites": [s.to_dict() for s in self.sites],
            "site_transform": "RGB -> optical density -> unmix (H, E, residual) -> site stain "
                              "vectors -> RGB; then 255 * (I/255) ** gamma * gain + offset",
            "subtypes": [s.to_dict() for s in subtypes.SUBTYPES],
            "subtype_prior": f"per case and finding: P(sub-type b) ~ Beta{subtypes.SUBTYPE_PRIOR}; "
                             "each region draws its sub-type from it",
            "subtype_mask": f"{SUBTYPE_MASKS}/<slide_id>.png: finding code * 10 + sub-type index "
                            "(0 = a, 1 = b); background 0",
        }


def subtype_mask(codes: np.ndarray, region_subtypes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Sub-type mask (finding code * 10 + sub-type index) of a region map."""
    table = codes.astype(np.uint8) * 10 + region_subtypes.astype(np.uint8)
    table[codes == findings.BACKGROUND] = 0
    mask: np.ndarray = table[regions]
    return mask


def case_record(look: CaseLook, sub_masks: Iterable[np.ndarray]) -> dict[str, Any]:
    """Per-case v2 truth: site, planned P(sub-type b) and realised sub-type tissue fractions."""
    return {
        "site": look.site.name,
        "p_subtype_b": {findings.finding(c).name: round(p, 6) for c, p in look.p_b.items()},
        "subtype_fractions": {k: round(v, 6) for k, v in subtypes.subtype_fractions(sub_masks).items()},
    }
