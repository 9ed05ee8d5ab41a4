"""HTML pieces of the run report; every text that comes from data goes through :func:`esc`.

The page carries a Content-Security-Policy that allows no script and images only from data: URIs,
so even a missed escape could neither run code nor fetch anything.
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;color:#222;background:#fafafa}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:0.6rem 1rem;margin:0 0 1rem}
table{border-collapse:collapse;margin:0.4rem 0 1rem;font-size:13px}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2}
caption{text-align:left;font-weight:bold;padding:3px 0}
.missing{color:#8a5a00;font-style:italic}
.gallery{display:flex;flex-wrap:wrap;gap:0.5rem}
figure{margin:0;font-size:12px;max-width:100%}
figure img{display:block;border:1px solid #eee;max-width:100%}
pre{background:#f6f6f6;padding:0.4rem;overflow-x:auto;font-size:12px}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: object) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


@dataclasses.dataclass(frozen=True)
class Section:
    """One part of the page: its anchor, heading, HTML body, and what is missing when it is empty."""

    key: str
    heading: str
    body: str = ""
    missing: str = ""

    def render(self) -> str:
        """The section element; a missing section says what it needs."""
        note = f'<p class="missing">{esc(self.missing)}</p>' if self.missing else ""
        return f'<section id="{esc(self.key)}"><h2>{esc(self.heading)}</h2>{note}{self.body}</section>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return esc("" if value is None else value)


def table(frame: pd.DataFrame, caption: str, max_rows: int) -> str:
    """A DataFrame as an escaped HTML table (at most ``max_rows`` rows, the rest counted)."""
    if frame.empty:
        return f"<p><b>{esc(caption)}</b>: no rows.</p>"
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in frame.head(max_rows).itertuples(index=False))
    more = f"<p>… and {len(frame) - max_rows} more rows.</p>" if len(frame) > max_rows else ""
    return f"<table><caption>{esc(caption)}</caption><tr>{head}</tr>{rows}</table>{more}"


def figure(data_uri: str, caption: str, href: str = "") -> str:
    """A thumbnail (data URI) with a caption, linked to the full-size file when ``href`` is given."""
    img = f'<img alt="{esc(caption)}" src="{esc(data_uri)}">'
    if href:
        img = f'<a href="{esc(href)}">{img}</a>'
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


def gallery(figures: Sequence[str]) -> str:
    """Figures side by side, wrapping."""
    return f'<div class="gallery">{"".join(figures)}</div>'


def page(title: str, intro: Sequence[str], sections: Sequence[Section]) -> str:
    """The whole document: title, intro lines, a contents list (missing sections marked), sections."""
    contents = "".join(
        f'<li><a href="#{esc(s.key)}">{esc(s.heading)}</a>{"" if s.body else " (missing)"}</li>'
        for s in sections
    )
    lines = "".join(f"<p>{esc(line)}</p>" for line in intro)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>{lines}<nav><ul>{contents}</ul></nav>"
        + "".join(s.render() for s in sections)
        + "</body></html>"
    )
