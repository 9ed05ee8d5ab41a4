"""The self-contained review page: every cluster's montage, size and a finding selector.

No server is needed: montages are embedded as data URIs, and the page's script writes the
mapping file (YAML, the format of :mod:`mixture_ray.review.mapping`) into a text box and offers
it as a download. Every string that comes from data is HTML-escaped; the page metadata is
embedded as JSON with ``<`` escaped so it can never close the script element.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from typing import TYPE_CHECKING

from mixture_ray.store.schemas import EXCLUDE, OTHER, magnification_label

if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class ClusterCard:
    """What the page shows for one cluster."""

    cluster: int
    size: int
    montage_png: bytes
    example_slides: list[str]


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
.cluster{background:#fff;border:1px solid #ddd;border-radius:6px;padding:0.8rem;margin:0 0 1rem}
.cluster img{max-width:100%;image-rendering:auto;display:block;margin:0.4rem 0}
.slides{font-size:0.8rem;color:#666}
#bar{position:sticky;top:0;background:#fafafa;padding:0.5rem 0;border-bottom:1px solid #ddd}
textarea{width:100%;height:12rem;font-family:monospace}
.unassigned{outline:2px solid #d33}
"""

SCRIPT = r"""
const meta = JSON.parse(document.getElementById('meta').textContent);
function mappingYaml() {
  const lines = ['source: ' + JSON.stringify('pathologist'),
                 'clustering: ' + JSON.stringify(meta.clustering),
                 'magnification: ' + (meta.magnification === null ? 'null' : meta.magnification),
                 'k: ' + meta.k, 'clusters:'];
  const missing = [];
  for (const select of document.querySelectorAll('select.finding')) {
    const id = select.dataset.cluster;
    select.closest('.cluster').classList.toggle('unassigned', !select.value);
    if (!select.value) { missing.push(id); continue; }
    lines.push('  ' + id + ': ' + JSON.stringify(select.value));
  }
  return {text: lines.join('\n') + '\n', missing: missing};
}
document.getElementById('export').addEventListener('click', () => {
  const result = mappingYaml();
  document.getElementById('mapping-output').value = result.text;
  const status = document.getElementById('status');
  status.textContent = result.missing.length
    ? 'Not assigned yet: cluster(s) ' + result.missing.join(', ') + ' (the mapping will be refused).'
    : 'All ' + meta.clusters + ' clusters assigned.';
  const link = document.getElementById('download');
  link.href = URL.createObjectURL(new Blob([result.text], {type: 'text/yaml'}));
  link.download = meta.filename;
  link.hidden = false;
});
"""


def _options(findings: Sequence[str]) -> str:
    opts = ['<option value="">— choose —</option>']
    opts += [f'<option value="{html.escape(f)}">{html.escape(f)}</option>' for f in findings]
    opts.append(f'<option value="{OTHER}">other</option>')
    opts.append(f'<option value="{EXCLUDE}">exclude (mixed cluster)</option>')
    return "".join(opts)


def render_review_page(
    *,
    cards: Sequence[ClusterCard],
    findings: Sequence[str],
    clustering: str,
    magnification: float | None,
    k: int,
) -> str:
    """The whole HTML page as a string."""
    mag = magnification_label(magnification)
    options = _options(findings)
    blocks = []
    for card in cards:
        data = base64.b64encode(card.montage_png).decode("ascii")
        slides = ", ".join(html.escape(s) for s in card.example_slides)
        blocks.append(
            f'<section class="cluster" id="cluster-{card.cluster}">'
            f"<h2>Cluster {card.cluster} <small>({card.size} tiles)</small></h2>"
            f'<img alt="montage of cluster {card.cluster}" src="data:image/png;base64,{data}">'
            f'<p class="slides">from slides: {slides}</p>'
            f'<label>Finding: <select class="finding" data-cluster="{card.cluster}">'
            f"{options}</select></label>"
            "</section>"
        )
    meta = {
        "clustering": clustering,
        "magnification": magnification,
        "k": k,
        "clusters": len(cards),
        "filename": f"mapping-{magnification_label(magnification)}-k{k}.yaml",
    }
    meta_json = json.dumps(meta).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = f"Cluster review: {html.escape(mag)}, k = {k}"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{title}</h1>"
        f"<p>Clustering <code>{html.escape(clustering)}</code>. Give each cluster a finding, "
        "<em>other</em>, or <em>exclude</em> for mixed clusters, then export the mapping file "
        "for <code>mixture-ray integrate</code>.</p>"
        '<div id="bar"><button id="export">Export mapping</button> '
        '<a id="download" hidden>Download mapping file</a> <span id="status"></span></div>'
        + "".join(blocks)
        + '<h2>Mapping file</h2><textarea id="mapping-output" readonly></textarea>'
        f'<script type="application/json" id="meta">{meta_json}</script>'
        f"<script>{SCRIPT}</script></body></html>"
    )
