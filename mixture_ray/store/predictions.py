"""Prediction store reader: the rows of a complete `mixture-ray classify` output and its classes."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pandas as pd

from mixture_ray.locations import read_parquet_files
from mixture_ray.store.folder import committed_locations, read_settings
from mixture_ray.store.schemas import PREDICTION_ID_COLUMNS

if TYPE_CHECKING:
    from pathlib import Path

    from mixture_ray.locations import Uri


@dataclasses.dataclass(frozen=True)
class Predictions:
    """A complete prediction store read back: the rows (no probabilities) and the class order."""

    rows: pd.DataFrame
    classes: tuple[str, ...]
    magnification: float | None


def load_predictions(store: Path | Uri, *, probabilities: bool = False) -> Predictions:
    """Rows of a complete prediction store (a folder or a URI; refuses a partial one) and its classes."""
    files = committed_locations(store)
    settings = read_settings(store)
    columns = [*PREDICTION_ID_COLUMNS, "finding", "class_index", "confidence"]
    if probabilities:
        columns.append("probabilities")
    rows = read_parquet_files(files, columns=columns).to_pandas() if files else pd.DataFrame(columns=columns)
    mag = settings.get("magnification")
    return Predictions(rows, tuple(settings["classes"]), None if mag is None else float(mag))
