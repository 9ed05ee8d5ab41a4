"""Batch-effect audit: the site score and NMI on hand-made assignments, the files the review stage
writes beside its pages, the page's one-site badge and overview line, and a cohort without sites."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import normalized_mutual_info_score

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.review.config import ReviewConfig
from mixture_ray.review.site_audit import (
    CSV_COLUMNS,
    CSV_NAME,
    JSON_NAME,
    SiteAudit,
    audit_clustering,
    site_nmi,
    site_score,
)
from mixture_ray.review.stage import ReviewReport
from mixture_ray.review.stage import run as run_review
from tests.review.conftest import EVIL, Lung

#: Sites of the audited lung fixture: every LUAD slide from one site (whose name needs escaping),
#: the LUSC slides split between two others by their folder.
NORTH = "north & <i>co</i>"
SOUTH, EAST = "south", "east"
FLAG = 0.75


def _audit(clusters: list[int], sites: list[str | None], threshold: float = FLAG) -> SiteAudit:
    return audit_clustering(
        pd.Series(clusters), pd.Series(sites, dtype="object"), label="20x-k4", magnification=20.0,
        k=len(set(clusters)), threshold=threshold,
    )


def test_one_site_cluster_scores_one_and_a_cluster_mirroring_the_cohort_zero() -> None:
    """Three equal sites: clusters 0-2 each from one site, cluster 3 a third of each."""
    clusters = [0] * 10 + [1] * 10 + [2] * 10 + [3] * 30
    sites = ["s1"] * 10 + ["s2"] * 10 + ["s3"] * 10 + ["s1", "s2", "s3"] * 10
    audit = _audit(clusters, sites)
    assert audit.skipped is None and audit.sites == pytest.approx({"s1": 1 / 3, "s2": 1 / 3, "s3": 1 / 3})
    for cid, site in enumerate(["s1", "s2", "s3"]):
        one = audit.clusters[cid]
        assert (one.site, one.score, one.flagged, one.n_sites) == (site, 1.0, True, 1)
        assert one.share == 1.0 and one.cohort_share == pytest.approx(1 / 3)
        assert one.enrichment == pytest.approx(3.0)
    mirror = audit.clusters[3]
    assert mirror.score == pytest.approx(0.0, abs=1e-12) and not mirror.flagged
    assert mirror.purity == pytest.approx(1 / 3) and mirror.enrichment == pytest.approx(1.0)
    assert [c.cluster for c in audit.flagged] == [0, 1, 2]
    # the threshold decides: at 1.0 still flagged (score 1 reaches it), never the mirror
    assert [c.cluster for c in _audit(clusters, sites, 1.0).flagged] == [0, 1, 2]


def test_a_dominant_site_does_not_make_every_cluster_pure() -> None:
    """Purity alone would call a cohort-like cluster 90 % pure; the score says 0 and names the site
    that is over-represented, even when it is not the largest one."""
    cohort = {"a": 0.9, "b": 0.1}
    assert site_score({"a": 0.9, "b": 0.1}, cohort)[1] == pytest.approx(0.0, abs=1e-12)
    assert site_score({"a": 0.6, "b": 0.4}, cohort) == ("b", pytest.approx(1 / 3))
    assert site_score({"a": 1.0}, cohort) == ("a", 1.0)
    assert site_score({"a": 0.95, "b": 0.05}, cohort) == ("a", pytest.approx(0.5))
    # an entropy ratio would give 0 here (same entropy as the cohort): the score does not
    assert site_score({"x": 0.1, "y": 0.8, "z": 0.1}, {"x": 0.8, "y": 0.1, "z": 0.1}) == (
        "y", pytest.approx(0.7 / 0.9)
    )
    # ties go to the first name
    assert site_score({"b": 0.5, "a": 0.5}, {"a": 0.25, "b": 0.25, "c": 0.5})[0] == "a"


def test_nmi_is_zero_for_independent_and_one_for_identical() -> None:
    clusters = [0, 0, 0, 0, 1, 1, 1, 1]
    assert site_nmi(clusters, ["a", "a", "b", "b", "a", "a", "b", "b"]) == pytest.approx(0.0, abs=1e-12)
    assert site_nmi(clusters, ["x"] * 4 + ["y"] * 4) == pytest.approx(1.0)
    assert 0.0 < site_nmi(clusters, ["x"] * 3 + ["y"] * 5) < 1.0


def test_tiles_without_a_site_are_left_out_and_one_site_is_skipped() -> None:
    audit = _audit([0, 0, 0, 1, 1, 1], ["a", "a", None, "b", "b", None])
    assert (audit.with_site, audit.without_site) == (4, 2)
    assert [(c.tiles, c.with_site, c.score) for c in audit.clusters] == [(3, 2, 1.0), (3, 2, 1.0)]
    assert audit.nmi == pytest.approx(1.0)
    only = _audit([0, 1], ["a", "a"])
    assert only.skipped is not None and "every tile with a site is from a" in only.skipped
    assert only.clusters == () and only.nmi is None
    none = audit_clustering(pd.Series([0, 1]), None, label="x", magnification=None, k=2, threshold=FLAG)
    assert none.skipped is not None and none.skipped.startswith("no site known")
    unknown = _audit([0, 0, 1], ["a", "b", None])
    assert unknown.clusters[1].with_site == 0 and not unknown.clusters[1].flagged


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_site_flag_is_checked(bad: float, tmp_path: Path) -> None:
    base = {"clusters": tmp_path, "tiles": tmp_path, "out_dir": tmp_path}
    assert build_config(ReviewConfig, {**base, "site_flag": 0.0}).site_flag == 0.0
    with pytest.raises(ConfigError, match="site_flag"):
        build_config(ReviewConfig, {**base, "site_flag": bad})


def _label_sites(keys: pd.DataFrame) -> dict[str, str]:
    slides = keys[keys.slide_id != EVIL].drop_duplicates("slide_id")
    return {
        s: NORTH if label == "LUAD" else SOUTH if s.startswith("test/") else EAST
        for s, label in zip(slides.slide_id, slides.label, strict=True)
    }


@pytest.fixture(scope="module")
def audited(lung: Lung, tmp_path_factory: pytest.TempPathFactory) -> tuple[ReviewReport, Path]:
    """The lung clustering reviewed with a manifest whose sites follow the label (cluster 0 = LUAD)."""
    clusters, tiles, keys = lung
    out = tmp_path_factory.mktemp("audited")
    sites = _label_sites(keys)
    manifest = out.parent / f"{out.name}-manifest.csv"
    pd.DataFrame({"slide_id": list(sites), "site": list(sites.values())}).to_csv(manifest, index=False)
    cfg = build_config(
        ReviewConfig,
        {"clusters": clusters, "tiles": tiles, "out_dir": out, "findings": ["LUAD", "LUSC"],
         "per_cluster": 4, "thumb_px": 16, "manifest": manifest, "site_flag": FLAG},
    )
    return run_review(cfg), out


def test_stage_writes_the_site_audit_beside_the_pages(audited: tuple[ReviewReport, Path], lung: Lung) -> None:
    report, out = audited
    _, _, keys = lung
    assert report.site_audit == [out / CSV_NAME, out / JSON_NAME]
    assert f"site audit: {out / CSV_NAME}" in report.summary()
    known = keys.assign(site=keys.slide_id.map(_label_sites(keys))).dropna(subset=["site"])
    cohort = known.site.value_counts(normalize=True)
    table = pd.read_csv(out / CSV_NAME, keep_default_na=False)
    assert list(table.columns) == list(CSV_COLUMNS) and table.cluster.tolist() == [0, 1, 2]
    for row in table.itertuples():
        rows = known[known.cluster == row.cluster]
        shares = rows.site.value_counts(normalize=True)
        scores = {s: (p - cohort[s]) / (1 - cohort[s]) for s, p in shares.items()}
        best = max(scores, key=scores.__getitem__)
        assert (row.site, row.n_sites) == (best, shares.size)
        assert row.tiles == (keys.cluster == row.cluster).sum() and row.tiles_with_site == len(rows)
        assert row.site_score == pytest.approx(max(0.0, scores[best]))
        assert row.cohort_share == pytest.approx(cohort[best]) and row.purity == pytest.approx(shares.max())
        assert row.one_site == (scores[best] >= FLAG)
    assert table.one_site.tolist() == [True, False, False]  # LUAD is one site; LUSC two; 2 is random
    assert table.site[0] == NORTH and table.site_score[0] == 1.0
    assert table.tiles_with_site.sum() == len(keys) - 1  # the EVIL slide is not in the manifest
    summary = json.loads((out / JSON_NAME).read_text())
    entry = summary["clusterings"]["unknown-k3"]
    assert summary["site_flag"] == FLAG and entry["k"] == 3 and entry["skipped"] is None
    assert entry["nmi_cluster_site"] == pytest.approx(normalized_mutual_info_score(known.site, known.cluster))
    assert 0.2 < entry["nmi_cluster_site"] < 1.0
    assert [f["cluster"] for f in entry["flagged"]] == [0] and entry["flagged"][0]["site"] == NORTH
    assert entry["tiles_without_site"] == 1 and sum(entry["sites"].values()) == pytest.approx(1.0)


def _sections(text: str) -> dict[int, str]:
    found = re.findall(r'<section class="cluster" id="cluster-(\d+)".*?</section>', text, re.S)
    parts = re.split(r'(?=<section class="cluster" id="cluster-\d+")', text)[1:]
    assert len(found) == len(parts)
    return {int(cid): part for cid, part in zip(found, parts, strict=True)}


def test_page_shows_the_score_and_badges_one_site_clusters_only(audited: tuple[ReviewReport, Path]) -> None:
    report, out = audited
    text = report.pages[0].read_text()
    table = pd.read_csv(out / CSV_NAME, keep_default_na=False)
    escaped = "north &amp; &lt;i&gt;co&lt;/i&gt;"
    assert "<i>co</i>" not in text
    sections = _sections(text)
    assert sorted(sections) == [0, 1, 2]
    share = f"{table.cohort_share[0]:.0%}"
    badge = f'<span class="badge one-site">one site: {escaped} (100% vs {share} of the cohort)'
    assert badge in sections[0]
    for cid in (1, 2):
        assert "one site:" not in sections[cid] and 'data-flagged="false"' in sections[cid]
        assert f'data-site-score="{table.site_score[cid]:.4f}"' in sections[cid]
    assert 'data-site-score="1.0000" data-flagged="true"' in sections[0]
    assert "1 tile without a site left out" in sections[2]  # the EVIL slide, not in the manifest
    overview = re.search(r'<section id="overview">.*?</section>', text, re.S)[0]  # type: ignore[index]
    nmi = json.loads((out / JSON_NAME).read_text())["clusterings"]["unknown-k3"]["nmi_cluster_site"]
    assert f"NMI between cluster and site <b>{nmi:.2f}</b>" in overview
    assert "<b>1 of 3</b> clusters flagged as one site" in overview and 'href="#cluster-0">0</a>' in overview
    assert overview.count('class="card-site"') == 1 and 'id="card-0"' in overview.split("card-site")[0]
    assert text.count('class="card"') == 3  # the overview cards keep their class for the page script


def test_a_cohort_without_sites_writes_no_audit_and_says_why(lung: Lung, tmp_path: Path) -> None:
    clusters, tiles, _ = lung
    (tmp_path / CSV_NAME).write_text("left from an earlier cohort\n")
    cfg = build_config(
        ReviewConfig,
        {"clusters": clusters, "tiles": tiles, "out_dir": tmp_path, "findings": ["LUAD", "LUSC"],
         "per_cluster": 4, "thumb_px": 16},
    )
    report = run_review(cfg)
    assert report.site_audit == []
    assert not (tmp_path / CSV_NAME).exists() and not (tmp_path / JSON_NAME).exists()
    assert "site audit unknown-k3: skipped (no site known: no site column" in report.summary()
    text = report.pages[0].read_text()
    assert "Site audit: skipped (no site known" in text and "one site:" not in text
    assert 'class="purity"' not in text
