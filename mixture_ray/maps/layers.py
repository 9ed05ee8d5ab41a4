"""What a map shows: a layer of per-tile classes from a prediction store or from one k-means clustering.

A layer's rows carry the tile geometry the drawing needs (``slide_id, x, y, size_level0``) and
each tile's class (``class_index`` into ``classes``, ``finding`` its name). Cluster assignments
have no tile edge: it is the smallest spacing of the slide's tile origins (the tiling stride).
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib import colormaps

from mixture_ray.errors import ConfigError
from mixture_ray.palette import finding_colours
from mixture_ray.store.clusterings import clustering_folder
from mixture_ray.store.predictions import load_predictions
from mixture_ray.store.schemas import TILE_ID_COLUMNS, magnification_label

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mixture_ray.locations import Uri

RGB = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Layer:
    """One map's tiles and classes: a prediction store, or a clustering (classes ``c0 .. c<k-1>``)."""

    kind: Literal["findings", "clusters"]
    magnification: float | None
    classes: tuple[str, ...]
    rows: pd.DataFrame
    title: str  # what the map shows, e.g. "findings at 20x" or "k-means k=8 at 20x"

    @property
    def label(self) -> str:
        """The magnification as a panel title: ``20x`` (``unknown`` when not known)."""
        return magnification_label(self.magnification)

    def for_slide(self, slide_id: str) -> Layer:
        """This layer with only the rows of ``slide_id`` (none when the slide has no tile here)."""
        rows = self.rows[self.rows["slide_id"] == slide_id].reset_index(drop=True)
        return dataclasses.replace(self, rows=rows)

    def by_slide(self) -> dict[str, Layer]:
        """This layer split into one layer per slide, grouping the rows once (not once per slide)."""
        return {str(slide): dataclasses.replace(self, rows=rows.reset_index(drop=True))
                for slide, rows in self.rows.groupby("slide_id", sort=False)}


def prediction_layers(stores: Sequence[Path | Uri]) -> list[Layer]:
    """One layer per complete prediction store, by increasing magnification.

    Args:
        stores: prediction stores of `mixture-ray classify` (folders or URIs); several must hold
            distinct magnifications.

    Returns:
        The layers, lowest magnification first (unknown last).
    """
    layers = []
    for store in stores:
        predictions = load_predictions(store)
        label = magnification_label(predictions.magnification)
        layers.append(Layer("findings", predictions.magnification, predictions.classes,
                            predictions.rows, f"findings at {label}"))
    labels = [layer.label for layer in layers]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(f"predictions: several stores hold {', '.join(twice)} predictions "
                          f"({', '.join(map(str, stores))}); give one store per magnification")
    return sorted(layers, key=lambda layer: math.inf if layer.magnification is None else layer.magnification)


def cluster_names(n: int) -> tuple[str, ...]:
    """The class names of clusters ``0 .. n-1``: ``c0 .. c<n-1>`` (as the baseline's columns name them)."""
    return tuple(f"c{i}" for i in range(n))


def cluster_layer(clusters: Path, k: int, magnification: float) -> Layer:
    """The raw k-means labels of one clustering written by `mixture-ray cluster`.

    Args:
        clusters: the cluster stage's output folder.
        k: the clustering's number of clusters.
        magnification: the clustering's magnification.

    Returns:
        A layer whose classes are the cluster ids, tile edges inferred from each slide's grid.
    """
    folder = clustering_folder(clusters, magnification, k)
    labels = folder / "assignments.parquet"
    if not labels.exists() or not (folder / "centroids.npy").exists():
        found = sorted(str(p.relative_to(clusters)) for p in Path(clusters).glob("mag-*/k-*"))
        raise ConfigError(f"clusters: {folder} holds no clustering (found {', '.join(found) or 'none'}); "
                          f"run `mixture-ray cluster` with k={k} at {magnification_label(magnification)} "
                          "or choose one of those")
    n = int(np.load(folder / "centroids.npy", mmap_mode="r").shape[0])
    rows = pq.read_table(str(labels), columns=[*TILE_ID_COLUMNS, "cluster"]).to_pandas()
    rows["class_index"] = rows["cluster"].astype(np.int64)
    names = cluster_names(n)
    rows["finding"] = [names[c] for c in rows["class_index"]]
    rows["size_level0"] = grid_edges(rows, where=str(folder))
    return Layer("clusters", magnification, names, rows,
                 f"k-means k={k} at {magnification_label(magnification)}")


def grid_edges(rows: pd.DataFrame, *, where: str) -> np.ndarray:
    """Per row, the tile edge of its slide: the smallest positive spacing of the slide's tile origins.

    A slide with a single tile takes the median edge of the other slides.

    Args:
        rows: tiles with ``slide_id, x, y`` (level-0 top-left corners of one magnification).
        where: the data's name, for the error when no slide has two tiles.

    Returns:
        int64 edges aligned with ``rows``.
    """
    edges: dict[str, int] = {}
    for slide_id, tiles in rows.groupby("slide_id"):
        steps = [np.diff(np.unique(tiles[axis].to_numpy())) for axis in ("x", "y")]
        positive = [int(d.min()) for d in steps if d.size]
        if positive:
            edges[str(slide_id)] = min(positive)
    if not edges and len(rows):
        raise ConfigError(f"clusters: every slide of {where} has a single tile; its size cannot be told")
    fallback = int(np.median(list(edges.values()))) if edges else 0
    return np.asarray([edges.get(str(s), fallback) for s in rows["slide_id"]], np.int64)


def cluster_colours(n: int) -> dict[str, RGB]:
    """Fixed colours of clusters ``c0 .. c<n-1>``: cluster i has one colour whatever k is.

    The finding palette's tab10 first (so up to 10 clusters look like findings), then the light
    tab20 shades, tab20b and tab20c, then hues spaced by the golden angle.

    Args:
        n: the number of clusters.

    Returns:
        Cluster name -> RGB, in cluster order.
    """
    table = [colormaps["tab10"](i)[:3] for i in range(10)]
    table += [colormaps["tab20"](i)[:3] for i in range(1, 20, 2)]
    table += [colormaps[name](i)[:3] for name in ("tab20b", "tab20c") for i in range(20)]
    colours: dict[str, RGB] = {}
    for i, name in enumerate(cluster_names(n)):
        rgb = table[i] if i < len(table) else colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.7, 0.9)
        colours[name] = (round(rgb[0] * 255), round(rgb[1] * 255), round(rgb[2] * 255))
    return colours


def layer_colours(layers: Sequence[Layer]) -> dict[str, RGB]:
    """The colours of every class the layers show, shared by all of them (legend order).

    Args:
        layers: the prediction layers, or the one cluster layer.

    Returns:
        Class name -> RGB: a finding has one colour in every panel.
    """
    if layers and layers[0].kind == "clusters":
        return cluster_colours(len(layers[0].classes))
    return finding_colours(list(dict.fromkeys(c for layer in layers for c in layer.classes)))
