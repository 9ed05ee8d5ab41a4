"""A full disk fails slides cleanly, and a rerun with space finishes them: each tile once.

The store lives on a real small file system: a tmpfs mounted on a temporary folder (needs root and
``mount``; skipped, with the reason, where mounting is not permitted) and filled with a file until
about one part fits, so part writes hit ``ENOSPC`` mid-run. The run then reports those slides as
failed with a ``NoSpaceError`` naming the file; if even the folder's own markers no longer fit, it
stops with that error naming the folder's file instead. Either way only whole slides are committed.
A commit marker that hits ``ENOSPC`` is injected through the fault folder (``write._COMMITTED.json``
holding ``ENOSPC``), since a real disk cannot be made to fill exactly between a part and its marker.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from mixture_ray.errors import NoSpaceError
from mixture_ray.faults import ENV
from mixture_ray.locations import Location
from mixture_ray.store.folder import INCOMPLETE, SUCCESS, StageFolder, committed_locations, read_failures
from mixture_ray.store.store_index import read_index
from mixture_ray.tile.stage import run as run_tiling
from tests.tile.test_faults import assert_same_tiles, make_cohort, tile_cfg, tiles_of

pytestmark = pytest.mark.safety

#: Rows per part: about one slide's tiles, so a run writes several parts and slides span two.
PART_ROWS = 50
#: Free space left on the full file system: the folder's markers and one part (parts are 70-115 kB).
FREE_BYTES = 160 << 10


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cohort(tmp_path_factory.mktemp("cohort"), 4, 1024, 11)


@pytest.fixture(scope="module")
def clean(ray_session: None, cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("clean") / "tiles"
    assert run_tiling(tile_cfg(cohort, out, **{"pool.part_rows": PART_ROWS})).complete
    return tiles_of(out)


@contextlib.contextmanager
def small_file_system(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``where`` (skips when this machine does not allow it)."""
    where.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs a tmpfs mount: root and the mount command")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(mount: Path, leave: int) -> Path:
    """A file that takes all of ``mount``'s space but ``leave`` bytes."""
    stats = os.statvfs(mount)
    filler = mount / "filler"
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - leave))
    return filler


def assert_only_whole_slides(out: Path, clean: pd.DataFrame) -> dict[str, int]:
    """What the store shows as committed is whole slides, each with the rows of a clean run."""
    want = {str(s): int(n) for s, n in clean.groupby("slide_id").size().items()}
    committed = StageFolder(out, stage="tile").committed_items()
    assert all(committed[s] == want[s] for s in committed), (committed, want)
    index = read_index(Location.of(out), prefer_index=False)  # the markers themselves, not _index.json
    assert not index.partial(), index.partial()
    rows = sum(len(pd.read_parquet(f.path)) for f in committed_locations(out, require_complete=False))
    assert rows == sum(committed.values())  # no row of a failed slide in a committed part
    return committed


def leftovers(root: Path) -> list[Path]:
    """Hidden temporary files or folders of a write or a run (``.tmp`` in the name)."""
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def test_parts_that_hit_a_full_disk_fail_their_slides_and_a_rerun_with_space_finishes(
        cohort: Path, clean: pd.DataFrame, tmp_path: Path) -> None:
    slides = set(clean["slide_id"])
    with small_file_system(tmp_path / "disk", "8m") as disk:
        filler = fill(disk, FREE_BYTES)
        out = disk / "tiles"
        cfg = tile_cfg(cohort, out, **{"pool.part_rows": PART_ROWS})
        try:
            full = run_tiling(cfg)
        except NoSpaceError as exc:  # not even the folder's markers fitted: the run stops, naming the file
            assert "no space left on device writing" in str(exc) and str(out) in str(exc), exc
            failed = slides - set(StageFolder(out, stage="tile").committed_items())
        else:
            assert not full.complete and full.failures
            for failure in full.failures:
                assert "NoSpaceError: [Errno 28] no space left on device writing" in failure.error, failure
                assert str(disk) in failure.error, failure
            failed = {f.item_id for f in full.failures}
            assert (out / INCOMPLETE).exists() and set(read_failures(out)["item_id"]) == failed
        committed = assert_only_whole_slides(out, clean)
        assert failed and not failed & set(committed) and set(committed) | failed == slides
        assert not (out / SUCCESS).exists()

        filler.unlink()  # space again
        rerun = run_tiling(cfg)
        assert rerun.complete, rerun.failures
        assert rerun.slides_skipped == len(committed)
        assert_only_whole_slides(out, clean)
        assert_same_tiles(tiles_of(out), clean)  # every tile once, as in a clean run
        assert not leftovers(disk), leftovers(disk)


def test_a_commit_marker_that_hits_enospc_fails_its_slides_and_a_rerun_finishes(
        fault_dir: Path, cohort: Path, clean: pd.DataFrame, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "tiles"
    cfg = tile_cfg(cohort, out, **{"pool.part_rows": PART_ROWS})
    (fault_dir / "write._COMMITTED.json").write_text("ENOSPC")
    monkeypatch.setenv(ENV, str(fault_dir))  # the driver writes the markers
    full = run_tiling(cfg)
    assert list(fault_dir.glob("write._COMMITTED.json.claimed-*")), "the fault was never triggered"
    assert not full.complete and full.failures
    for failure in full.failures:
        assert failure.error.startswith("commit failed: NoSpaceError"), failure
        assert "no space left on device writing" in failure.error and "_COMMITTED.json" in failure.error
    failed = {f.item_id for f in full.failures}
    assert not failed & set(assert_only_whole_slides(out, clean))

    rerun = run_tiling(cfg)
    assert rerun.complete, rerun.failures
    assert_same_tiles(tiles_of(out), clean)
    assert_only_whole_slides(out, clean)
    assert not leftovers(tmp_path), leftovers(tmp_path)


def test_a_write_that_hits_enospc_names_the_file_and_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "store" / "_index.json"
    Location.of(target).write_text("old")
    (tmp_path / "write._index.json").write_text("ENOSPC")
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(NoSpaceError, match=r"no space left on device writing .*_index\.json") as raised:
        Location.of(target).write_text("new")
    assert raised.value.errno == errno.ENOSPC and isinstance(raised.value, OSError)
    assert target.read_text() == "old" and sorted(p.name for p in target.parent.iterdir()) == ["_index.json"]
    Location.of(target).write_text("new")  # the fault fires once; then the write goes through
    assert target.read_text() == "new"
