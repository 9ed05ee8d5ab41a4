"""The per-tile tables an export is made from: predictions, cluster ids, tile geometry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from mixture_ray.errors import ConfigError
from mixture_ray.locations import read_parquet_files
from mixture_ray.store.folder import committed_locations
from mixture_ray.store.schemas import TILE_KEY, magnification_label

if TYPE_CHECKING:
    from mixture_ray.locations import Uri

_K_FOLDER = re.compile(r"^k-(\d+)$")


def cluster_column(k: int) -> str:
    """The column of the cluster ids of one k (``cluster_k8``)."""
    return f"cluster_k{k}"


def cluster_table(root: Path) -> pd.DataFrame:
    """Cluster ids of every tile of every clustering under ``root`` (``mag-*/k-*``).

    Args:
        root: the output folder of `mixture-ray cluster`.

    Returns:
        One row per tile key with a ``cluster_k<k>`` column per k (-1 where a magnification was
        not clustered with that k).
    """
    found = sorted(Path(root).glob("mag-*/k-*/assignments.parquet"))
    if not found:
        raise ConfigError(f"clusters: {root} holds no mag-*/k-*/assignments.parquet; run mixture-ray cluster")
    by_k: dict[int, list[pd.DataFrame]] = {}
    for path in found:
        match = _K_FOLDER.match(path.parent.name)
        if match is None:
            continue
        k = int(match.group(1))
        frame = pq.read_table(path, columns=[*TILE_KEY, "cluster"]).to_pandas()
        by_k.setdefault(k, []).append(frame.rename(columns={"cluster": cluster_column(k)}))
    table: pd.DataFrame | None = None
    for k in sorted(by_k):
        part = pd.concat(by_k[k], ignore_index=True)
        table = part if table is None else table.merge(part, on=list(TILE_KEY), how="outer")
    assert table is not None
    columns = [cluster_column(k) for k in sorted(by_k)]
    table[columns] = table[columns].fillna(-1).astype("int32")
    return table


def tile_geometry(tiles: Path | Uri, magnification: float | None = None) -> pd.DataFrame:
    """Tile key, case, level-0 size, level read, tile size and source file of a complete tile store.

    Args:
        tiles: the tile store, a folder or a URI.
        magnification: keep only tiles of this magnification (None: all).

    Returns:
        One row per tile.
    """
    columns = [*TILE_KEY, "case_id", "size_level0", "level", "tile_size", "mpp", "source"]
    frame = read_parquet_files(committed_locations(tiles), columns=columns).to_pandas()
    if magnification is not None:
        frame = frame[frame.magnification == magnification]
    out: pd.DataFrame = frame.reset_index(drop=True)
    return out


def label(magnification: float | None) -> str:
    """``mag-20x``: how files of one magnification are named."""
    return f"mag-{magnification_label(magnification)}"
