"""Explicit pyarrow schemas of every dataset the stages exchange (one place owns them)."""

from __future__ import annotations

import json
import math

import pyarrow as pa

#: The tile key: one tile of one slide at one magnification (x, y: level-0 top-left corner).
TILE_KEY: tuple[str, ...] = ("slide_id", "x", "y", "magnification")
#: The tile key with the case id, the identity columns every per-tile output carries.
TILE_ID_COLUMNS: tuple[str, ...] = ("slide_id", "case_id", "x", "y", "magnification")
#: Columns a prediction row carries besides the prediction itself.
PREDICTION_ID_COLUMNS: tuple[str, ...] = (*TILE_ID_COLUMNS, "size_level0", "background_fraction")

#: Words of a mapping file besides the finding names: ``other`` is kept as a class of its own,
#: ``exclude`` drops the tiles of a mixed cluster.
OTHER, EXCLUDE = "other", "exclude"


def magnification_label(magnification: float | None) -> str:
    """The one label of a magnification, in folder names, columns and pages.

    Args:
        magnification: objective magnification; None or NaN when unknown (imported images).

    Returns:
        ``"20x"`` for 20.0, ``"2.5x"`` for 2.5, ``"unknown"`` when not known.
    """
    if magnification is None or math.isnan(magnification):
        return "unknown"
    return f"{magnification:g}x"


#: One row per slide in a manifest; ``path`` is resolved against the manifest's folder.
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("slide_id", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("mpp", pa.float64()),  # level-0 um/px override; null = read from the slide
    ]
)

#: One row per tile in the tile store.
TILE_SCHEMA = pa.schema(
    [
        pa.field("slide_id", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("magnification", pa.float32()),  # null for imported images of unknown scale
        pa.field("mpp", pa.float32()),  # um/px of the stored pixels
        pa.field("level", pa.int16()),  # pyramid level the pixels were read from
        pa.field("x", pa.int64()),  # level-0 top-left corner
        pa.field("y", pa.int64()),
        pa.field("tile_size", pa.int32()),  # edge in stored pixels
        pa.field("size_level0", pa.int32()),  # edge in level-0 pixels
        pa.field("background_fraction", pa.float32()),  # pixels with all of R, G, B > threshold
        pa.field("encoding", pa.string()),  # jpeg | png | none
        pa.field("image", pa.binary()),  # encoded pixels; null when encoding is none
        pa.field("label", pa.string()),  # class folder for imported images; null for slides
        pa.field("split", pa.string()),  # top folder of an imported tree (train/test); else null
        pa.field("source", pa.string()),  # slide or image file the tile came from
        pa.field("error", pa.string()),  # always null in committed data (failed items are removed)
    ]
)

#: Columns of a stage's failures table (``_failures.csv``): one row per item that failed.
FAILURE_COLUMNS = ("stage", "item_id", "source", "error")


def empty_table(schema: pa.Schema) -> pa.Table:
    """A zero-row table with ``schema``."""
    return schema.empty_table()


#: The identity fields of every per-tile output (``TILE_ID_COLUMNS`` with their types).
TILE_ID_FIELDS = (
    pa.field("slide_id", pa.string(), nullable=False),
    pa.field("case_id", pa.string(), nullable=False),
    pa.field("x", pa.int64()),
    pa.field("y", pa.int64()),
    pa.field("magnification", pa.float32()),
)


def embedding_schema(head_dim: int = 128, feature_dim: int = 512) -> pa.Schema:
    """One row per embedded tile, keyed like the tile store (slide_id, x, y, magnification)."""
    return pa.schema(
        [
            *TILE_ID_FIELDS,
            pa.field("head", pa.list_(pa.float32(), head_dim)),  # L2-normalised projection output
            pa.field("features", pa.list_(pa.float32(), feature_dim)),  # pooled backbone features
            pa.field("error", pa.string()),  # always null in committed data
        ]
    )


#: Embeddings of a ResNet18 ElEx: 128-d head, 512-d pooled features.
EMBEDDING_SCHEMA = embedding_schema()


def prediction_schema(classes: list[str]) -> pa.Schema:
    """One row per classified tile: keys, tile geometry, predicted finding and class probabilities.

    The class order is stored in the schema metadata (``classes``, a JSON list).
    """
    return pa.schema(
        [
            *TILE_ID_FIELDS,
            pa.field("size_level0", pa.int32()),  # tile edge in level-0 pixels (for maps)
            pa.field("background_fraction", pa.float32()),
            pa.field("finding", pa.string()),  # predicted class name
            pa.field("class_index", pa.int16()),  # index into the classes metadata
            pa.field("confidence", pa.float32()),  # probability of the predicted class
            pa.field("probabilities", pa.list_(pa.float32(), len(classes))),
            pa.field("error", pa.string()),  # always null in committed data
        ],
        metadata={"classes": json.dumps(list(classes))},
    )
