"""The review page: an overview with progress, then every cluster's montage, mix and finding selector.

No server is needed: the page is one small HTML file whose montages are PNG files beside it
(``<img loading="lazy">`` with relative paths, so only the montages scrolled to are loaded; keep
the page and its ``montages/`` folder together). The page's script (:mod:`.page_script`) keeps the
choices in the browser, re-opens an exported mapping, offers keyboard shortcuts and writes the
mapping file (YAML, the format of :mod:`mixture_ray.review.mapping`). Every string that comes from
data is HTML-escaped; the page metadata is embedded as JSON with ``<``, ``>`` and ``&`` escaped so
it can never close the script element.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from typing import TYPE_CHECKING

from mixture_ray.review.mix import Mix
from mixture_ray.review.page_script import SCRIPT
from mixture_ray.review.page_style import STYLE
from mixture_ray.review.site_audit import ClusterSites, SiteAudit
from mixture_ray.store.schemas import EXCLUDE, OTHER, magnification_label

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Findings reachable with the digit keys 1-9.
DIGIT_KEYS = 9


@dataclasses.dataclass(frozen=True)
class ClusterCard:
    """What the page shows for one cluster.

    Attributes:
        cluster: cluster id.
        size: tiles in the cluster.
        shown: tiles drawn into its montage.
        montage: URL of the montage relative to the page (already URL-quoted).
        montage_size: the montage's width and height in pixels.
        mix: where the cluster's tiles come from (slides, cases, sites).
        sites: the cluster's site audit (site score, one-site flag); None without sites.
    """

    cluster: int
    size: int
    shown: int
    montage: str
    montage_size: tuple[int, int]
    mix: tuple[Mix, ...] = ()
    sites: ClusterSites | None = None


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _options(findings: Sequence[str]) -> str:
    opts = ['<option value="">— choose —</option>']
    for n, finding in enumerate(findings, start=1):
        key = f"{n} · " if n <= DIGIT_KEYS else ""
        opts.append(f'<option value="{_esc(finding)}">{key}{_esc(finding)}</option>')
    opts.append(f'<option value="{OTHER}">o · other</option>')
    opts.append(f'<option value="{EXCLUDE}">x · exclude (mixed cluster)</option>')
    return "".join(opts)


def _share(share: float) -> str:
    return "&lt;1%" if 0 < share < 0.005 else f"{share:.0%}"


def _mix(mixes: Sequence[Mix]) -> str:
    if not mixes:
        return ""
    rows = []
    for mix in mixes:
        noun = mix.kind if mix.distinct != 1 else mix.kind.removesuffix("s")
        named = " · ".join(
            f'<span data-tiles="{s.tiles}" title="{s.tiles} tiles">{_esc(s.name)} {_share(s.share)}</span>'
            for s in mix.top
        )
        rest = mix.distinct - len(mix.top)
        more = f" · {rest} more" if rest > 0 else ""
        rows.append(
            f'<div data-kind="{_esc(mix.kind)}" data-distinct="{mix.distinct}">'
            f"<dt>{mix.distinct} {_esc(noun)}</dt><dd>{named}{more}</dd></div>"
        )
    return f'<dl class="mix">{"".join(rows)}</dl>'


def _tiles(n: int) -> str:
    return f"{n} tile" if n == 1 else f"{n} tiles"


def _one_site(sites: ClusterSites) -> str:
    return (
        f'<span class="badge one-site">one site: {_esc(sites.site)} ({_share(sites.share)} vs '
        f"{_share(sites.cohort_share)} of the cohort)</span>"
    )


def _purity(sites: ClusterSites | None, threshold: float) -> str:
    if sites is None:
        return ""
    if sites.with_site == 0:
        return '<p class="purity">Site score: none of its tiles has a known site.</p>'
    badge = _one_site(sites) + " " if sites.flagged else ""
    flag_at = f"; flagged at {threshold:g} or more" if not math.isnan(threshold) else ""
    if sites.score < 0.005:
        top = "no site over-represented, its site mix is the cohort's"
    else:
        top = (
            f"most over-represented {_esc(sites.site)}, {_share(sites.share)} of the cluster vs "
            f"{_share(sites.cohort_share)} of the cohort ({sites.enrichment:.1f} times its share)"
        )
    unknown = sites.tiles - sites.with_site
    left_out = f"; {_tiles(unknown)} without a site left out" if unknown else ""
    return (
        f'<p class="purity" data-site-score="{sites.score:.4f}" data-flagged="{str(sites.flagged).lower()}">'
        f'{badge}Site score <b>{sites.score:.2f}</b> <small title="0 = its site mix is the cohort\'s, '
        f'1 = all its tiles from one site{flag_at}">(0 = the cohort\'s mix, 1 = one site)</small>: '
        f"{top}; largest site share {_share(sites.purity)}{left_out}.</p>"
    )


def _section(card: ClusterCard, options: str, threshold: float) -> str:
    width, height = card.montage_size
    return (
        f'<section class="cluster" id="cluster-{card.cluster}" tabindex="-1">'
        f'<div class="head"><h2>Cluster {card.cluster} <small>({card.size} tiles)</small></h2>'
        f'<label>Finding: <select class="finding" data-cluster="{card.cluster}">{options}</select>'
        "</label></div>"
        + _mix(card.mix)
        + _purity(card.sites, threshold)
        + f'<p class="shown">Montage: {card.shown} of {card.size} tiles, drawn at random.</p>'
        f'<img loading="lazy" decoding="async" src="{_esc(card.montage)}" width="{width}" '
        f'height="{height}" alt="montage of cluster {card.cluster}">'
        "</section>"
    )


def _card(card: ClusterCard) -> str:
    flag = (
        f'<span class="card-site" title="{_esc(card.sites.site)}">one site</span>'
        if card.sites is not None and card.sites.flagged
        else ""
    )
    return (
        f'<a class="card" id="card-{card.cluster}" href="#cluster-{card.cluster}">'
        f"<b>{card.cluster}</b> <small>{card.size} tiles</small>{flag}"
        '<span class="card-finding">—</span></a>'
    )


def _audit_line(audit: SiteAudit | None) -> str:
    if audit is None:
        return ""
    if audit.skipped is not None:
        return f'<p id="site-audit">Site audit: skipped ({_esc(audit.skipped)}).</p>'
    assert audit.nmi is not None
    links = ", ".join(f'<a href="#cluster-{c.cluster}">{c.cluster}</a>' for c in audit.flagged)
    which = f": {links}" if links else ""
    left_out = f" {_tiles(audit.without_site)} without a site left out." if audit.without_site else ""
    return (
        f'<p id="site-audit" data-nmi="{audit.nmi:.4f}" data-flagged="{len(audit.flagged)}">'
        f"Site audit ({len(audit.sites)} sites): NMI between cluster and site <b>{audit.nmi:.2f}</b> "
        "(0 = clusters independent of site, 1 = the clusters are the sites); "
        f"<b>{len(audit.flagged)} of {len(audit.clusters)}</b> clusters flagged as one site "
        f"(site score ≥ {audit.threshold:g}){which}.{left_out}</p>"
    )


def _overview(cards: Sequence[ClusterCard], audit: SiteAudit | None) -> str:
    items = "".join(_card(c) for c in cards)
    return (
        f'<section id="overview"><h2>Overview</h2>{_audit_line(audit)}'
        f'<div class="grid">{items}</div></section>'
    )


def _keys(findings: Sequence[str]) -> str:
    rows = [("j / k", "next / previous cluster"), ("n", "next cluster not assigned yet")]
    rows += [(str(n), f) for n, f in enumerate(findings[:DIGIT_KEYS], start=1)]
    rows += [("o", "other"), ("x", "exclude (mixed cluster)"), ("u", "clear the cluster's choice")]
    table = "".join(f"<tr><td><kbd>{_esc(key)}</kbd></td><td>{_esc(text)}</td></tr>" for key, text in rows)
    return (
        f'<details id="keys" open><summary>Keyboard shortcuts</summary><table>{table}</table>'
        "<p>The keys act on the current (outlined) cluster; they do nothing while typing in a "
        "text box.</p></details>"
    )


def render_review_page(
    *,
    cards: Sequence[ClusterCard],
    findings: Sequence[str],
    clustering: str,
    magnification: float | None,
    k: int,
    site_audit: SiteAudit | None = None,
) -> str:
    """The whole HTML page as a string.

    Args:
        cards: one per cluster, in page order.
        findings: finding names offered (``other`` and ``exclude`` are always added); the first
            nine get the digit keys.
        clustering: the clustering folder, recorded in the exported mapping and part of the key
            under which the browser keeps the choices.
        magnification: the clustering's magnification (None when unknown).
        k: the clustering's k.
        site_audit: the clustering's batch-effect audit, summed up in the overview (NMI, flagged
            clusters, or why it was skipped); each card's ``sites`` holds its cluster's part.

    Returns:
        The page; its montages are the files ``card.montage`` names, relative to the page.
    """
    if magnification is not None and math.isnan(magnification):
        magnification = None  # JSON has no NaN: the page's metadata would not parse
    mag = magnification_label(magnification)
    options = _options(findings)
    threshold = site_audit.threshold if site_audit is not None else math.nan
    meta = {
        "clustering": clustering,
        "magnification": magnification,
        "k": k,
        "clusters": len(cards),
        "findings": list(findings),
        "filename": f"mapping-{mag}-k{k}.yaml",
    }
    meta_json = json.dumps(meta).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = f"Cluster review: {_esc(mag)}, k = {k}"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{title}</h1>"
        f"<p>Clustering <code>{_esc(clustering)}</code>. Give each cluster a finding, "
        "<em>other</em>, or <em>exclude</em> for mixed clusters, then export the mapping file "
        "for <code>mixture-ray integrate</code>. Choices are kept in this browser for this "
        "clustering and survive a reload; export the mapping to keep or share them, and open it "
        "here again to continue.</p>"
        f'<div id="bar"><span id="progress">0 of {len(cards)} clusters assigned</span>'
        '<button id="export">Export mapping</button> '
        '<a id="download" hidden>Download mapping file</a>'
        '<label>Open a mapping file: <input type="file" id="open-mapping" '
        'accept=".yaml,.yml,.json"></label>'
        '<a href="#overview">overview</a><a href="#keys">keys</a>'
        '<span id="status"></span><span id="saved"></span></div>'
        + _overview(cards, site_audit)
        + _keys(findings)
        + "".join(_section(card, options, threshold) for card in cards)
        + '<h2>Mapping file</h2><textarea id="mapping-output" readonly></textarea>'
        f'<script type="application/json" id="meta">{meta_json}</script>'
        f"<script>{SCRIPT}</script></body></html>"
    )
