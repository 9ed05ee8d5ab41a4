"""What the chaos run compares: a snapshot of every output, normalised, and clean vs chaos differences."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .plan import ATOL, FOLDERS, KEY_COLUMNS, RTOL, STAGES, STORES, VOLATILE


def _normalise(value: Any, root: str) -> Any:
    if isinstance(value, str):
        return value.replace(root, "<run>")
    if isinstance(value, dict):
        return {k: _normalise(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_normalise(v, root) for v in value]
    return value


def _column(column: Any, root: str) -> Any:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_floating(kind):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    listed = pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind)
    values = column.to_pylist()
    if listed and pa.types.is_floating(kind.value_type):
        with contextlib.suppress(ValueError, TypeError):
            return np.asarray(values, dtype=np.float64)
    return [_normalise(v, root) for v in values]


def _table(table: Any, root: str) -> dict[str, Any]:
    keys = [k for k in KEY_COLUMNS if k in table.column_names]
    if keys and table.num_rows:
        table = table.sort_by([(k, "ascending") for k in keys])
    return {name: _column(table[name], root) for name in table.column_names if name not in VOLATILE}


def snapshot(out: Path) -> dict[str, Any]:
    """Every final output of a run under ``out``, in a form to compare (item name -> value).

    Item names start with the stage (``tile: rows``, ``cluster: mag-20x/k-4/centroids.npy``, ...).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from mixture_ray.store.folder import committed_files

    root = str(out)
    items: dict[str, Any] = {}
    for stage in STORES:
        files = committed_files(out / FOLDERS[stage])
        items[f"{stage}: committed rows"] = _table(pq.read_table([str(f) for f in files]), root)
    clusters = out / FOLDERS["cluster"]
    for folder in sorted(clusters.glob("mag-*/k-*")):
        name = f"cluster: {folder.relative_to(clusters)}"
        items[f"{name}/assignments"] = _table(pq.read_table(str(folder / "assignments.parquet")), root)
        items[f"{name}/centroids.npy"] = np.asarray(np.load(folder / "centroids.npy"), dtype=np.float64)
        for side in ("scaler.json", "metrics.json"):
            items[f"{name}/{side}"] = _normalise(json.loads((folder / side).read_text()), root)
    items["cluster: metrics.csv"] = _table(pa.Table.from_pandas(pd.read_csv(clusters / "metrics.csv")), root)
    maps = out / FOLDERS["maps"]
    for png in sorted(maps.glob("*.png")):
        with Image.open(png) as image:
            items[f"maps: {png.name}"] = np.asarray(image.convert("RGBA"))
    items["maps: legend.json"] = _normalise(json.loads((maps / "legend.json").read_text()), root)
    items["maps: agreement.csv"] = _table(pa.Table.from_pandas(pd.read_csv(maps / "agreement.csv")), root)
    cases = out / FOLDERS["cases"]
    for table in sorted(cases.rglob("*.parquet")):
        items[f"cases: {table.relative_to(cases)}"] = _table(pq.read_table(str(table)), root)
    return items


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One output item of the chaos run against the clean run's."""

    item: str
    status: str  # identical | close | different | missing | extra
    max_abs_diff: float
    detail: str

    @property
    def stage(self) -> str:
        """The stage that wrote the item."""
        return self.item.split(":", 1)[0]


_RANK = {"identical": 0, "close": 1, "different": 2}


def _finite(value: float) -> float | None:
    """``value``, or None for infinity (not a difference of numbers: JSON has no infinity)."""
    return None if np.isinf(value) else value


def _worse(a: tuple[str, float, str], b: tuple[str, float, str]) -> tuple[str, float, str]:
    if _RANK[b[0]] > _RANK[a[0]] or (b[0] == a[0] and b[1] > a[1]):
        return b
    return a


def _numbers(a: np.ndarray, b: np.ndarray) -> tuple[str, float, str]:
    if a.shape != b.shape:
        return "different", float("inf"), f"shape {a.shape} != {b.shape}"
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(b.dtype, np.floating)):
        unequal = int(np.count_nonzero(a != b))
        if not unequal:
            return "identical", 0.0, ""
        return "different", float("inf"), f"{unequal} values differ"
    x, y = a.astype(np.float64), b.astype(np.float64)
    if np.array_equal(x, y, equal_nan=True):
        return "identical", 0.0, ""
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return "different", float("inf"), "missing values differ"
    diff = float(np.nanmax(np.abs(x - y))) if x.size else 0.0
    close = bool(np.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True))
    return ("close" if close else "different"), diff, f"max |difference| {diff:.3g}"


def _diff(a: Any, b: Any) -> tuple[str, float, str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return "different", float("inf"), f"keys differ: {sorted(set(a) ^ set(b))}"
        worst = ("identical", 0.0, "")
        for key in sorted(a):
            status, diff, detail = _diff(a[key], b[key])
            worst = _worse(worst, (status, diff, f"{key}: {detail}" if detail else str(key)))
        return worst if worst[0] != "identical" else ("identical", 0.0, "")
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return _numbers(np.asarray(a), np.asarray(b))
    if isinstance(a, list) and isinstance(b, list):
        if a == b:
            return "identical", 0.0, ""
        if len(a) != len(b):
            return "different", float("inf"), f"{len(a)} != {len(b)} values"
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (*a, *b)):
            return _numbers(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
        first = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        shown = f"{str(a[first])[:60]!r} != {str(b[first])[:60]!r}"
        return "different", float("inf"), f"first difference at row {first}: {shown}"
    if isinstance(a, float) and isinstance(b, float):
        return _numbers(np.asarray([a]), np.asarray([b]))
    return ("identical", 0.0, "") if a == b else ("different", float("inf"), f"{a!r} != {b!r}"[:160])


def compare(clean: dict[str, Any], chaos: dict[str, Any]) -> list[Comparison]:
    """Each item of either run: identical, close (floats within rtol/atol), different, missing or extra."""
    found = []
    for item in sorted(set(clean) | set(chaos), key=lambda i: (STAGES.index(i.split(":", 1)[0]), i)):
        if item not in chaos:
            found.append(Comparison(item, "missing", float("inf"), "not in the chaos run's outputs"))
        elif item not in clean:
            found.append(Comparison(item, "extra", float("inf"), "not in the clean run's outputs"))
        else:
            status, diff, detail = _diff(clean[item], chaos[item])
            found.append(Comparison(item, status, diff, detail))
    return found


def leftovers(out: Path) -> list[str]:
    """Temporary files and folders, and leases, left under a run's folder (its logs and configs aside)."""
    found = []
    for here, dirs, files in os.walk(out):
        rel = Path(here).relative_to(out)
        for name in sorted(dirs):
            if name.startswith(".") or name.endswith(".tmp"):
                found.append(str(rel / name))
        dirs[:] = [d for d in dirs if not (d.startswith((".", "_logs", "_config")) or d.endswith(".tmp"))]
        found += [str(rel / f) for f in sorted(files)
                  if f.startswith(".") or f.endswith(".tmp") or f.startswith("_LEASE")]
    return found
