"""Prediction store reader: the rows of a complete `mixture-ray classify` output and its classes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from mixture_ray.store.folder import committed_files, read_settings
from mixture_ray.store.schemas import PREDICTION_ID_COLUMNS


@dataclasses.dataclass(frozen=True)
class Predictions:
    """A complete prediction store read back: the rows (no probabilities) and the class order."""

    rows: pd.DataFrame
    classes: tuple[str, ...]
    magnification: float | None


def load_predictions(store: Path, *, probabilities: bool = False) -> Predictions:
    """Rows of a complete prediction store (refuses a partial one) and its classes."""
    files = committed_files(store)
    settings = read_settings(Path(store))
    columns = [*PREDICTION_ID_COLUMNS, "finding", "class_index", "confidence"]
    if probabilities:
        columns.append("probabilities")
    table = pq.read_table([str(f) for f in files], columns=columns) if files else None
    rows = table.to_pandas() if table is not None else pd.DataFrame(columns=columns)
    mag = settings.get("magnification")
    return Predictions(rows, tuple(settings["classes"]), None if mag is None else float(mag))
