"""QuPath GeoJSON: one ``tile`` object per tile, classified, with measurements (QuPath 0.4+).

QuPath imports a FeatureCollection by drag-and-drop or File > Import objects. Each feature has a
level-0 polygon (origin top-left), ``properties.objectType`` ``tile`` (light-weight objects, not
annotations), ``classification {name, color}`` and ``measurements`` as a name -> number mapping.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import pandas as pd


def tile_feature(x: int, y: int, size: int, name: str, colour: Sequence[int],
                 measurements: Mapping[str, float]) -> dict[str, Any]:
    """One QuPath tile object: a square of ``size`` level-0 px at (x, y), its class and numbers."""
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": "tile",
            "classification": {"name": name, "color": [int(c) for c in colour]},
            "measurements": {k: float(v) for k, v in measurements.items() if not math.isnan(float(v))},
        },
    }


def slide_features(rows: pd.DataFrame, *, class_column: str, colours: Mapping[str, Sequence[int]],
                   measurement_columns: Mapping[str, str]) -> list[dict[str, Any]]:
    """The tile objects of one slide's rows.

    Args:
        rows: one row per tile with ``x``, ``y``, ``size_level0``, the class column and the
            measurement columns.
        class_column: the column whose value classifies each tile.
        colours: class name -> RGB (the colours of the PNG maps).
        measurement_columns: measurement name in QuPath -> column.

    Returns:
        GeoJSON features, in row order.
    """
    names = list(measurement_columns)
    columns = [measurement_columns[n] for n in names]
    features = []
    for record in rows.to_dict("records"):
        name = str(record[class_column])
        values = {n: float(record[c]) for n, c in zip(names, columns, strict=True)}
        features.append(tile_feature(int(record["x"]), int(record["y"]), int(record["size_level0"]),
                                     name, colours.get(name, (128, 128, 128)), values))
    return features


def write_feature_collection(path: Path, features: list[dict[str, Any]]) -> None:
    """Write a GeoJSON FeatureCollection atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        json.dump({"type": "FeatureCollection", "features": features}, fh)
    os.replace(tmp, path)
