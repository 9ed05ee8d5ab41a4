"""Where a cluster's tiles come from: how many slides, cases (and sites), and the top ones with shares.

A cluster drawn from one slide or one site is often a scanner or staining artefact rather than a
finding, so the review page shows this beside each montage. Counts are over every tile of the
cluster (the clustering's assignments), not only the montage's sample.

Sites come from a ``site`` column of the assignments, else of the slide manifest given to the
review stage, else of the tile store; without one the site line is simply left out.

Everything here is vectorised: values are factorised once, the per-value work (a site's text, a
name) is done once per distinct value (slide, case or site), and tiles are only counted by pandas,
so the cost per tile is a few array operations, not a Python call.
"""

from __future__ import annotations

import dataclasses
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mixture_ray.errors import ManifestError
from mixture_ray.locations import Location
from mixture_ray.review.tile_parts import TileParts, store_sites

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Mapping, Sequence

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
    clusters = assignments["cluster"].astype("int64").to_numpy()
    known = tile_sites(assignments, sites)
    mixes: dict[int, list[Mix]] = {int(c): [] for c in pd.unique(clusters)}
    for kind, column in KINDS.items():
        values = known if column == SITE else assignments.get(column)
        if values is None:
            continue
        counts = _counts_by_name(clusters, values)
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


def _counts_by_name(clusters: np.ndarray, values: pd.Series) -> pd.DataFrame:
    """Tiles per (cluster, name): ``str`` of each value, ``unknown`` where missing.

    Tiles are counted per (cluster, distinct value); each distinct value is named once, and values
    that read the same (``1`` and ``"1"``, a missing one and ``"unknown"``) are added up.

    Returns:
        cluster, name, tiles; by cluster, most tiles first, ties by name.
    """
    codes, uniques = pd.factorize(values)
    names = _per_code(uniques, str, UNKNOWN)
    pairs = pd.DataFrame({"cluster": clusters, "code": codes}).value_counts(sort=False)
    frame = pairs.reset_index(name="tiles")
    frame["name"] = names[frame["code"].to_numpy()]
    return (
        frame.groupby(["cluster", "name"], sort=False)["tiles"].sum()
        .reset_index()
        .sort_values(["cluster", "tiles", "name"], ascending=[True, False, True], kind="stable")
    )


def _per_code(uniques: Sequence[Any] | pd.Index | np.ndarray, function: Callable[[Any], Any],
              missing: Any) -> np.ndarray:
    """``function`` of each distinct value, then ``missing`` last: index it with factorize codes (-1 last)."""
    out = np.empty(len(uniques) + 1, dtype=object)
    out[: len(uniques)] = [function(value) for value in uniques]
    out[len(uniques)] = missing
    return out


def site_text(value: Any) -> str | None:
    """A site as text: stripped, None when missing, empty or blank."""
    return None if pd.isna(value) else str(value).strip() or None


def tile_sites(assignments: pd.DataFrame, sites: Mapping[str, str] | None) -> pd.Series | None:
    """The site of every tile: the assignments' ``site`` column, else its slide's site in ``sites``.

    Each distinct site (or slide) is read once; tiles take theirs by factorize codes.

    Args:
        assignments: one row per tile with ``slide_id`` and optionally ``site``.
        sites: slide id -> site (from :func:`read_sites`), used when there is no ``site`` column.

    Returns:
        One string per row, aligned with ``assignments``; missing (None) where the site is not
        known (no entry, empty or blank). None when neither the column nor ``sites`` is given.
    """
    if SITE in assignments.columns:
        codes, uniques = pd.factorize(assignments[SITE])
        per_code = _per_code(uniques, site_text, None)
    elif sites is not None:
        texts = {slide: text for slide, site in sites.items() if (text := site_text(site)) is not None}
        codes, slides = pd.factorize(assignments["slide_id"], use_na_sentinel=False)
        per_code = _per_code(slides, lambda slide: texts.get(str(slide)), None)
    else:
        return None
    return pd.Series(per_code[codes], index=assignments.index, name=SITE, dtype=object)


def read_sites(
    manifest: str | os.PathLike[str] | None, tiles: TileParts | Sequence[str | os.PathLike[str] | Location]
) -> dict[str, str] | None:
    """Slide id -> site from a manifest's ``site`` column, else from the tile store's, else None.

    Args:
        manifest: a slide manifest (CSV or Parquet; a path or a URI) with ``slide_id`` and
            optionally ``site``; None or a folder of slides: look in the tile store only.
        tiles: the tile store's parts, or its committed Parquet files; two columns of each are read
            in a Ray task (:func:`~mixture_ray.review.tile_parts.store_sites`), only when the
            store's schema has ``site``.

    Returns:
        The site of each slide, or None when neither source has a site column.

    Raises:
        ManifestError: the manifest cannot be read or has no ``slide_id`` column.
    """
    if manifest is not None and not Location.of(manifest).is_dir():
        frame = _read_table(Location.of(manifest))
        if "slide_id" not in frame.columns:
            raise ManifestError(f"manifest {manifest}: no slide_id column")
        if SITE in frame.columns:
            rows = frame[["slide_id", SITE]].dropna().astype(str).apply(lambda c: c.str.strip())
            rows = rows[rows[SITE] != ""]
            return dict(zip(rows["slide_id"], rows[SITE], strict=True))
    return store_sites(tiles if isinstance(tiles, TileParts) else TileParts.of_files(tiles))


def _read_table(where: Location) -> pd.DataFrame:
    try:
        data = io.BytesIO(where.read_bytes())
        if where.name.lower().endswith(".parquet"):
            return pd.read_parquet(data)
        return pd.read_csv(data, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ManifestError(f"manifest {where}: cannot read it as CSV/Parquet ({exc})") from exc
