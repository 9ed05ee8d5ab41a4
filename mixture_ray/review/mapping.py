"""Mapping files: which finding each cluster of one clustering is (YAML, validated).

```yaml
source: pathologist            # or "oracle (simulated pathologist)"
clustering: /data/run/clusters/mag-20x/k-30   # relative: to this file's folder
magnification: 20
k: 30
clusters:
  0: dense_fibrosis
  1: exclude                   # mixed cluster: its tiles are dropped
  2: other                     # kept as a class of its own
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mixture_ray.errors import MixtureRayError
from mixture_ray.paths import absolute_path, recorded_path, resolve_recorded
from mixture_ray.store.schemas import EXCLUDE, OTHER

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

SPECIAL = (OTHER, EXCLUDE)


class MappingError(MixtureRayError):
    """A mapping file is invalid; the message lists every problem found."""


@dataclasses.dataclass(frozen=True)
class Mapping:
    """A validated cluster -> finding assignment for one clustering folder."""

    path: Path
    clustering: Path
    magnification: float | None
    k: int
    clusters: dict[int, str]
    source: str


class _DuplicateCheckingLoader(yaml.SafeLoader):
    """SafeLoader that records keys given twice in one mapping (YAML would keep the last)."""

    duplicates: list[tuple[Any, int, int]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append((key, seen[key], line))
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _parse(path: Path) -> tuple[Any, list[tuple[Any, int, int]]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise MappingError(f"mapping file {path}: cannot read it ({exc.strerror})") from exc
    loader = _DuplicateCheckingLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise MappingError(f"mapping file {path}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return data, loader.duplicates


def load_mapping(path: Path, findings: Sequence[str], cluster_ids: Iterable[int] | None = None) -> Mapping:
    """Read and validate a mapping file; every problem is reported at once in one MappingError.

    Args:
        path: the mapping file (YAML, format above).
        findings: the finding names a cluster may be given (``other`` and ``exclude`` always may).
        cluster_ids: the ids present in the clustering; read from its assignments when None.

    Returns:
        The validated mapping. A relative ``clustering`` path resolves against the mapping file's
        folder (``mixture_ray.paths.resolve_recorded``), whatever the working directory.
    """
    path = absolute_path(path)
    data, duplicates = _parse(path)
    problems: list[str] = []
    if not isinstance(data, dict):
        raise MappingError(f"mapping file {path}: expected keys source, clustering, k, clusters")
    missing = [key for key in ("clustering", "k", "clusters") if key not in data]
    if missing:
        raise MappingError(f"mapping file {path}: missing key(s) {', '.join(missing)}")
    clusters_raw = data["clusters"]
    if not isinstance(clusters_raw, dict):
        raise MappingError(f"mapping file {path}: 'clusters' must map cluster id -> finding")
    clustering = resolve_recorded(str(data["clustering"]), path)
    for key, first, second in duplicates:
        problems.append(f"cluster {key} assigned twice (lines {first} and {second})")
    known = set(findings) | set(SPECIAL)
    clusters: dict[int, str] = {}
    for key, value in clusters_raw.items():
        if isinstance(key, bool) or not isinstance(key, int):
            problems.append(f"cluster id {key!r} is not an integer")
            continue
        name = "" if value is None else str(value).strip()
        if not name:
            problems.append(f"cluster {key} has no finding")
        elif name not in known:
            problems.append(f"cluster {key}: unknown finding {name!r} (known: {', '.join(sorted(known))})")
        clusters[key] = name
    ids = set(cluster_ids) if cluster_ids is not None else _cluster_ids(clustering, problems)
    if ids:
        extra = sorted(set(clusters) - ids)
        if extra:
            problems.append(f"cluster id(s) {_ids(extra)} are not in the clustering {clustering}")
        unassigned = sorted(ids - set(clusters))
        if unassigned:
            problems.append(f"cluster(s) {_ids(unassigned)} left unassigned")
    if problems:
        raise MappingError(f"mapping file {path}: " + "; ".join(problems))
    magnification = data.get("magnification")
    return Mapping(
        path,
        clustering,
        None if magnification is None else float(magnification),
        int(data["k"]),
        clusters,
        str(data.get("source", "pathologist")),
    )


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:30])
    return shown + (f" and {len(ids) - 30} more" if len(ids) > 30 else "")


def _cluster_ids(clustering: Path, problems: list[str]) -> set[int]:
    import pyarrow.parquet as pq

    file = clustering / "assignments.parquet"
    if not file.exists():
        problems.append(f"clustering {clustering} has no assignments.parquet")
        return set()
    return {int(v) for v in pq.read_table(file, columns=["cluster"])["cluster"].unique().to_pylist()}


def dump_mapping(
    path: Path, *, clustering: str, magnification: float | None, k: int, clusters: dict[int, str], source: str
) -> None:
    """Write a mapping file in the format above; ``clustering`` is recorded absolute."""
    body = {
        "source": source,
        "clustering": recorded_path(clustering),
        "magnification": magnification,
        "k": k,
        "clusters": {int(c): clusters[c] for c in sorted(clusters)},
    }
    Path(path).write_text(yaml.safe_dump(body, sort_keys=False))
