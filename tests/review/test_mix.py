"""Vectorised mixes and tile sites equal the per-row code they replaced, on awkward site values."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest

from mixture_ray.review.mix import KINDS, UNKNOWN, Mix, Source, cluster_mixes, tile_sites

SITES = [" north ", "north", "", "   ", None, np.nan, "south", 3, UNKNOWN, "\tsouth\n"]


def old_tile_sites(assignments: pd.DataFrame, sites: Mapping[str, str] | None) -> pd.Series | None:
    """The per-row code review used before (a Python call per tile)."""
    if "site" in assignments.columns:
        values = assignments["site"]
    elif sites is not None:
        values = assignments["slide_id"].astype(str).map(dict(sites))
    else:
        return None
    text = values.astype("object").map(lambda v: None if pd.isna(v) else str(v).strip() or None)
    return text.rename("site")


def old_cluster_mixes(assignments: pd.DataFrame, *, sites: Mapping[str, str] | None = None,
                      top: int = 3) -> dict[int, tuple[Mix, ...]]:
    """The mixes review computed before (a copy of the whole frame, names by ``astype(str)``)."""
    frame = assignments.copy()
    known = old_tile_sites(assignments, sites)
    if known is not None:
        frame["site"] = known
    mixes: dict[int, list[Mix]] = {int(str(c)): [] for c in frame["cluster"].unique()}
    for kind, column in KINDS.items():
        if column not in frame.columns:
            continue
        values = frame[column].astype("object").where(frame[column].notna(), UNKNOWN).astype(str)
        counts = (
            pd.DataFrame({"cluster": frame["cluster"].astype("int64"), "name": values})
            .groupby(["cluster", "name"], sort=False).size().reset_index(name="tiles")
            .sort_values(["cluster", "tiles", "name"], ascending=[True, False, True], kind="stable")
        )
        totals = counts.groupby("cluster")["tiles"].sum()
        distinct = counts.groupby("cluster").size()
        for cluster, rows in counts.groupby("cluster").head(top).groupby("cluster", sort=True):
            cid = int(str(cluster))
            sources = tuple(Source(str(n), int(t), int(t) / int(totals[cid]))
                            for n, t in zip(rows["name"], rows["tiles"], strict=True))
            mixes[cid].append(Mix(kind, int(distinct[cid]), sources))
    return {cid: tuple(found) for cid, found in sorted(mixes.items())}


def awkward(n: int, seed: int) -> pd.DataFrame:
    """Tiles whose slide, case and site values include NaN, None, blanks, whitespace, numbers and
    the word ``unknown``, out of index order."""
    rng = np.random.default_rng(seed)
    slides = np.array([f"s{i}" for i in range(12)] + ["7", "nan"], dtype=object)
    cases = np.array(["c1", "c2", None, np.nan, UNKNOWN, "c3"], dtype=object)
    sites = np.empty(len(SITES), dtype=object)
    sites[:] = SITES
    frame = pd.DataFrame({
        "slide_id": slides[rng.integers(0, len(slides), n)],
        "case_id": cases[rng.integers(0, len(cases), n)],
        "x": rng.integers(0, 1000, n), "y": rng.integers(0, 1000, n),
        "magnification": 20.0,
        "cluster": rng.integers(0, 6, n).astype(np.int32),
        "site": sites[rng.integers(0, len(sites), n)],
    })
    frame.loc[frame.cluster == 5, "site"] = "  "  # a cluster with no known site at all
    return frame.set_index(rng.permutation(n) + 100)


SLIDE_SITES = {"s0": " north ", "s1": "", "s2": "   ", "s3": "south", "s4": np.nan, "s5": None,
               "7": "\tsouth\n", "nan": "east", "s6": UNKNOWN}


@pytest.mark.parametrize("seed", [0, 1])
def test_tile_sites_and_mixes_equal_the_per_row_code(seed: int) -> None:
    frame = awkward(3000, seed)
    no_column = frame.drop(columns="site")
    for assignments, sites in [(frame, None), (frame, SLIDE_SITES), (no_column, SLIDE_SITES),
                               (no_column, {}), (no_column, None), (frame.iloc[:0], None),
                               (no_column.iloc[:0], SLIDE_SITES)]:
        new, old = tile_sites(assignments, sites), old_tile_sites(assignments, sites)
        if old is None:
            assert new is None
        else:
            assert new is not None
            pd.testing.assert_series_equal(new, old)
            assert new.map(type).isin([str, type(None)]).all()  # None where unknown, never NaN
        for top in (1, 3, 50):
            assert cluster_mixes(assignments, sites=sites, top=top) == old_cluster_mixes(
                assignments, sites=sites, top=top)


def test_a_categorical_or_numeric_site_column_reads_as_text() -> None:
    frame = awkward(500, 2)
    frame["site"] = pd.Categorical(frame["site"].map(lambda v: None if pd.isna(v) else str(v)))
    pd.testing.assert_series_equal(tile_sites(frame, None), old_tile_sites(frame, None))
    frame["site"] = np.where(frame.cluster % 2 == 0, np.nan, frame.cluster.astype(float))
    pd.testing.assert_series_equal(tile_sites(frame, None), old_tile_sites(frame, None))
    assert cluster_mixes(frame) == old_cluster_mixes(frame)
