"""Compose level-0 slide pixels from a layout and a bank of periodic texture patches.

Every region samples one texture patch of its finding at its own random offset, flips and
transposition, so neighbouring regions of the same finding do not repeat each other. Pixel
lookups go through the mask with a small smooth displacement so region edges are wavy rather
than staircase. Rendering is by row band, so a slide never has to exist whole in memory.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from mixture_ray.synth import findings
from mixture_ray.synth.procedural import smooth_noise
from mixture_ray.synth.textures import render_texture

if TYPE_CHECKING:
    from collections.abc import Callable

    from mixture_ray.synth.layout import SlideLayout

JITTER_PERIOD = 256  # period of the edge-displacement field, level-0 px


@dataclasses.dataclass(frozen=True)
class TextureBank:
    """Periodic patches packed as RGBA uint32, ``codes[i]`` the finding of patch ``i``.

    ``subtypes[i]`` is the sub-type index of patch ``i`` (v2 banks); None in v1 banks.
    """

    patches: np.ndarray  # (n, size, size) uint32
    codes: np.ndarray  # (n,) finding codes
    subtypes: np.ndarray | None = None  # (n,) sub-type indices (v2)

    @property
    def size(self) -> int:
        """Patch edge in pixels (a power of two)."""
        return int(self.patches.shape[1])


def pack_rgba(rgb: np.ndarray) -> np.ndarray:
    """An (h, w, 3) uint8 RGB patch packed as (h, w) uint32 RGBA with opaque alpha."""
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    packed: np.ndarray = np.ascontiguousarray(rgba).view(np.uint32)[..., 0]
    return packed


def build_bank(rng: np.random.Generator, size: int = 1024, variants: int = 2) -> TextureBank:
    """Render ``variants`` patches of ``size`` px (power of two) for every finding."""
    if size & (size - 1):
        raise ValueError(f"texture size must be a power of two (got {size})")
    patches, codes = [], []
    for item in findings.FINDINGS:
        for _ in range(variants):
            patches.append(pack_rgba(render_texture(item.code, rng, size)))
            codes.append(item.code)
    return TextureBank(np.stack(patches), np.asarray(codes, dtype=np.uint8))


class SlideRenderer:
    """Renders row bands of one slide at level 0 (``width`` x ``height`` px).

    v2 slides also pass ``subtypes`` (the sub-type index of every layout region, matched
    against ``bank.subtypes``) and ``look`` (the site's stain and scanner, applied per band).
    """

    def __init__(self, rng: np.random.Generator, layout: SlideLayout, bank: TextureBank,
                 width: int, height: int, mask_downsample: int,
                 subtypes: np.ndarray | None = None,
                 look: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.layout, self.bank, self.look = layout, bank, look
        self.width, self.height, self.ds = width, height, mask_downsample
        n = len(layout.codes)
        size = bank.size
        tex = np.empty(n, np.int32)
        for i, code in enumerate(layout.codes):
            match = bank.codes == code
            if subtypes is not None and bank.subtypes is not None:
                match &= bank.subtypes == subtypes[i]
            tex[i] = rng.choice(np.flatnonzero(match))
        transpose = rng.integers(0, 2, n).astype(bool)
        self._base = tex * size * size
        self._su = np.where(transpose, 1, size).astype(np.int32)
        self._sv = np.where(transpose, size, 1).astype(np.int32)
        self._sy = rng.choice([-1, 1], n).astype(np.int32)
        self._sx = rng.choice([-1, 1], n).astype(np.int32)
        self._oy = rng.integers(0, size, n).astype(np.int32)
        self._ox = rng.integers(0, size, n).astype(np.int32)
        amp = 0.5 * mask_downsample
        self._jy = np.rint(amp * smooth_noise(rng, JITTER_PERIOD, 10)).astype(np.int32)
        self._jx = np.rint(amp * smooth_noise(rng, JITTER_PERIOD, 10)).astype(np.int32)
        self._flat = bank.patches.reshape(-1)

    def _jitter(self, field: np.ndarray, rows: np.ndarray) -> np.ndarray:
        reps = -(-self.width // JITTER_PERIOD)
        return np.tile(field[rows % JITTER_PERIOD], (1, reps))[:, : self.width]

    def rows(self, y0: int, h: int) -> np.ndarray:
        """Pixels of rows ``y0 .. y0+h-1`` as (h, width, 3) uint8."""
        h = min(h, self.height - y0)
        rows = np.arange(y0, y0 + h, dtype=np.int32)
        cols = np.arange(self.width, dtype=np.int32)
        mh, mw = self.layout.regions.shape
        my = np.clip((rows[:, None] + self._jitter(self._jy, rows)) // self.ds, 0, mh - 1)
        mx = np.clip((cols[None, :] + self._jitter(self._jx, rows)) // self.ds, 0, mw - 1)
        r = self.layout.regions[my, mx]
        m = self.bank.size - 1
        a = (self._sy[r] * rows[:, None] + self._oy[r]) & m
        b = (self._sx[r] * cols[None, :] + self._ox[r]) & m
        idx = self._base[r] + a * self._su[r] + b * self._sv[r]
        packed: np.ndarray = self._flat[idx]
        rgb: np.ndarray = packed.view(np.uint8).reshape(h, self.width, 4)[..., :3]
        return rgb if self.look is None else self.look(rgb)
