"""The self-contained QC summary page: counts, a filter by decision, one row per slide.

Thumbnails are embedded as data URIs (no server, nothing fetched); every string from data is
HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING

from PIL import Image

from mixture_ray.qc.decide import DECISIONS

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border:1px solid #ddd;padding:0.3rem 0.5rem;vertical-align:top;font-size:0.85rem;text-align:left}
tr.pass td.decision{color:#070}tr.flag td.decision{color:#b60}tr.fail td.decision{color:#c00}
#bar{position:sticky;top:0;background:#fafafa;padding:0.5rem 0}
button.on{font-weight:bold}
"""

SCRIPT = """
function show(decision) {
  let shown = 0;
  for (const row of document.querySelectorAll('tr.slide')) {
    const visible = decision === 'all' || row.classList.contains(decision);
    row.style.display = visible ? '' : 'none';
    if (visible) shown += 1;
  }
  for (const b of document.querySelectorAll('#bar button')) {
    b.classList.toggle('on', b.dataset.show === decision);
  }
  document.getElementById('shown').textContent = shown + ' slide(s) shown';
}
for (const b of document.querySelectorAll('#bar button')) {
  b.addEventListener('click', () => show(b.dataset.show));
}
show('all');
"""

METRICS = (("tissue_area_mm2", "tissue mm²", "{:.2f}"), ("mpp", "mpp", "{:.3g}"),
           ("stain_intensity", "stain strength", "{:.2f}"), ("blurry_fraction", "blurry tiles", "{:.0%}"),
           ("pen_fraction", "pen", "{:.1%}"), ("fold_fraction", "folds", "{:.1%}"),
           ("has_icc_profile", "ICC profile", "{}"))


def _image_uri(path: Path, max_px: int) -> str:
    if not path.is_file():
        return ""
    image = Image.open(path).convert("RGB")
    image.thumbnail((max_px, max_px))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return html.escape(fmt.format(value))


def render_page(rows: pd.DataFrame, root: Path, *, thumbnail_px: int) -> str:
    """The HTML page of a QC table.

    Args:
        rows: the QC table (columns of :data:`mixture_ray.store.qc_table.QC_SCHEMA`).
        root: the QC folder (thumbnails are read from it and embedded).
        thumbnail_px: longest edge of the embedded thumbnails.

    Returns:
        The page's HTML.
    """
    counts = {d: int((rows.decision == d).sum()) for d in DECISIONS}
    buttons = "".join(f'<button data-show="{d}">{d} ({counts[d]})</button>' for d in DECISIONS)
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in METRICS)
    body = []
    for row in rows.itertuples(index=False):
        decision = str(row.decision)
        name = row.thumbnail if isinstance(row.thumbnail, str) else ""
        uri = _image_uri(root / name, thumbnail_px) if name else ""
        image = f'<img alt="QC thumbnail" src="{uri}">' if uri else ""
        cells = "".join(f"<td>{_cell(getattr(row, key), fmt)}</td>" for key, _, fmt in METRICS)
        body.append(
            f'<tr class="slide {html.escape(decision)}"><td>{image}</td>'
            f'<td class="id">{html.escape(str(row.slide_id))}</td><td>{html.escape(str(row.case_id))}</td>'
            f'<td class="decision">{html.escape(decision)}</td>'
            f'<td class="reason">{html.escape(str(row.reason or ""))}</td>{cells}</tr>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Slide QC</title>'
        f"<style>{STYLE}</style></head><body><h1>Slide quality control</h1>"
        f'<p>{len(rows)} slides: {counts["pass"]} pass, {counts["flag"]} flag, {counts["fail"]} fail.</p>'
        f'<div id="bar"><button data-show="all">all ({len(rows)})</button>{buttons} '
        '<span id="shown"></span></div>'
        "<table><thead><tr><th>thumbnail</th><th>slide</th><th>case</th><th>decision</th><th>reason</th>"
        f'{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        f"<script>{SCRIPT}</script></body></html>"
    )
