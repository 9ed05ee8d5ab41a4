from __future__ import annotations

import math
from pathlib import Path

import pytest

from mixture_ray.errors import ManifestError
from mixture_ray.store.manifest import read_manifest


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    return path


def test_relative_paths_resolve_against_manifest_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "slide_id,case_id,path,mpp\ns1,c1,slides/a.svs,0.5\ns2,c1,/abs/b.svs,\n")
    frame = read_manifest(path)
    assert frame["path"].tolist() == [str(tmp_path / "slides/a.svs"), "/abs/b.svs"]
    assert frame["mpp"].iloc[0] == 0.5 and math.isnan(frame["mpp"].iloc[1])


def test_paths_are_not_expanded(tmp_path: Path) -> None:
    frame = read_manifest(write(tmp_path, "slide_id,case_id,path\ns1,c1,$HOME/x.svs\ns2,c1,~/y.svs\n"))
    assert frame["path"].tolist() == [str(tmp_path / "$HOME/x.svs"), str(tmp_path / "~/y.svs")]


def test_duplicate_ids_name_the_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "slide_id,case_id,path\ns1,c1,a.svs\ns2,c1,b.svs\ns1,c2,c.svs\n")
    with pytest.raises(ManifestError, match=r"duplicate slide_id s1 in row\(s\) 2, 4"):
        read_manifest(path)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "slide_id,case_id,path,mpp\ns1,,a.svs,-1\ns2,c1,b.svs,abc\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    message = str(info.value)
    assert "manifest.csv" in message
    assert "empty case_id in row(s) 2" in message
    assert "mpp must be a positive number in row(s) 2, 3" in message


def test_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(write(tmp_path, "id,file\ns1,a.svs\n"))
    with pytest.raises(ManifestError, match="file not found"):
        read_manifest(tmp_path / "absent.csv")


def test_folder_manifest(tmp_path: Path) -> None:
    (tmp_path / "a.svs").write_bytes(b"x")
    (tmp_path / "b.tiff").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    frame = read_manifest(tmp_path)
    assert frame["slide_id"].tolist() == ["a", "b"]
    with pytest.raises(ManifestError, match="no slide files"):
        read_manifest(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder
