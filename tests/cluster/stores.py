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


def _embedding_table(frame: pd.DataFrame, features: np.ndarray) -> pa.Table:
    dim = features.shape[1]
    return pa.table(
        {
            "slide_id": frame.slide_id, "case_id": frame.case_id, "x": frame.x, "y": frame.y,
            "magnification": pa.array(frame.magnification, pa.float32()),
            "head": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(len(frame) * 4, np.float32)), 4),
            "features": pa.FixedSizeListArray.from_arrays(pa.array(features.ravel()), dim),
            "error": pa.nulls(len(frame), pa.string()),
        },
        schema=embedding_schema(head_dim=4, feature_dim=dim),
    )


def case_part_store(root: Path, *, cases: int = 6, slides: int = 2, per_slide: int = 60, dim: int = 16,
                    groups: int = 3, seed: int = 0) -> pd.DataFrame:
    """Row-sized parts as the embed stage commits them: ``part-c<i>.parquet`` holds case ``c<i>``'s slides.

    The index lists each slide's part, case and rows per magnification (5x and 20x, alternating
    rows); the last case has only 2 rows at 20x (fewer than most ks). Returns the truth with a
    ``group`` column (well-separated planted groups) and the ``features``.
    """
    from mixture_ray.locations import Location
    from mixture_ray.store.part_commits import StagedPart, commit_parts

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 8, (groups, dim))
    store = StageFolder(root, stage="embed", item_column="slide_id")
    store.prepare({})
    staging = store.new_staging()
    staged, frames, totals = [], [], {}
    for case in range(cases):
        rows = []
        for s in range(slides):
            slide = f"s{case}-{s}"
            n = per_slide if case < cases - 1 or s == 0 else 4
            mags = np.where(np.arange(n) % 2 == 0, 5.0, 20.0)
            rows.append(pd.DataFrame({"slide_id": slide, "case_id": f"c{case}", "x": np.arange(n) * 64,
                                      "y": 0, "magnification": mags, "group": rng.integers(0, groups, n)}))
        frame = pd.concat(rows, ignore_index=True)
        if case == cases - 1:  # 2 rows at 20x: the first slide keeps only 5x rows
            keep = (frame.slide_id != f"s{case}-0") | (frame.magnification == 5.0)
            frame = frame[keep].reset_index(drop=True)
        features = (centres[frame.group] + rng.normal(0, 1, (len(frame), dim))).astype(np.float32)
        part = Location.of(staging.path) / f"part-c{case}.parquet"
        part.write_parquet(_embedding_table(frame, features))
        counts = frame.groupby("slide_id").size().to_dict()
        per_mag = {str(s): {str(m): int(n) for m, n in g.magnification.value_counts().items()}
                   for s, g in frame.groupby("slide_id")}
        staged.append(StagedPart(part, {str(s): int(n) for s, n in counts.items()}, per_mag,
                                 dict.fromkeys(map(str, counts), f"c{case}")))
        totals.update({str(s): int(n) for s, n in counts.items()})
        frames.append(frame.assign(features=list(features)))
    commit_parts(store, staged, totals=totals)
    store.finish(requested=totals, failures=[], extra={})
    return pd.concat(frames, ignore_index=True)
