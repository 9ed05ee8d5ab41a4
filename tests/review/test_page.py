"""The review page: small HTML with lazily loaded montage files, the slide/case/site mix, escaping,
and in headless Chromium choices kept over a reload, a re-opened mapping file and keyboard shortcuts."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pandas as pd
from PIL import Image

from mixture_ray.review.mapping import dump_mapping
from mixture_ray.review.mix import Mix, Source, cluster_mixes, read_sites
from mixture_ray.review.page import ClusterCard, render_review_page
from tests.review.conftest import EVIL, Lung, lung_sites, needs_chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SEEN = "&lt;script&gt;alert(1)&lt;/script&gt;"


class _MixParser(HTMLParser):
    """Cluster id -> kind -> (distinct count, tiles of each named source) from the page's markup."""

    def __init__(self) -> None:
        super().__init__()
        self.mixes: dict[int, dict[str, tuple[int, list[int]]]] = {}
        self._cluster = -1
        self._kind = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and (a.get("id") or "").startswith("cluster-"):
            self._cluster = int(str(a["id"]).removeprefix("cluster-"))
            self.mixes[self._cluster] = {}
        elif tag == "div" and "data-kind" in a:
            self._kind = str(a["data-kind"])
            self.mixes[self._cluster][self._kind] = (int(str(a["data-distinct"])), [])
        elif tag == "span" and "data-tiles" in a:
            self.mixes[self._cluster][self._kind][1].append(int(str(a["data-tiles"])))


def test_page_is_small_links_its_montages_and_escapes_data(page: Path) -> None:
    text = page.read_text()
    assert text.count('class="cluster"') == 3 and text.count('class="card"') == 3
    assert EVIL not in text and SEEN in text  # the slide id and the manifest's site, as text
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    assert "data:image" not in text and "base64" not in text  # montages are files, not embedded
    assert len(text.encode()) < 30_000  # about 17 kB, of which 11 kB script and style
    images = re.findall(r"<img [^>]*>", text)
    assert len(images) == 3 and all('loading="lazy"' in tag for tag in images)
    for tag in images:
        src = html.unescape(re.search(r'src="([^"]+)"', tag)[1])  # type: ignore[index]
        assert not src.startswith(("/", "file:")), "montages are linked relative to the page"
        file = page.parent / unquote(src)
        assert file.is_file()
        width, height = (int(re.search(rf'{name}="(\d+)"', tag)[1]) for name in ("width", "height"))  # type: ignore[index]
        assert Image.open(file).size == (width, height)  # no layout shift while loading
    assert len(sorted((page.parent / "montages").rglob("cluster-*.png"))) == 3


def test_mix_counts_are_the_clusters_slides_cases_and_sites(page: Path, lung: Lung) -> None:
    """Counted over every tile of the cluster (the assignments), the top three named, most first."""
    _, _, keys = lung
    keys = keys.assign(site=keys.slide_id.map(lung_sites(keys)).fillna("unknown"))
    parser = _MixParser()
    parser.feed(page.read_text())
    assert sorted(parser.mixes) == [0, 1, 2]
    for cluster, rows in keys.groupby("cluster"):
        shown = parser.mixes[int(str(cluster))]
        assert list(shown) == ["slides", "cases", "sites"]
        for kind, column in (("slides", "slide_id"), ("cases", "case_id"), ("sites", "site")):
            counts = rows[column].value_counts()
            assert shown[kind][0] == counts.size
            assert shown[kind][1] == sorted(counts, reverse=True)[:3]
    assert parser.mixes[2]["sites"][0] == 4  # train, test, the EVIL site and unknown (not in the manifest)


def test_mix_leaves_out_what_is_not_known(tmp_path: Path) -> None:
    """No case_id column: no case line; a manifest without site: no site line; slides the manifest
    does not name are an ``unknown`` site."""
    frame = pd.DataFrame({"cluster": [0, 0, 0, 1], "slide_id": ["b", "b", "a", "c"]})
    assert cluster_mixes(frame, top=1) == {
        0: (Mix("slides", 2, (Source("b", 2, 2 / 3),)),),
        1: (Mix("slides", 1, (Source("c", 1, 1.0),)),),
    }
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("slide_id,case_id,path\nb,p1,b.svs\n")
    assert read_sites(manifest, []) is None
    manifest.write_text("slide_id,case_id,path,site\nb,p1,b.svs,north\na,p2,a.svs,\n")
    sites = read_sites(manifest, [])
    assert sites == {"b": "north"}
    assert cluster_mixes(frame, sites=sites)[0][1] == Mix(
        "sites", 2, (Source("north", 2, 2 / 3), Source("unknown", 1, 1 / 3))
    )


def test_rendering_escapes_findings_clusterings_and_mix_names() -> None:
    card = ClusterCard(
        7, 10, 2, "montages/x/k1/cluster-7.png", (192, 96),
        (Mix("slides", 2, (Source(EVIL, 6, 0.6), Source('a"b', 4, 0.4))),),
    )
    text = render_review_page(
        cards=[card], findings=[EVIL, "ok"], clustering=f"/data/{EVIL}", magnification=20.0, k=1
    )
    assert "<script>alert" not in text and text.count("<script") == 2  # the metadata and the page script
    assert f'<option value="{SEEN}">1 · {SEEN}</option>' in text
    assert "a&quot;b 40%" in text and f"<code>/data/{SEEN}</code>" in text
    meta = re.search(r'<script type="application/json" id="meta">(.*?)</script>', text, re.S)[1]  # type: ignore[index]
    assert "<" not in meta and json.loads(meta)["findings"] == [EVIL, "ok"]
    assert json.loads(meta)["clustering"] == f"/data/{EVIL}"


def _value(tab: Page, cluster: int) -> str:
    return tab.input_value(f"select[data-cluster='{cluster}']")


def _done_cards(tab: Page) -> list[str]:
    return tab.eval_on_selector_all(".card.done", "cards => cards.map(c => c.id)")  # type: ignore[no-any-return]


@needs_chromium
def test_choices_survive_a_reload(page: Path, browser: Browser) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(page.as_uri())
    assert tab.inner_text("#progress") == "0 of 3 clusters assigned"
    tab.select_option("select[data-cluster='0']", "LUAD")
    tab.select_option("select[data-cluster='2']", "exclude")
    assert tab.inner_text("#progress") == "2 of 3 clusters assigned"
    tab.reload()
    assert (_value(tab, 0), _value(tab, 1), _value(tab, 2)) == ("LUAD", "", "exclude")
    assert tab.inner_text("#progress") == "2 of 3 clusters assigned"
    assert _done_cards(tab) == ["card-0", "card-2"] and "LUAD" in tab.inner_text("#card-0")
    assert "Restored 2 choice(s)" in tab.inner_text("#saved")
    other = context.new_page()  # the page opened again later in the same browser
    other.goto(page.as_uri())
    assert other.inner_text("#progress") == "2 of 3 clusters assigned"
    context.close()


@needs_chromium
def test_an_exported_mapping_reopens_in_a_fresh_browser(page: Path, lung: Lung, browser: Browser,
                                                        tmp_path: Path) -> None:
    clusters, _, _ = lung
    written = tmp_path / "oracle-style.yaml"  # yaml.safe_dump's format, with a comment added
    dump_mapping(written, clustering=str(clusters / "mag-unknown" / "k-3"), magnification=None, k=3,
                 clusters={0: "LUSC", 1: "LUAD", 2: "other"}, source="pathologist")
    written.write_text(written.read_text().replace("2: other", "2: other  # kept as its own class"))
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(page.as_uri())
    tab.set_input_files("#open-mapping", str(written))
    tab.wait_for_function("document.getElementById('status').textContent.startsWith('Loaded')")
    assert tab.inner_text("#status").startswith("Loaded 3 choice(s) from oracle-style.yaml.")
    assert (_value(tab, 0), _value(tab, 1), _value(tab, 2)) == ("LUSC", "LUAD", "other")
    assert tab.inner_text("#progress") == "3 of 3 clusters assigned"

    tab.select_option("select[data-cluster='2']", "exclude")  # the page's own export, re-opened
    tab.click("#export")
    exported = tmp_path / "exported.yaml"
    exported.write_text(tab.input_value("#mapping-output"))
    wrong_k = tmp_path / "other-k.json"
    wrong_k.write_text(json.dumps({"k": 5, "clusters": {"0": "LUAD"}}))
    context.close()

    fresh = browser.new_context()
    tab = fresh.new_page()
    tab.goto(page.as_uri())
    assert tab.inner_text("#progress") == "0 of 3 clusters assigned"
    tab.set_input_files("#open-mapping", str(wrong_k))
    tab.wait_for_function("document.getElementById('status').textContent.includes('nothing loaded')")
    assert "k = 5, this page is k = 3" in tab.inner_text("#status") and _value(tab, 0) == ""
    tab.set_input_files("#open-mapping", str(exported))
    tab.wait_for_function("document.getElementById('status').textContent.startsWith('Loaded')")
    assert (_value(tab, 0), _value(tab, 1), _value(tab, 2)) == ("LUSC", "LUAD", "exclude")
    tab.reload()  # a re-opened mapping is kept like any choice
    assert tab.inner_text("#progress") == "3 of 3 clusters assigned"
    fresh.close()


@needs_chromium
def test_keyboard_moves_between_clusters_and_picks_findings(page: Path, browser: Browser) -> None:
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(page.as_uri())
    keys = tab.inner_text("#keys")
    assert "j / k" in keys and "LUSC" in keys and "exclude" in keys

    def current() -> list[str]:
        return tab.eval_on_selector_all(".cluster.current", "s => s.map(e => e.id)")  # type: ignore[no-any-return]

    tab.keyboard.press("j")
    assert current() == ["cluster-0"] and tab.evaluate("document.activeElement.id") == "cluster-0"
    tab.keyboard.press("2")
    tab.keyboard.press("j")
    tab.keyboard.press("1")
    assert (_value(tab, 0), _value(tab, 1)) == ("LUSC", "LUAD") and current() == ["cluster-1"]
    tab.keyboard.press("n")  # next cluster not assigned yet
    assert current() == ["cluster-2"]
    tab.keyboard.press("x")
    tab.keyboard.press("k")
    tab.keyboard.press("u")
    assert current() == ["cluster-1"] and (_value(tab, 1), _value(tab, 2)) == ("", "exclude")
    assert tab.inner_text("#progress") == "2 of 3 clusters assigned"
    tab.focus("#mapping-output")  # typing in a text box is not a shortcut
    tab.keyboard.press("j")
    assert current() == ["cluster-1"]
    context.close()

