"""Helpers of the fine-tuning tests: a labels folder, and a small FinetuneConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mixture_ray.config import build_config
from mixture_ray.finetune.config import FinetuneConfig
from mixture_ray.store.folder import SUCCESS, write_json_atomic
from mixture_ray.store.schemas import TILE_ID_COLUMNS


def write_labels(folder: Path, frame: pd.DataFrame, *, success: bool = True) -> Path:
    """``frame``'s tiles as an integrate output folder (labels.parquet, and _SUCCESS unless told)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = frame.assign(source="test")[[*TILE_ID_COLUMNS, "finding", "source"]]
    pq.write_table(pa.Table.from_pandas(out, preserve_index=False), folder / "labels.parquet")
    if success:
        write_json_atomic(folder / SUCCESS, {"tiles": len(out)})
    return folder


def ft_cfg(labels: Path, tiles: Path, out: Path, **extra: Any) -> FinetuneConfig:
    values = {
        "labels": labels,
        "tiles": tiles,
        "out_dir": out,
        "model": "random",
        "name": "run",
        "epochs": 1,
        "batch_size": 8,
        "val_fraction": 0.34,
        "train.checkpoint_every": 3,
        "train.log_every": 5,
    }
    values.update(extra)
    return build_config(FinetuneConfig, values)
