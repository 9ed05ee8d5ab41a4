"""`mixture-ray status` on complete, partial, failed and running run folders, from markers only."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mixture_ray.cli import build_parser, main
from mixture_ray.locations import Location
from mixture_ray.report import Failure
from mixture_ray.status.commits import Commits, eta_seconds
from mixture_ray.status.read import PLANNED, StageStatus, read_status
from mixture_ray.status.settings import short_settings
from mixture_ray.store.folder import StageFolder, write_json_atomic
from mixture_ray.store.folder_lease import LEASE, Holder
from mixture_ray.store.store_index import list_markers

TILE_SETTINGS = {"tile_size": 224, "magnifications": [20.0], "seed": 0}
EMBED_SETTINGS = {"arch": "resnet18", "model": "/runs/a/pretrain/elex_20x/elex.pt", "magnification": 20.0}


def _commit(folder: StageFolder, slides: list[str], rows: int = 3) -> None:
    """Commit one chunk holding ``rows`` rows of each slide (the way a stage's writer does)."""
    tmp = folder.new_tmp_dir()
    tmp.mkdir()
    ids = [s for s in slides for _ in range(rows)]
    pd.DataFrame({"slide_id": ids, "error": [None] * len(ids), "x": range(len(ids))}).to_parquet(
        tmp / "part-0.parquet")
    folder.commit(tmp, {s: f"/slides/{s}.svs" for s in slides})


def _store(root: Path, stage: str, settings: dict[str, object], chunks: list[list[str]]) -> StageFolder:
    folder = StageFolder(root, stage=stage)
    folder.prepare(settings)
    for slides in chunks:
        _commit(folder, slides)
    return folder


@pytest.fixture
def complete_run(tmp_path: Path) -> Path:
    """A run folder whose stages all finished: tiles, embeddings (one slide failed), clusters, a cohort."""
    run = tmp_path / "run"
    _store(run / "tiles", "tile", TILE_SETTINGS, [["s1", "s2"], ["s3"]]).finish(
        requested=["s1", "s2", "s3"], failures=[], extra={})
    _store(run / "embeddings", "embed", EMBED_SETTINGS, [["s1", "s2"]]).finish(
        requested=["s1", "s2", "s3"], failures=[Failure("s3", "/slides/s3.svs", "unreadable")], extra={})
    (run / "clusters").mkdir()
    write_json_atomic(run / "clusters" / "_SUCCESS", {"clusterings": 2, "engine": "sklearn"})
    (run / "cohort").mkdir()
    (run / "cohort" / "_SUCCESS").write_text("")
    return run


def _by_folder(rows: list[StageStatus]) -> dict[str, StageStatus]:
    return {r.folder: r for r in rows}


def test_a_complete_run_folder(complete_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _by_folder(read_status(complete_run))
    assert set(rows) == {"tiles", "embeddings", "clusters", "cohort"}
    tiles = rows["tiles"]
    assert (tiles.stage, tiles.state, tiles.done, tiles.failed, tiles.rows) == ("tile", "complete", 3, 0, 9)
    assert tiles.settings == "magnifications=[20] tile_size=224" and tiles.last is not None
    embed = rows["embeddings"]
    assert (embed.stage, embed.state, embed.done, embed.failed) == ("embed", "failed", 2, 1)
    assert embed.settings == "model=elex_20x/elex.pt magnification=20 arch=resnet18"
    assert (rows["clusters"].stage, rows["clusters"].state, rows["clusters"].settings) == (
        "cluster", "complete", "engine=sklearn")
    assert rows["cohort"].state == "complete" and rows["cohort"].done is None

    assert main(["status", str(complete_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"run folder {complete_run}")
    assert lines[1].split()[:5] == ["folder", "stage", "state", "done", "failed"]
    embed_line = next(line for line in lines if line.startswith("embeddings"))
    assert embed_line.split()[:5] == ["embeddings", "embed", "failed", "2", "1"]
    assert len({len(line) for line in lines[1:3]}) <= 2  # aligned columns


def test_a_partial_run_folder_stopped_and_running(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _store(run / "tiles", "tile", TILE_SETTINGS, [["s1", "s2"], ["s3"]]).finish(
        requested=["s1", "s2", "s3"], failures=[], extra={})
    # a killed run: two slides committed, no end marker; its lease names this (live) process, which a
    # reader elsewhere would see as a dead holder on this host, so it is read as stale
    killed = _store(run / "embeddings", "embed", EMBED_SETTINGS, [["s1"], ["s2"]])
    assert killed.lease is not None and (run / "embeddings" / LEASE).exists()
    predictions = StageFolder(run / "predictions", stage="classify")
    predictions.prepare({"classifier": "/c/classifier.pt"})
    predictions.release()  # settings only: nothing committed, no run holds it

    rows = _by_folder(read_status(run))
    embed = rows["embeddings"]
    assert (embed.stage, embed.state, embed.running, embed.done, embed.failed) == ("embed", "partial", False,
                                                                                  2, None)
    assert embed.label == "partial, stopped" and embed.eta_s is None and embed.last is not None
    assert (rows["predictions"].stage, rows["predictions"].state) == ("?", "empty")
    assert rows["tiles"].state == "complete"

    # the same folder while a run on another host holds its lease: who, and an ETA from the commits
    now = time.time()
    started = now - 100
    for marker, at in zip(list_markers(Location.of(run / "embeddings")), (started - 500, started + 40),
                          strict=True):
        os.utime(marker.path, (at, at))
    holder = Holder("o1", "embed", "gpu-node-7", 4242, "raysubmit_1", started, now - 5)
    payload = {**json.loads(holder.to_json()), PLANNED: 4}
    (run / "embeddings" / LEASE).write_text(json.dumps(payload))
    embed = _by_folder(read_status(run, now=started + 45))["embeddings"]
    assert embed.label == "partial, running" and embed.holder is not None and "gpu-node-7" in embed.holder
    # 1 slide in this run's 40 s, 2 left: 80 s from the last commit, 5 s ago
    assert embed.eta_s == pytest.approx(75.0)


def test_status_prints_the_holder_and_an_unknown_eta(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _store(run / "tiles", "tile", TILE_SETTINGS, [["s1"]])
    now = time.time()
    holder = Holder("o1", "tile", "gpu-node-7", 4242, None, now - 60, now - 1)
    (run / "tiles" / LEASE).write_text(holder.to_json())  # no planned_items: the ETA is unknown
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("tiles"))
    assert "partial, running" in line and "unknown" in line
    assert "tiles: written now by a tile run on host gpu-node-7 (pid 4242)" in out


def test_item_folders_count_as_items_of_their_stage(tmp_path: Path) -> None:
    grids = tmp_path / "run" / "explain" / "grids"
    folder = StageFolder(grids, stage="explain-grids", item_column=None)
    folder.prepare({"arch": "resnet18", "layer": "layer3"})
    for slide in ("a", "b"):
        (grids / slide).mkdir()
        (grids / slide / "_SUCCESS").write_text("")
    rows = read_status(tmp_path / "run")
    assert [(r.folder, r.stage, r.state, r.done) for r in rows] == [
        ("explain/grids", "explain-grids", "partial", 2)]


def test_status_reads_no_data_file(complete_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partial = StageFolder(complete_run / "predictions", stage="classify")
    partial.prepare({"classifier": "/c/classifier.pt"})
    _commit(partial, ["s1"])
    partial.release()
    before = read_status(complete_run)
    data = sorted(complete_run.rglob("*.parquet"))
    assert data
    for file in data:
        file.write_bytes(b"not parquet at all")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"status opened a data file: {args}")

    for name in ("read_table", "ParquetFile", "ParquetDataset", "read_metadata", "read_schema"):
        monkeypatch.setattr(pq, name, refuse)
    monkeypatch.setattr(pd, "read_parquet", refuse)
    assert read_status(complete_run) == before
    assert _by_folder(before)["predictions"].label == "partial, stopped"


def test_json_output(complete_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(complete_run), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["run_dir"] == str(complete_run)
    tiles = next(s for s in payload["stages"] if s["folder"] == "tiles")
    assert (tiles["state"], tiles["done"], tiles["rows"]) == ("complete", 3, 9)
    assert tiles["last_utc"].endswith("+00:00")


def test_an_absent_folder_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-run"
    assert main(["status", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


def test_a_folder_without_stage_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes").mkdir()
    assert read_status(tmp_path) == []
    assert main(["status", str(tmp_path)]) == 0
    assert "no stage folder found" in capsys.readouterr().out


def test_the_verb_is_listed_and_documented(capsys: pytest.CaptureFixture[str]) -> None:
    assert "status" in build_parser().format_help()
    with pytest.raises(SystemExit) as exit_info:
        main(["status", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "DIR" in text and "--json" in text


def test_eta_and_settings_helpers() -> None:
    commits = Commits(done=6, rows=None, times=(110.0, 130.0), done_before=2)
    assert eta_seconds(commits, planned=10, started=100.0, now=130.0) == pytest.approx(30.0)
    assert eta_seconds(commits, planned=None, started=100.0, now=130.0) is None
    assert eta_seconds(commits, planned=6, started=100.0, now=130.0) == 0.0
    assert eta_seconds(Commits(2, None, (90.0,), 2), planned=10, started=100.0, now=130.0) is None
    text = short_settings({"model": "/a/b/c/elex.pt", "note": "x" * 100, "magnification": 20.0}, width=30)
    assert text == "model=c/elex.pt magnificati..." and len(text) == 30
    assert short_settings({"exclude": [], "seed": 0}) == "seed=0"
