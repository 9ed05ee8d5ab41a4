"""A committed embedding store split into several Parquet files (blocks for the distributed engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mixture_ray.store.folder import StageFolder
from mixture_ray.store.schemas import embedding_schema


def split_embedding_store(root: Path, *, cases: int = 4, per_case: int = 150, dim: int = 16,
                          groups: int = 4, seed: int = 0) -> pd.DataFrame:
    """One Parquet file per case, planted groups, two magnifications (5x, 20x); returns the truth."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (groups, dim))
    store = StageFolder(root, stage="embed", item_column="slide_id")
    store.prepare({})
    tmp = store.new_tmp_dir()
    tmp.mkdir()
    frames = []
    for case in range(cases):
        mags = np.where(np.arange(per_case) % 3 == 0, 5.0, 20.0)
        group = rng.integers(0, groups, per_case)
        features = (centres[group] + rng.normal(0, 1, (per_case, dim))).astype(np.float32)
        frame = pd.DataFrame({"slide_id": f"s{case}", "case_id": f"c{case}", "x": np.arange(per_case) * 64,
                              "y": 0, "magnification": mags, "group": group})
        table = pa.table(
            {
                "slide_id": frame.slide_id, "case_id": frame.case_id, "x": frame.x, "y": frame.y,
                "magnification": pa.array(mags, pa.float32()),
                "head": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(per_case * 4, np.float32)), 4),
                "features": pa.FixedSizeListArray.from_arrays(pa.array(features.ravel()), dim),
                "error": pa.nulls(per_case, pa.string()),
            },
            schema=embedding_schema(head_dim=4, feature_dim=dim),
        )
        pq.write_table(table, tmp / f"part-{case}.parquet")
        frames.append(frame)
    slides = {f"s{case}": "" for case in range(cases)}
    store.commit(tmp, slides)
    store.finish(requested=slides, failures=[], extra={})
    return pd.concat(frames, ignore_index=True)
