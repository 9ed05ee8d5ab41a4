"""Visual sub-types of the v2 cohort: two looks per tissue finding, some alike across findings.

Sub-type "a" (index 0) of a finding is its v1 texture; "b" (index 1) is drawn by
:mod:`subtype_textures`. Each case has its own probability of "b" per finding (Beta(1, 1)), and
each region of a slide draws its sub-type from it, so a finding's sub-type shares vary between
cases while the diagnosis follows the finding's total fraction. The sub-type mask code of a
region is ``finding code * 10 + sub-type index`` (background stays 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mixture_ray.synth import findings, subtype_textures, textures
from mixture_ray.synth.procedural import Stains, to_rgb
from mixture_ray.synth.render import TextureBank, pack_rgba

if TYPE_CHECKING:
    from collections.abc import Iterable

LETTERS = "ab"
SUBTYPE_PRIOR = (1.0, 1.0)  # Beta(a, b) of a case's probability of sub-type "b", per finding


@dataclasses.dataclass(frozen=True)
class Subtype:
    """One sub-type: finding code, index (0 = "a"), texture, description and look-alike."""

    code: int
    index: int
    texture: Callable[[np.random.Generator, int], Stains]
    description: str
    lookalike: str | None = None

    @property
    def name(self) -> str:
        """``<finding>_<letter>``, e.g. ``fibroblastic_foci_b``."""
        return f"{findings.finding(self.code).name}_{LETTERS[self.index]}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for truth.json."""
        return {"name": self.name, "finding": findings.finding(self.code).name,
                "index": self.index, "mask_code": self.code * 10 + self.index,
                "texture": self.texture.__name__, "description": self.description,
                "lookalike": self.lookalike}


def _a(code: int, lookalike: str | None = None) -> Subtype:
    return Subtype(code, 0, textures.RENDERERS[code], findings.finding(code).description, lookalike)


_F, st = findings, subtype_textures
SUBTYPES: tuple[Subtype, ...] = (
    _a(_F.NORMAL),
    Subtype(_F.NORMAL, 1, st.collapsed_alveolar, st.collapsed_alveolar.__doc__ or "",
            "dense_fibrosis_b"),
    _a(_F.DENSE_FIBROSIS),
    Subtype(_F.DENSE_FIBROSIS, 1, st.hyalinised_fibrosis, st.hyalinised_fibrosis.__doc__ or "",
            "normal_alveolar_b"),
    _a(_F.INFLAMMATION, "fibroblastic_foci_b"),
    Subtype(_F.INFLAMMATION, 1, st.myxoid_inflammation, st.myxoid_inflammation.__doc__ or "",
            "fibroblastic_foci_a"),
    _a(_F.FIBROBLASTIC_FOCI, "cellular_inflammation_b"),
    Subtype(_F.FIBROBLASTIC_FOCI, 1, st.pink_spindle_foci, st.pink_spindle_foci.__doc__ or "",
            "cellular_inflammation_a"),
    _a(_F.LYMPHOID),
    Subtype(_F.LYMPHOID, 1, st.loose_lymphoid, st.loose_lymphoid.__doc__ or ""),
    _a(_F.FAT),
    Subtype(_F.FAT, 1, st.small_fat, st.small_fat.__doc__ or ""),
)
_BACKGROUND = Subtype(_F.BACKGROUND, 0, textures.background, "glass / airspace")


def build_bank(rng: np.random.Generator, size: int, variants: int) -> TextureBank:
    """``variants`` periodic patches of every sub-type (and of background), with sub-type ids.

    Args:
        rng: texture random source.
        size: patch edge in pixels (a power of two).
        variants: patches per sub-type.

    Returns:
        A bank whose ``subtypes`` array gives each patch's sub-type index.

    Raises:
        ValueError: ``size`` is not a power of two.
    """
    if size & (size - 1):
        raise ValueError(f"texture size must be a power of two (got {size})")
    patches, codes, subs = [], [], []
    for item in (_BACKGROUND, *SUBTYPES):
        for _ in range(variants):
            patches.append(pack_rgba(to_rgb(item.texture(rng, size), rng)))
            codes.append(item.code)
            subs.append(item.index)
    return TextureBank(np.stack(patches), np.asarray(codes, np.uint8), np.asarray(subs, np.uint8))


def case_probabilities(rng: np.random.Generator) -> dict[int, float]:
    """A case's probability of sub-type "b" for every tissue finding (Beta prior)."""
    return {code: float(rng.beta(*SUBTYPE_PRIOR)) for code in findings.TISSUE_CODES}


def region_subtypes(rng: np.random.Generator, codes: np.ndarray, p_b: dict[int, float]) -> np.ndarray:
    """Sub-type index of every region (background regions 0), drawn from the case's ``p_b``."""
    p = np.array([p_b.get(int(c), 0.0) for c in codes])
    return (rng.random(len(codes)) < p).astype(np.uint8)


def subtype_fractions(masks: Iterable[np.ndarray]) -> dict[str, float]:
    """Share of tissue (sub-type mask pixels over all slides) of every sub-type, by name."""
    counts = np.zeros(256, np.int64)
    for mask in masks:
        counts += np.bincount(mask.ravel(), minlength=256)
    tissue = int(counts[10:].sum())
    return {s.name: (float(counts[s.code * 10 + s.index]) / tissue if tissue else 0.0)
            for s in SUBTYPES}
