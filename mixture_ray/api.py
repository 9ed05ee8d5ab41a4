"""The Python API for notebooks: every stage as a function, and stores opened as tables or datasets.

Each stage is called with the same keys and checks as its CLI verb (``mixture-ray tile --out-dir x``
is ``api.tile(out_dir="x")``; a group of keys is a mapping, ``pool={"workers": 2}``, or a dotted key
through :func:`run`) and returns the stage's report (``report.complete``, ``report.summary()``):

>>> from mixture_ray import api
>>> cohort = api.synth(out_dir="cohort", n_cases=4)
>>> tiles = api.tile(manifest=cohort.manifest, out_dir="tiles", magnifications=[20])
>>> api.read_store("tiles", columns=["slide_id", "x", "y"]).head()

Verbs with a dash or two words take underscores: ``api.import_images``, ``api.explain_fit``.
A store opens with its committed rows only (slides whose every row is committed, from the store's
index; a run still writing or stopped part-way shows what it finished): as a pandas DataFrame
(:func:`read_store`), a lazy Ray Dataset (:func:`store_dataset`) or, for an embedding store, an
AnnData (:func:`read_embeddings`).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Location, read_parquet_files
from mixture_ray.stages import BY_NAME, STAGES
from mixture_ray.store.folder import StageFolder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import anndata
    import pandas as pd
    import ray.data

    from mixture_ray.locations import Uri
    from mixture_ray.report import Report

#: Key columns of every per-tile store.
KEYS = ["slide_id", "case_id", "x", "y", "magnification"]


def stage_names() -> list[str]:
    """The stages callable from Python, as attribute names (``import_images``, ``explain_fit``)."""
    return [_attribute(spec.name) for spec in STAGES]


def _attribute(verb: str) -> str:
    return verb.replace("-", "_").replace(" ", "_")


def run(stage: str, /, **settings: Any) -> Report:
    """Run one stage with keyword settings, as its CLI verb would (same keys, checks and outputs).

    Args:
        stage: the verb (``"tile"``, ``"explain fit"``) or its attribute name (``"explain_fit"``).
        **settings: the config keys; a group as a mapping (``pool={"workers": 2}``) or, passed as
            ``**{"pool.workers": 2}``, a dotted key. Paths may be ``str`` or ``Path``.

    Returns:
        The stage's report; a partial run (some slides failed) returns with ``complete`` False.

    Raises:
        ConfigError: an unknown stage or key, or a value that fails the stage's checks (named).
    """
    by_attribute = {_attribute(spec.name): spec for spec in STAGES}
    spec = BY_NAME.get(stage) or by_attribute.get(stage)
    if spec is None:
        raise ConfigError(f"unknown stage {stage!r}; the stages are: {', '.join(stage_names())}")
    cfg: Any = build_config(spec.config(), settings)
    return spec.runner()(cfg)


def __getattr__(name: str) -> Callable[..., Report]:
    """``api.tile(...)`` and the like: :func:`run` bound to one stage, documented by its config."""
    if name not in stage_names():
        stages = ", ".join(stage_names())
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} (stages: {stages})")
    call = functools.partial(run, name)
    spec = next(s for s in STAGES if _attribute(s.name) == name)
    call.__doc__ = f"{spec.help}.\n\n{spec.config().__doc__ or ''}"
    return call


def _committed_table(store: str | Path | Uri, columns: Sequence[str] | None) -> pa.Table:
    """The committed rows of ``store``: parts the index lists, rows of slides committed whole."""
    where = Location.of(store)
    folder = StageFolder(where, stage="")
    index = folder.index()
    if not index.files:
        raise ConfigError(f"{where}: no committed rows (not a store, or nothing committed yet)")
    wanted = None if columns is None else list(dict.fromkeys([*columns, "slide_id"]))
    table = read_parquet_files(folder.data_locations(), columns=wanted)
    whole = pa.array(sorted(index.committed()), pa.string())
    table = table.filter(pc.is_in(table["slide_id"], value_set=whole))
    return table if columns is None or "slide_id" in columns else table.drop_columns(["slide_id"])


def read_store(store: str | Path | Uri, *, columns: Sequence[str] | None = None,
               magnification: float | None = None) -> pd.DataFrame:
    """A store's committed rows as a pandas DataFrame (a local folder or an object-store URI).

    Args:
        store: a tile, embedding or prediction store.
        columns: the columns to read (all when None; leave out ``image`` of a tile store to stay small).
        magnification: keep only rows of this magnification.

    Returns:
        One row per committed tile.
    """
    wanted = None if columns is None or magnification is None else [*columns, "magnification"]
    table = _committed_table(store, wanted or columns)
    if magnification is not None:
        table = table.filter(pc.equal(pc.cast(table["magnification"], pa.float64()), float(magnification)))
        if columns is not None and "magnification" not in columns:
            table = table.drop_columns(["magnification"])
    frame: pd.DataFrame = table.to_pandas()
    return frame


def store_dataset(store: str | Path | Uri, *, columns: Sequence[str] | None = None) -> ray.data.Dataset:
    """A store's committed rows as a lazy Ray Dataset, read by Ray tasks (starts a local Ray if needed)."""
    import ray.data
    from ray.data.expressions import col

    from mixture_ray.ray_runtime import ensure_ray

    where = Location.of(store)
    folder = StageFolder(where, stage="")
    whole = sorted(folder.index().committed())
    files = folder.data_locations()
    if not files:
        raise ConfigError(f"{where}: no committed rows (not a store, or nothing committed yet)")
    ensure_ray()
    wanted = None if columns is None else list(columns)
    read_columns = None if wanted is None else list(dict.fromkeys([*wanted, "slide_id"]))
    read = ray.data.read_parquet([f.path for f in files], filesystem=files[0].fs)
    if read_columns is not None:
        read = read.select_columns(read_columns)  # pushed down into the Parquet read
    kept = read.filter(expr=col("slide_id").is_in(whole))
    return kept if wanted is None or "slide_id" in wanted else kept.drop_columns(["slide_id"])


def read_embeddings(store: str | Path | Uri, *, feature: str = "features",
                    magnification: float | None = None) -> anndata.AnnData:
    """An embedding store as an AnnData: ``X`` the vectors, ``obs`` the tile keys, ``obsm["spatial"]`` x, y.

    Args:
        store: an embedding store written by ``mixture-ray embed``.
        feature: ``features`` (the backbone's vectors) or ``head`` (the projection).
        magnification: the magnification to read; needed when the store holds several.

    Returns:
        The committed tiles of one magnification, in tile-key order (slide, y, x).
    """
    import anndata
    import numpy as np

    keys = [k for k in KEYS if k != "magnification"]
    table = _committed_table(store, [*KEYS, feature])
    mags = sorted({m for m in table["magnification"].to_pylist() if m is not None})
    if magnification is None and len(mags) > 1:
        raise ConfigError(f"{store}: holds magnifications {mags}; pass magnification=")
    if magnification is not None:
        table = table.filter(pc.equal(pc.cast(table["magnification"], pa.float64()), float(magnification)))
        if not table.num_rows:
            raise ConfigError(f"{store}: no committed tile at magnification {magnification} (found {mags})")
    table = table.sort_by([("slide_id", "ascending"), ("y", "ascending"), ("x", "ascending")])
    column = table[feature].combine_chunks()
    width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else len(column[0])
    matrix = np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(-1, width)
    obs = table.select(keys).to_pandas()
    obs.index = obs["slide_id"].astype(str) + ":" + obs["x"].astype(str) + ":" + obs["y"].astype(str)
    found = mags[0] if mags else math.nan
    return anndata.AnnData(X=matrix, obs=obs, obsm={"spatial": obs[["x", "y"]].to_numpy()},
                           uns={"store": str(store), "feature": feature,
                                "magnification": found if magnification is None else magnification})
