"""The block-by-block .h5ad writer reads back as anndata's own writer's file of the whole frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mixture_ray.export.anndata_file import H5adWriter, obs_names


def _obs(n: int) -> pd.DataFrame:
    frame = pd.DataFrame({
        "slide_id": [f"slide-{i // 10}" for i in range(n)], "case_id": ["case-1"] * n,
        "x": np.arange(n, dtype=np.int64) * 32, "y": np.arange(n, dtype=np.int64),
        "magnification": np.full(n, 20.0), "mpp": np.full(n, 0.5, np.float32),
        "size_level0": np.full(n, 64, np.int32), "cluster_k2": (np.arange(n) % 2).astype(np.int32),
        "finding": [("b10", "b9", "a")[i % 3] for i in range(n)], "tag": [f"t{i}" for i in range(n)],
    })
    frame.index = obs_names(frame)
    return frame


def _in_memory(path: Path, x: np.ndarray, obs: pd.DataFrame, provenance: dict[str, object]) -> None:
    """What the export wrote before it streamed: one AnnData of every row."""
    import anndata as ad

    frame = obs.reset_index(drop=True).copy()
    frame.index = [f"{s}:{a}:{b}:{m:g}" for s, a, b, m in
                   zip(frame.slide_id, frame.x, frame.y, frame.magnification, strict=True)]
    ad.AnnData(X=x, obs=frame, obsm={"spatial": frame[["x", "y"]].to_numpy(np.int64)},
               uns={"mixture_ray": {k: json.dumps(v) for k, v in provenance.items()}}).write_h5ad(path)


@pytest.mark.parametrize("n", [1, 45])
def test_blocks_written_out_of_order_read_back_as_the_whole_frame(tmp_path: Path, n: int) -> None:
    import anndata as ad

    obs = _obs(n)
    if n > 1:
        obs["size_level0"] = obs["size_level0"].astype("float64").where(np.arange(n) != 30)  # pandas: float64
    x = np.random.default_rng(0).random((n, 5), dtype=np.float32)
    provenance = {"embeddings": "store", "magnification": 20.0}
    _in_memory(tmp_path / "whole.h5ad", x, obs, provenance)
    writer = H5adWriter(tmp_path / "blocks.h5ad", n, provenance)
    cut = n // 3
    blocks = [(cut, n), (0, cut)] if cut else [(0, n)]
    for start, stop in blocks:  # a later block first; one int32 block, then one with a missing value
        block = obs.iloc[start:stop]
        if n > 1 and start == 0:
            block = block.assign(size_level0=block["size_level0"].astype("int32"))
        writer.write(start, x[start:stop], block)
    writer.close()
    got, want = ad.read_h5ad(tmp_path / "blocks.h5ad"), ad.read_h5ad(tmp_path / "whole.h5ad")
    pd.testing.assert_frame_equal(got.obs, want.obs)
    pd.testing.assert_frame_equal(got.var, want.var)
    np.testing.assert_array_equal(got.X, want.X)
    np.testing.assert_array_equal(got.obsm["spatial"], want.obsm["spatial"])
    assert got.uns == want.uns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.h5ad", "whole.h5ad"]  # no scratch left


def test_rows_that_do_not_fit_are_named(tmp_path: Path) -> None:
    writer = H5adWriter(tmp_path / "a.h5ad", 3, {})
    obs = _obs(4)
    with pytest.raises(ValueError, match=r"a\.h5ad: rows 0\.\.4 .* do not fit a file of 3 rows"):
        writer.write(0, np.zeros((4, 2), np.float32), obs)
    writer.write(0, np.zeros((3, 2), np.float32), obs.iloc[:3])
    with pytest.raises(ValueError, match="obs columns"):
        writer.write(0, np.zeros((1, 2), np.float32), obs.iloc[:1, :3])
    writer.close()
