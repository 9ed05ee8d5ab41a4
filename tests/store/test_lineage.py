"""Lineage in end records: each stage's ``_SUCCESS`` names its run and every run upstream of it."""

from __future__ import annotations

import json
from pathlib import Path

from mixture_ray.store.folder import SUCCESS, StageFolder, write_json_atomic
from mixture_ray.store.lineage import upstream


def _finished(root: Path, stage: str, settings: dict[str, object],
              inputs: tuple[Path, ...] = ()) -> dict[str, object]:
    folder = StageFolder(root, stage=stage, item_column=None, inputs=inputs)
    folder.prepare(settings)
    assert folder.finish(requested=["x"], failures=[], extra={})
    record: dict[str, object] = json.loads((root / SUCCESS).read_text())
    return record


def test_end_records_carry_run_ids_and_the_whole_upstream(tmp_path: Path) -> None:
    """tile -> embed (input not in its settings) -> cluster-like folder -> a file of it -> cases:
    each record lists every run upstream once, with its stage, id and path; a rerun gets a new id."""
    tiles = _finished(tmp_path / "tiles", "tile", {"tile_size": 32, "manifest": str(tmp_path / "m.csv")})
    model = tmp_path / "pretrain" / "run"
    model.mkdir(parents=True)
    (model / "elex.pt").write_bytes(b"weights")
    write_json_atomic(model / SUCCESS, {"stage": "pretrain", "run_id": "mlflow-123",
                                        "mlflow": {"tracking_uri": "file:///mlruns", "run_id": "mlflow-123"},
                                        "lineage": [{"stage": "tile", "run_id": tiles["run_id"],
                                                     "path": str(tmp_path / "tiles")}]})
    embed = _finished(tmp_path / "emb", "embed", {"model": str(model / "elex.pt")},
                      inputs=(tmp_path / "tiles",))
    assert isinstance(embed["run_id"], str) and len(embed["run_id"]) == 32
    assert embed["lineage"] == [
        {"stage": "pretrain", "run_id": "mlflow-123", "path": str(model), "tracking_uri": "file:///mlruns"},
        {"stage": "tile", "run_id": tiles["run_id"], "path": str(tmp_path / "tiles")}]
    clustering = tmp_path / "emb" / "mag-20x" / "k-8"  # a folder inside a stage folder counts through it
    clustering.mkdir(parents=True)
    (clustering / "labels.parquet").write_bytes(b"")
    cases = _finished(tmp_path / "cases", "cases", {"clusters": [str(clustering / "labels.parquet")]})
    stages = [(e["stage"], e["run_id"]) for e in cases["lineage"]]  # type: ignore[union-attr]
    assert stages == [("embed", embed["run_id"]), ("pretrain", "mlflow-123"), ("tile", tiles["run_id"])]
    again = _finished(tmp_path / "cases", "cases", {"clusters": [str(clustering / "labels.parquet")]})
    assert again["run_id"] != cases["run_id"] and again["lineage"] == cases["lineage"]


def test_paths_without_an_end_record_add_nothing(tmp_path: Path) -> None:
    """A folder with no _SUCCESS (or an unreadable one), a name that is no path, an absent path."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / SUCCESS).write_text("{not json")
    assert upstream([{"a": str(tmp_path / "plain"), "b": "resnet18", "c": str(tmp_path / "broken"),
                      "d": [str(tmp_path / "nowhere" / "x")]}]) == []
