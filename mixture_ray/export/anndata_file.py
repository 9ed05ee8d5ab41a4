"""AnnData ``.h5ad`` of the embeddings, written in row blocks: ``X`` the features, ``obs`` the tile identity.

``obsm["spatial"]`` holds the level-0 (x, y) of each tile, the scverse convention that squidpy and
LazySlide read; ``uns["mixture_ray"]`` records the embedding store and the settings it was made with.

:class:`H5adWriter` never holds the file's rows: the number of rows is known in advance (from the
store's index), and each block of rows is written at its offset into ``X``, ``obsm/spatial`` and
the obs index as it arrives. Obs columns go to a scratch file beside the output (numbers as
float64, exact for int32 and int64 coordinates; strings as codes in order of appearance). At
:meth:`H5adWriter.close` each column is copied, block by block, into the form anndata writes
itself (AnnData on-disk format 0.2.0): numbers in the dtype pandas gives the whole column, strings
as categoricals with natural-sorted categories, or as strings when every value differs (anndata's
``strings_to_categoricals``), so the file reads back as the in-memory writer's would.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pathlib import Path

    import h5py

#: Rows copied per step when an obs column is finished.
COPY_ROWS = 1 << 20
_ARRAY = {"encoding-type": "array", "encoding-version": "0.2.0"}
_STRINGS = {"encoding-type": "string-array", "encoding-version": "0.2.0"}


def obs_names(obs: pd.DataFrame) -> pd.Index:
    """The row names of tiles: ``<slide_id>:<x>:<y>:<magnification>`` (``20`` for 20.0, ``nan`` unknown)."""
    mags = obs["magnification"].map({m: f"{m:g}" for m in obs["magnification"].unique()})
    names = (obs["slide_id"].astype(str) + ":" + obs["x"].astype(str) + ":" + obs["y"].astype(str)
             + ":" + mags.astype(str))
    index: pd.Index = pd.Index(names.to_numpy(object), dtype=object)
    return index


class H5adWriter:
    """One ``.h5ad`` written block by block, then finished (atomically: a temporary name, then rename).

    Args:
        path: the ``.h5ad`` file.
        n_obs: the number of rows (tiles) the file will hold.
        provenance: what made the data (stored as JSON text in ``uns["mixture_ray"]``).
    """

    def __init__(self, path: Path, n_obs: int, provenance: dict[str, Any]) -> None:
        import h5py

        self.path, self.n_obs, self.provenance = path, n_obs, provenance
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.scratch_path = path.with_name(f".{path.name}.obs.tmp")
        self.file = h5py.File(self.tmp, "w")
        self.scratch = h5py.File(self.scratch_path, "w")
        self.columns: list[str] = []
        self.dtypes: dict[str, np.dtype[Any]] = {}
        self.codes: dict[str, dict[str, int]] = {}
        self.index = self.file.create_dataset("obs/_index", (n_obs,), dtype=h5py.string_dtype())
        self.spatial = self.file.create_dataset("obsm/spatial", (n_obs, 2), dtype=np.int64)
        self.x: h5py.Dataset | None = None
        self._width = 0

    @property
    def n_vars(self) -> int:
        """The number of features (0 before the first block)."""
        return self._width

    def write(self, start: int, x: np.ndarray, obs: pd.DataFrame) -> None:
        """Write rows ``start .. start + len(obs)``: their features and their obs columns.

        Args:
            start: the position of the first row in the file.
            x: (rows, n_features) float32 matrix.
            obs: one row per tile, named by its index (:func:`obs_names`): ``x``, ``y`` and any
                other columns (the same columns in every block).
        """
        stop = start + len(obs)
        if len(x) != len(obs) or stop > self.n_obs:
            raise ValueError(f"{self.path}: rows {start}..{stop} with {len(x)} features rows "
                             f"do not fit a file of {self.n_obs} rows")
        if self.x is None:
            self.x = self.file.create_dataset("X", (self.n_obs, x.shape[1]), dtype=np.float32)
            self._width = int(x.shape[1])
            self.columns = list(obs.columns)
        elif list(obs.columns) != self.columns:
            raise ValueError(f"{self.path}: obs columns {list(obs.columns)} differ from {self.columns}")
        self.x[start:stop] = np.asarray(x, np.float32)
        self.spatial[start:stop] = obs[["x", "y"]].to_numpy(np.int64)
        self.index[start:stop] = obs.index.astype(str).to_numpy(object)
        for column in self.columns:
            values = obs[column]
            if pd.api.types.infer_dtype(values) == "string":
                codes = self.codes.setdefault(column, {})
                local, found = pd.factorize(values)
                data = np.array([codes.setdefault(v, len(codes)) for v in found], np.int64)[local]
            elif pd.api.types.is_numeric_dtype(values.dtype):
                dtype = values.to_numpy().dtype
                seen = self.dtypes.get(column)
                self.dtypes[column] = dtype if seen is None else np.result_type(seen, dtype)
                data = values.to_numpy(np.float64)
            else:
                raise ValueError(f"{self.path}: obs column {column} is neither numbers nor strings "
                                 f"({values.dtype})")
            if column not in self.scratch:
                self.scratch.create_dataset(column, (self.n_obs,), dtype=data.dtype)
            self.scratch[column][start:stop] = data

    def close(self) -> None:
        """Finish the obs columns, var, uns and the empty groups; move the file into place."""
        import anndata.io

        if self.x is None:
            raise ValueError(f"{self.path}: no rows were written")
        try:
            obs = self.file["obs"]
            for column in self.columns:
                self._finish_column(obs, column)
            obs.attrs.update({"_index": "_index", "column-order": np.array(self.columns, dtype=object),
                              "encoding-type": "dataframe", "encoding-version": "0.2.0"})
            self.index.attrs.update(_STRINGS)
            self.x.attrs.update(_ARRAY)
            self.spatial.attrs.update(_ARRAY)
            self.file["obsm"].attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
            var = pd.DataFrame(index=pd.Index([str(i) for i in range(self._width)], dtype=object))
            anndata.io.write_elem(self.file, "var", var)
            for name in ("layers", "obsp", "varm", "varp"):
                anndata.io.write_elem(self.file, name, {})
            anndata.io.write_elem(self.file, "uns", {"mixture_ray": {
                key: json.dumps(value, default=str) for key, value in self.provenance.items()}})
            self.file.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        finally:
            self.file.close()
            self.scratch.close()
            self.scratch_path.unlink(missing_ok=True)
        os.replace(self.tmp, self.path)

    def _finish_column(self, obs: h5py.Group, column: str) -> None:
        """Copy one scratch column into ``obs`` in its final encoding, block by block."""
        import anndata.io
        from natsort import natsorted

        source = self.scratch[column]
        if column in self.dtypes:
            target = obs.create_dataset(column, (self.n_obs,), dtype=self.dtypes[column])
            target.attrs.update(_ARRAY)
            for start in range(0, self.n_obs, COPY_ROWS):
                target[start:start + COPY_ROWS] = source[start:start + COPY_ROWS].astype(self.dtypes[column])
            return
        provisional = list(self.codes[column])
        categories = list(natsorted(provisional))
        if len(categories) >= self.n_obs:  # every value differs: anndata keeps strings
            values = np.array(provisional, dtype=object)[source[:]]
            anndata.io.write_elem(obs, column, values)
            return
        rank = {value: i for i, value in enumerate(categories)}
        final = np.array([rank[value] for value in provisional])
        dtype = pd.Categorical([], categories=categories).codes.dtype
        group = obs.create_group(column)
        group.attrs.update({"encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": False})
        codes = group.create_dataset("codes", (self.n_obs,), dtype=dtype)
        codes.attrs.update(_ARRAY)
        for start in range(0, self.n_obs, COPY_ROWS):
            codes[start:start + COPY_ROWS] = final[source[start:start + COPY_ROWS]].astype(dtype)
        anndata.io.write_elem(group, "categories", np.array(categories, dtype=object))
