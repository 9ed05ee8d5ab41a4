"""Labelled tiles for fine-tuning: read the integrate output, locate their pixels, split by case.

Labels join tile rows on (slide_id, x, y, magnification); magnification is compared as float
with NaN == NaN (imported images have none), as a pandas merge does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mixture_ray.errors import ConfigError, StageIncompleteError
from mixture_ray.locations import read_parquet_files
from mixture_ray.store.codec import decode_tile, resize_square
from mixture_ray.store.folder import SUCCESS, committed_locations
from mixture_ray.store.schemas import TILE_ID_COLUMNS, TILE_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mixture_ray.locations import Uri

KEY = list(TILE_KEY)
LABEL_COLUMNS = [*TILE_ID_COLUMNS, "finding"]
TILE_COLUMNS = [*TILE_KEY, "encoding", "split"]


def load_labels(path: Path) -> pd.DataFrame:
    """The labels table of an integrate output (folder or labels.parquet); needs its _SUCCESS."""
    path = Path(path)
    is_folder = path.is_dir() or not path.suffix
    folder, file = (path, path / "labels.parquet") if is_folder else (path.parent, path)
    if not (folder / SUCCESS).exists():
        raise StageIncompleteError(
            f"labels {folder}: no {SUCCESS} marker (integrate not run, still running, or interrupted)"
        )
    if not file.is_file():
        raise ConfigError(f"labels: {file} not found")
    frame: pd.DataFrame = pq.read_table(file).to_pandas()
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"labels {file}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise ConfigError(f"labels {file}: holds no labelled tiles")
    if frame["finding"].isna().any():
        raise ConfigError(f"labels {file}: {int(frame['finding'].isna().sum())} row(s) have no finding")
    frame["magnification"] = frame["magnification"].astype(float)
    return frame[LABEL_COLUMNS]


def class_order(labels: pd.DataFrame, findings: Sequence[str], source: Path) -> list[str]:
    """Class names in output order: ``findings`` when given (labels must use only those)."""
    present = sorted(str(f) for f in labels["finding"].unique())
    if not findings:
        return present
    unknown = sorted(set(present) - set(findings))
    if unknown:
        raise ConfigError(f"labels {source}: finding(s) {unknown} are not in findings {list(findings)}")
    return list(findings)


def join_tiles(
    labels: pd.DataFrame, tiles: Path | Uri, magnification: float | None, splits: Sequence[str]
) -> pd.DataFrame:
    """Labelled rows with the tile file holding their pixels (``path``) and their tile split.

    Only the small columns of the tile store are read (no pixels); labels without a stored tile
    with pixels are an error.

    Args:
        labels: the labels table (:func:`load_labels`).
        tiles: the tile store, a folder or a URI (``path`` then names each file by its URI).
        magnification: keep only labels at this magnification (None: all).
        splits: keep only tiles whose tile-store split is one of these (empty: all).

    Returns:
        The labels with ``path`` and ``split`` columns, one row per labelled tile.
    """
    frames = []
    for file in committed_locations(tiles):
        table = read_parquet_files([file], columns=TILE_COLUMNS).to_pandas()
        frames.append(table[table["encoding"] != "none"].drop(columns="encoding").assign(path=str(file)))
    rows = pd.concat(frames, ignore_index=True)
    rows["magnification"] = rows["magnification"].astype(float)
    if magnification is not None:
        labels = labels[np.isclose(labels["magnification"], magnification)]
        if labels.empty:
            raise ConfigError(f"magnification: no labelled tiles at {magnification}")
    joined = labels.merge(rows, on=KEY, how="left")
    absent = joined["path"].isna()
    if absent.any():
        first = joined[absent].iloc[0]
        raise ConfigError(
            f"tiles {tiles}: {int(absent.sum())} labelled tile(s) have no pixels there, e.g. "
            f"slide_id={first.slide_id!r} x={first.x} y={first.y} magnification={first.magnification}"
        )
    if splits:
        joined = joined[joined["split"].isin(list(splits))]
        if joined.empty:
            raise ConfigError(f"splits: no labelled tiles in split(s) {list(splits)}")
    return joined.reset_index(drop=True)


def decode_images(images: Sequence[bytes], size: int) -> np.ndarray:
    """Encoded tiles -> uint8 (N, S, S, 3), resized to ``size`` (0 = keep; all must match)."""
    out = []
    for blob in images:
        out.append(resize_square(decode_tile(bytes(blob)), size))
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ConfigError(f"image_size: tiles have several sizes {sorted(shapes)}; set image_size")
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


@dataclasses.dataclass(frozen=True)
class CaseSplit:
    """Train and validation case ids (disjoint)."""

    train: tuple[str, ...]
    val: tuple[str, ...]


def split_by_case(labels: pd.DataFrame, val_fraction: float, seed: int, source: Path) -> CaseSplit:
    """Seeded case split; a case goes to validation only if every finding keeps training tiles."""
    cases = sorted(str(c) for c in labels["case_id"].unique())
    if len(cases) < 2:
        raise ConfigError(f"labels {source}: {len(cases)} case(s); a train/validation split needs >= 2")
    order = np.random.default_rng(seed).permutation(len(cases))
    want = max(1, round(val_fraction * len(cases)))
    per_case = labels.groupby(["case_id", "finding"]).size().unstack(fill_value=0)
    per_case.index = per_case.index.astype(str)
    remaining = per_case.sum(axis=0)
    val: list[str] = []
    for i in order:
        case = cases[i]
        if len(val) >= want or len(val) == len(cases) - 1:
            break
        left = remaining - per_case.loc[case]
        if (left > 0).all():
            val.append(case)
            remaining = left
    if not val:
        raise ConfigError(
            f"labels {source}: no case can be held out for validation without removing a finding "
            "from training; label more cases"
        )
    train = tuple(c for c in cases if c not in set(val))
    return CaseSplit(train=train, val=tuple(sorted(val)))


def check_train_classes(train_targets: np.ndarray, classes: Sequence[str], source: Path) -> None:
    """Every class needs training tiles; the error names the findings that have none."""
    counts = np.bincount(train_targets, minlength=len(classes))
    absent = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if absent:
        raise ConfigError(f"labels {source}: finding(s) {absent} have no tiles in the training cases")


def encode_targets(findings: pd.Series, classes: Sequence[str]) -> np.ndarray:
    """Finding names -> int64 class indices in ``classes`` order."""
    index = {c: i for i, c in enumerate(classes)}
    return findings.map(index).to_numpy(np.int64)

