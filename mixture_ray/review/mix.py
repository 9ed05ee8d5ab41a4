"""Where a cluster's tiles come from: how many slides, cases (and sites), and the top ones with shares.

A cluster drawn from one slide or one site is often a scanner or staining artefact rather than a
finding, so the review page shows this beside each montage. Counts are over every tile of the
cluster (the clustering's assignments), not only the montage's sample.

Sites come from a ``site`` column of the assignments, else of the slide manifest given to the
review stage, else of the tile store; without one the site line is simply left out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mixture_ray.errors import ManifestError

if TYPE_CHECKING:
    from collections.abc import Mapping

SITE = "site"
#: What a mix line counts -> the assignments column it counts.
KINDS = {"slides": "slide_id", "cases": "case_id", "sites": SITE}
UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Source:
    """One slide, case or site of a cluster: its name, tiles in the cluster and share of them."""

    name: str
    tiles: int
    share: float


@dataclasses.dataclass(frozen=True)
class Mix:
    """One kind (``slides``, ``cases`` or ``sites``) of a cluster: distinct count and top sources."""

    kind: str
    distinct: int
    top: tuple[Source, ...]


def cluster_mixes(
    assignments: pd.DataFrame, *, sites: Mapping[str, str] | None = None, top: int = 3
) -> dict[int, tuple[Mix, ...]]:
    """The slide / case / site mix of every cluster.

    Args:
        assignments: one row per tile: ``cluster``, ``slide_id`` and, when known, ``case_id``
            and ``site``.
        sites: slide id -> site, used when the assignments have no ``site`` column; slides it
            does not name count as ``unknown``. None (and no column): no site line.
        top: sources named per kind, most tiles first (ties by name).

    Returns:
        Cluster id -> its mixes in the order slides, cases, sites (kinds without data left out).
    """
    frame = assignments.copy()
    known = tile_sites(assignments, sites)
    if known is not None:
        frame[SITE] = known
    mixes: dict[int, list[Mix]] = {int(str(c)): [] for c in frame["cluster"].unique()}
    for kind, column in KINDS.items():
        if column not in frame.columns:
            continue
        values = frame[column].astype("object").where(frame[column].notna(), UNKNOWN).astype(str)
        counts = (
            pd.DataFrame({"cluster": frame["cluster"].astype("int64"), "name": values})
            .groupby(["cluster", "name"], sort=False)
            .size()
            .reset_index(name="tiles")
            .sort_values(["cluster", "tiles", "name"], ascending=[True, False, True], kind="stable")
        )
        totals = counts.groupby("cluster")["tiles"].sum()
        distinct = counts.groupby("cluster").size()
        named = counts.groupby("cluster").head(top)
        for cluster, rows in named.groupby("cluster", sort=True):
            cid = int(str(cluster))
            total = int(totals[cid])
            sources = tuple(
                Source(str(name), int(tiles), int(tiles) / total)
                for name, tiles in zip(rows["name"], rows["tiles"], strict=True)
            )
            mixes[cid].append(Mix(kind, int(distinct[cid]), sources))
    return {cid: tuple(found) for cid, found in sorted(mixes.items())}


def tile_sites(assignments: pd.DataFrame, sites: Mapping[str, str] | None) -> pd.Series | None:
    """The site of every tile: the assignments' ``site`` column, else its slide's site in ``sites``.

    Args:
        assignments: one row per tile with ``slide_id`` and optionally ``site``.
        sites: slide id -> site (from :func:`read_sites`), used when there is no ``site`` column.

    Returns:
        One string per row, aligned with ``assignments``; missing (None) where the site is not
        known (no entry, empty or blank). None when neither the column nor ``sites`` is given.
    """
    if SITE in assignments.columns:
        values = assignments[SITE]
    elif sites is not None:
        values = assignments["slide_id"].astype(str).map(dict(sites))
    else:
        return None
    text = values.astype("object").map(lambda v: None if pd.isna(v) else str(v).strip() or None)
    return text.rename(SITE)


def read_sites(manifest: Path | None, tile_files: list[str]) -> dict[str, str] | None:
    """Slide id -> site from a manifest's ``site`` column, else from the tile store's, else None.

    Args:
        manifest: a slide manifest (CSV or Parquet) with ``slide_id`` and optionally ``site``;
            None or a folder of slides: look in the tile store only.
        tile_files: committed Parquet files of the tile store (scanned batch by batch, two
            columns, only when its schema has ``site``).

    Returns:
        The site of each slide, or None when neither source has a site column.

    Raises:
        ManifestError: the manifest cannot be read or has no ``slide_id`` column.
    """
    if manifest is not None and not Path(manifest).is_dir():
        frame = _read_table(Path(manifest))
        if "slide_id" not in frame.columns:
            raise ManifestError(f"manifest {manifest}: no slide_id column")
        if SITE in frame.columns:
            rows = frame[["slide_id", SITE]].dropna().astype(str).apply(lambda c: c.str.strip())
            rows = rows[rows[SITE] != ""]
            return dict(zip(rows["slide_id"], rows[SITE], strict=True))
    return _tile_store_sites(tile_files)


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ManifestError(f"manifest {path}: cannot read it as CSV/Parquet ({exc})") from exc


def _tile_store_sites(tile_files: list[str]) -> dict[str, str] | None:
    import pyarrow.dataset as ds

    if not tile_files:
        return None
    dataset = ds.dataset(tile_files, format="parquet")
    if SITE not in dataset.schema.names:
        return None
    found: dict[str, str] = {}
    for batch in dataset.to_batches(columns=["slide_id", SITE]):
        pairs = batch.to_pandas().dropna().drop_duplicates()
        for slide, site in zip(pairs["slide_id"], pairs[SITE], strict=True):
            found.setdefault(str(slide), str(site))
    return found
