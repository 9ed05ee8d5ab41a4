"""What a stage folder holds, answered from its commit markers or its index, never its data files.

Each commit writes one small marker (``_COMMITTED*.json``) beside the parts it commits. A marker
says, per part file, how many rows of each slide the part holds, the total rows of each of those
slides over all parts of the run (a slide may span parts), and the rows per magnification. A slide
is committed when the rows its markers list add up to its total. At the end of a run the merged
markers are written once as ``_index.json``, so a planner or reader makes one request, not one
per part (on an object store, a listing and a GET per marker).

Markers written before parts spanned slides (one chunk per slide) list ``items`` and ``files``
only; they read as one part holding whole slides.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from mixture_ray.locations import Location

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Commit markers start with this name (``_COMMITTED.json`` locally, ``_COMMITTED-<part>.json`` in
#: an object-store run folder, where several commits share one folder).
MARKER_PREFIX = "_COMMITTED"
#: The merged markers of a finished run (rewritten by every finish, removed by every start).
INDEX = "_index.json"


def is_marker(name: str) -> bool:
    """Whether a file name is a commit marker."""
    return name.startswith(MARKER_PREFIX) and name.endswith(".json")


@dataclasses.dataclass(frozen=True)
class Marker:
    """One commit: its parts (relative to the store), rows per slide per part, slide totals."""

    where: Location
    parts: dict[str, dict[str, int]]
    totals: dict[str, int]
    magnifications: dict[str, dict[str, int]]
    cases: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def read(cls, where: Location, root: Location) -> Marker:
        """Parse a marker file; part names are made relative to the store ``root``."""
        payload: dict[str, Any] = json.loads(where.read_text())
        prefix = where.parent.path[len(root.path):].strip("/")
        parts = payload.get("parts")
        if parts is None:  # one chunk per slide: every file holds the chunk's slides
            items = {str(k): int(v) for k, v in payload["items"].items()}
            names = list(payload["files"])
            parts = {name: (items if i == 0 else dict.fromkeys(items, 0)) for i, name in enumerate(names)}
        relative = {f"{prefix}/{name}" if prefix else name: {str(s): int(n) for s, n in rows.items()}
                    for name, rows in parts.items()}
        held: Counter[str] = Counter()
        for rows in relative.values():
            held.update(rows)
        totals = {str(s): int(n) for s, n in payload.get("totals", dict(held)).items()}
        magnifications = {str(s): {str(m): int(n) for m, n in mags.items()}
                          for s, mags in payload.get("magnifications", {}).items()}
        cases = {str(s): str(c) for s, c in payload.get("cases", {}).items()}
        return cls(where, relative, totals, magnifications, cases)


@dataclasses.dataclass
class SlideEntry:
    """One slide of a store: rows committed, rows it should have, its parts, rows per magnification."""

    rows: int = 0
    total: int = 0
    files: list[str] = dataclasses.field(default_factory=list)
    magnifications: Counter[str] = dataclasses.field(default_factory=Counter)
    case: str | None = None

    @property
    def complete(self) -> bool:
        """Every row of the slide is in a committed part."""
        return self.rows == self.total and self.total > 0


@dataclasses.dataclass
class StoreIndex:
    """Every slide of a store with its rows and parts; built from markers or read from ``_index.json``."""

    slides: dict[str, SlideEntry]
    files: list[str]
    #: The markers read (empty when the index came from ``_index.json``).
    markers: list[Marker] = dataclasses.field(default_factory=list)

    @classmethod
    def from_markers(cls, markers: Iterable[Marker]) -> StoreIndex:
        """Merge markers: rows add up over parts, the total is the one each marker repeats."""
        slides: dict[str, SlideEntry] = {}
        files: list[str] = []
        kept = list(markers)
        for marker in kept:
            for name, rows in marker.parts.items():
                files.append(name)
                for slide, n in rows.items():
                    entry = slides.setdefault(slide, SlideEntry())
                    entry.rows += n
                    entry.files.append(name)
            for slide, total in marker.totals.items():
                slides.setdefault(slide, SlideEntry()).total = total
            for slide, mags in marker.magnifications.items():
                slides.setdefault(slide, SlideEntry()).magnifications.update(mags)
            for slide, case in marker.cases.items():
                slides.setdefault(slide, SlideEntry()).case = case
        return cls(slides, sorted(files), kept)

    def committed(self) -> dict[str, int]:
        """Slide -> rows, for slides whose every row is committed."""
        return {s: e.rows for s, e in sorted(self.slides.items()) if e.complete}

    def partial(self) -> set[str]:
        """Slides with rows in committed parts but not all of them (a run killed between parts)."""
        return {s for s, e in self.slides.items() if not e.complete and e.rows > 0}

    def magnification_rows(self) -> Counter[str] | None:
        """Rows per magnification label over the whole store; None when markers predate the counts."""
        total: Counter[str] = Counter()
        for entry in self.slides.values():
            if entry.rows and not entry.magnifications:
                return None
            total.update(entry.magnifications)
        return total

    def to_json(self) -> dict[str, Any]:
        """The ``_index.json`` payload (complete slides only)."""
        return {"version": 1, "files": self.files,
                "slides": {s: {"rows": e.rows, "files": sorted(set(e.files)),
                               "magnifications": dict(e.magnifications), "case": e.case}
                           for s, e in sorted(self.slides.items()) if e.complete}}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> StoreIndex:
        """Read an ``_index.json`` payload."""
        slides = {str(s): SlideEntry(int(e["rows"]), int(e["rows"]), list(e["files"]),
                                     Counter({str(m): int(n) for m, n in e["magnifications"].items()}),
                                     e.get("case"))
                  for s, e in payload["slides"].items()}
        return cls(slides, list(payload["files"]))


def list_markers(root: Location) -> list[Location]:
    """The commit markers of a store: one glob locally, one listing on an object store."""
    if root.is_local:
        base = root.local_path()
        return [Location.of(m) for m in sorted(base.glob(f"chunk-*/{MARKER_PREFIX}*.json"))]
    return sorted((f for f in root.files_below() if is_marker(f.name)), key=lambda f: f.path)


def read_index(root: Location, *, prefer_index: bool = True) -> StoreIndex:
    """The store's index: ``_index.json`` of a finished run (with its end marker), else merged markers."""
    index_file = root / INDEX
    finished = prefer_index and any((root / m).exists() for m in ("_SUCCESS", "_INCOMPLETE.json"))
    if finished and index_file.exists():
        return StoreIndex.from_json(json.loads(index_file.read_text()))
    return StoreIndex.from_markers(Marker.read(m, root) for m in list_markers(root))


def magnification_values(root: Location) -> list[float] | None:
    """Distinct magnifications of a store from its index (NaN first for unknown), or None if not counted."""
    counts = read_index(root).magnification_rows()
    if counts is None:
        return None
    values = sorted(float(m) for m in counts if m != "unknown")
    return ([math.nan] if "unknown" in counts else []) + values
