"""The finding palette (``mixture_ray.palette``) for stats plots: a finding has its map colour here too.

Maps, montages and exports colour a magnification's findings by the classifier's class order. The
cases stage writes every class of that order into ``counts`` beside ``frequencies`` (frequencies
drop excluded findings, which would shift the colours), so the order is read from there when it is
found, else from the frequency table's own columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from mixture_ray.palette import finding_colours

if TYPE_CHECKING:
    from collections.abc import Sequence

BLACK = "#000000"
WHITE_TEXT = "#999999"  # 'background' is white on maps; grey keeps its label readable


def class_order(frequencies_path: Path, columns: Sequence[str]) -> list[str]:
    """``<mag>x/<finding>`` columns in the classifier's class order, all findings included.

    Args:
        frequencies_path: the frequency table read (``counts.parquet|csv`` is looked for beside it).
        columns: the frequency table's feature columns (the fallback order).

    Returns:
        The counts table's feature columns when it holds every one of ``columns``, else ``columns``.
    """
    folder = Path(frequencies_path).parent
    for name in ("counts.parquet", "counts.csv"):
        path = folder / name
        try:
            if not path.is_file():
                continue
            names = pq.read_schema(path).names if name.endswith("parquet") else \
                list(pd.read_csv(path, nrows=0).columns)
        except (OSError, ValueError):
            continue
        order = [str(c) for c in names if "/" in str(c)]
        if set(columns) <= set(order):
            return order
    return list(columns)


def feature_colours(columns: Sequence[str]) -> dict[str, str]:
    """Hex colour of every ``<mag>x/<finding>`` column: the palette of its magnification's findings.

    Args:
        columns: feature columns in class order (see :func:`class_order`); a name without ``/``
            (a clinical covariate) gets black.

    Returns:
        Column -> ``#rrggbb``.
    """
    by_mag: dict[str, list[str]] = {}
    for column in columns:
        mag, sep, finding = column.partition("/")
        if sep:
            by_mag.setdefault(mag, []).append(finding)
    colours = {}
    for mag, findings in by_mag.items():
        for finding, (r, g, b) in finding_colours(list(dict.fromkeys(findings))).items():
            hex_colour = f"#{r:02x}{g:02x}{b:02x}"
            colours[f"{mag}/{finding}"] = WHITE_TEXT if hex_colour == "#ffffff" else hex_colour
    return {c: colours.get(c, BLACK) for c in columns}
