"""Supplementary figures of the MIXTURE paper drawn from the stats tables (matplotlib, Agg backend).

- score by diagnosis (Fig. S4 style): each case's out-of-fold random forest score, a box per group
  with the cases jittered on top;
- finding correlation (Fig. S5 style): the correlation matrix of finding frequencies across
  magnifications, as a heatmap with the coefficients written in the cells.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from mixture_ray.stats.plots import save_figure

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import pandas as pd
    from matplotlib.figure import Figure


def score_by_group(score: pd.Series, group: pd.Series, path: Path, title: str, ylabel: str,
                   threshold: float | None = None, seed: int = 0) -> Figure:
    """Box plot of ``score`` per ``group`` level with every case as a jittered point.

    Args:
        score: one score per case (case id index).
        group: the case's group (same index); levels are drawn in sorted order.
        path: the PNG written.
        title: the figure's title.
        ylabel: the score axis' label.
        threshold: a dotted line at this score, when given.
        seed: seed of the horizontal jitter.

    Returns:
        The figure (closed).
    """
    levels = sorted(set(group.astype(str)))
    values = [score[(group.astype(str) == level).to_numpy()].to_numpy(dtype=float) for level in levels]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(levels), 4.6))
    ax.boxplot(values, showfliers=False, widths=0.5)
    ax.set_xticks(np.arange(1, len(levels) + 1), [f"{lv}\n(n={len(v)})" for lv, v in zip(levels, values,
                                                                                            strict=True)])
    rng = np.random.default_rng(seed)
    for i, v in enumerate(values, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=12, alpha=0.7, color=f"C{i - 1}")
    if threshold is not None:
        ax.axhline(threshold, ls=":", c="grey", lw=0.8)
    ax.set(ylabel=ylabel, title=title)
    ax.title.set_fontsize(10)
    return save_figure(fig, path)



def correlation_heatmap(matrix: pd.DataFrame, path: Path, title: str,
                        colours: Mapping[str, str] | None = None) -> Figure:
    """Heatmap of a square correlation matrix (rows and columns in the same order), -1 to 1.

    Args:
        matrix: the correlation matrix, findings as index and columns; NaN cells are left blank.
        path: the PNG written.
        title: the figure's title.
        colours: finding -> its palette colour, used for the tick labels (others black).

    Returns:
        The figure (closed).
    """
    names = [str(c) for c in matrix.columns]
    values = matrix.to_numpy(dtype=float)
    edge = 2.5 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(edge + 1.2, edge))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    for text, name in [*zip(ax.get_xticklabels(), names, strict=True),
                       *zip(ax.get_yticklabels(), names, strict=True)]:
        text.set_color((colours or {}).get(name, "black"))
    if len(names) <= 30:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5,
                        color="white" if abs(v) > 0.6 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Pearson r")
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
