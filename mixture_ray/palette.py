"""One colour per finding, the same on every slide of a run (fixed by the classifier's class order)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib import colormaps

if TYPE_CHECKING:
    from collections.abc import Sequence

NEUTRAL = {"other": (150, 150, 150), "background": (255, 255, 255)}


def finding_colours(classes: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """Class name -> RGB: 'other' grey, the rest from a qualitative palette in class order."""
    named = [c for c in classes if c not in NEUTRAL]
    cmap = colormaps["tab10" if len(named) <= 10 else "tab20"]
    colours = {}
    for i, name in enumerate(named):
        r, g, b, _ = cmap(i % cmap.N)
        colours[name] = (round(r * 255), round(g * 255), round(b * 255))
    return {c: NEUTRAL.get(c) or colours[c] for c in classes}
