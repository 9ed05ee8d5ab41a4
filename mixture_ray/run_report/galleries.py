"""Image sections: cluster montages, finding maps and NMF class heatmaps, as linked thumbnails."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mixture_ray.run_report.images import linked_thumbnail, relative_href
from mixture_ray.run_report.markup import Section, esc, gallery, table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mixture_ray.run_report.locate import RunLayout


@dataclasses.dataclass(frozen=True)
class Thumbs:
    """How galleries are drawn: the report file (links are relative to it), thumbnail size, limits."""

    report: Path
    px: int
    max_images: int
    max_rows: int

    def gallery(self, items: Sequence[tuple[Path, str]], scale: int = 1) -> str:
        """Linked thumbnails (``scale`` x ``px``) of the first ``max_images`` (file, caption) pairs."""
        shown = [linked_thumbnail(path, self.report, scale * self.px, caption)
                 for path, caption in items[: self.max_images]]
        rest = len(items) - self.max_images
        more = f"<p>… and {rest} more (not embedded; see the folder).</p>" if rest > 0 else ""
        return gallery(shown) + more


def _number(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else -1


def montages_section(layout: RunLayout, thumbs: Thumbs) -> Section:
    """Each clustering's cluster montages (the review stage's PNGs), with a link to its review page."""
    heading = "Cluster montages"
    parts = []
    for review in layout.review:
        for folder in sorted(p for p in (review / "montages").glob("*/*") if p.is_dir()):
            mag, k = folder.parent.name, folder.name
            files = sorted(folder.glob("cluster-*.png"), key=_number)
            page = review / f"review-{mag}-{k}.html"
            link = (f' <a href="{esc(relative_href(page, thumbs.report))}">review page</a>'
                    if page.is_file() else "")
            title = f"{layout.label(folder)}: {mag}, {k} ({len(files)} clusters)"
            parts.append(f"<h3>{esc(title)}{link}</h3>")
            parts.append(thumbs.gallery([(f, f"cluster {_number(f)}") for f in files]))
    if not parts:
        return Section("montages", heading, missing=(
            "No cluster montages found (a review/ folder with montages/<mag>/k<k>/cluster-<id>.png from "
            "`mixture-ray review`)."))
    return Section("montages", heading, "".join(parts))


def maps_section(layout: RunLayout, thumbs: Thumbs) -> Section:
    """Every slide's finding map as a thumbnail linking to the full image, and the truth agreement."""
    heading = "Finding maps"
    parts = []
    for folder in layout.maps:
        files = sorted(p for p in folder.glob("*.png") if not p.name.startswith("."))
        items = [(f, urllib.parse.unquote(f.stem)) for f in files]  # maps name files by the quoted slide id
        parts.append(f"<h3>{esc(layout.label(folder))} ({len(files)} slides)</h3>")
        parts.append(thumbs.gallery(items))
        if (folder / "agreement.csv").is_file():
            parts.append(table(pd.read_csv(folder / "agreement.csv"), "Tile agreement with the known truth",
                               thumbs.max_rows))
    if not parts:
        return Section("maps", heading,
                       missing="No finding maps found (a maps/ folder from `mixture-ray maps`).")
    return Section("maps", heading, "".join(parts))


def explain_section(layout: RunLayout, thumbs: Thumbs) -> Section:
    """Per K: each slide's NMF class heatmaps and class overlay, then the analysis figures."""
    heading = "Activation clustering (NMF classes)"
    parts = []
    for root in layout.explain:
        by_k: dict[str, list[tuple[Path, str]]] = defaultdict(list)
        for path in sorted((root / "apply").glob("*/k*_*.png")):
            k, _, kind = path.stem.partition("_")
            by_k[k].append((path, f"{path.parent.name}: {kind}"))
        for k, items in sorted(by_k.items(), key=lambda kv: _number(kv[1][0][0])):
            parts.append(f"<h3>{esc(layout.label(root))}: K = {esc(k.removeprefix('k'))}</h3>")
            parts.append(thumbs.gallery(items))
            figures = sorted((root / "analysis" / k).glob("*.png"))
            if figures:
                parts.append(thumbs.gallery([(f, f"{k}: {f.stem}") for f in figures], scale=2))
    if not parts:
        return Section("explain", heading, missing="No NMF class heatmaps found (an explain folder with a "
                                                   "complete apply/ from `mixture-ray explain apply`).")
    return Section("explain", heading, "".join(parts))
