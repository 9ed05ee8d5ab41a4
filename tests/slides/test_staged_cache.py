"""The node-local slide cache (mixture_ray.slides.staged) shared by several processes of one node.

Slides here are local files: ``staged_slide`` reads any ``Location``, so a local path goes through
the same lock, copy and trim as an object-store URI, without a server. Processes are forked, so a
copy function patched in this process (to count copies) is the one the children run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import types
import uuid
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import pytest

from mixture_ray.errors import SlideError
from mixture_ray.locations import Location
from mixture_ray.slides import staged

FORK = mp.get_context("fork")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(staged.CACHE_ENV, str(folder))
    monkeypatch.delenv(staged.LIMIT_ENV, raising=False)
    return folder


def _slide(folder: Path, name: str, size: int = 100) -> str:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return str(path)


def _cached(folder: Path) -> list[str]:
    """The slides in the cache, by their source name (cache files are ``<digest>-<name>``)."""
    return sorted(p.name.split("-", 1)[1] for p in folder.iterdir() if not p.name.startswith("."))


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.part"))


def _stage_together(uri: str, barrier: Barrier, results: Queue[str]) -> None:
    barrier.wait(30)
    results.put(str(staged.staged_slide(uri)))


def _stage_stalled(uri: str, started: Event) -> None:
    """Stage ``uri`` with a copy that writes part of the slide, then stalls (until killed)."""
    def copy(source: Location, target: Path) -> None:
        target.write_bytes(b"partial")
        started.set()
        time.sleep(120)

    staged._copy_object = copy
    staged.staged_slide(uri)


def _disk(total: int, free: int) -> Callable[[object], types.SimpleNamespace]:
    return lambda _path: types.SimpleNamespace(total=total, used=total - free, free=free)


def test_processes_staging_one_slide_at_once_copy_it_once(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = _slide(tmp_path, "shared.svs", 1 << 20)
    record = tmp_path / "copies.txt"
    original = staged._copy_object

    def slow_copy(source: Location, target: Path) -> None:
        with record.open("a") as out:
            out.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # every process has found no cached copy before this one is done
        original(source, target)

    monkeypatch.setattr(staged, "_copy_object", slow_copy)
    barrier, results = FORK.Barrier(3), FORK.Queue()
    procs = [FORK.Process(target=_stage_together, args=(uri, barrier, results)) for _ in range(3)]
    for proc in procs:
        proc.start()
    try:
        paths = [results.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert len(record.read_text().splitlines()) == 1  # one copy on the node, not one per process
    assert len(set(paths)) == 1
    assert Path(paths[0]).read_bytes() == Path(uri).read_bytes()
    assert _cached(cache) == ["shared.svs"] and _parts(cache) == []
    # A later call in this process finds the copy: no new copy.
    assert staged.staged_slide(uri) == Path(paths[0])
    assert len(record.read_text().splitlines()) == 1


def test_trim_removes_killed_copies_and_keeps_live_and_recent_ones(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(staged.LIMIT_ENV, "1")
    dead_uri, live_uri = _slide(tmp_path, "dead.svs"), _slide(tmp_path, "live.svs")
    other_uri = _slide(tmp_path, "other.svs")
    dead_started, live_started = FORK.Event(), FORK.Event()
    dead = FORK.Process(target=_stage_stalled, args=(dead_uri, dead_started))
    live = FORK.Process(target=_stage_stalled, args=(live_uri, live_started))
    dead.start()
    live.start()
    try:
        assert dead_started.wait(30) and live_started.wait(30)
        parts = {p.name.split("-", 1)[1].split(".svs")[0]: p for p in _parts(cache)}
        assert sorted(parts) == ["dead", "live"]
        dead_lock = cache / (parts["dead"].name.rsplit(".", 2)[0] + ".lock")
        assert dead_lock.is_file() and staged._lock(dead_lock, wait=False) is None  # held
        dead.kill()  # SIGKILL mid-copy: the .part stays, the kernel releases the lock
        dead.join(30)
        old = time.time() - staged.STALE_PART_SECONDS - 60
        for part in parts.values():
            os.utime(part, (old, old))
        recent = cache / f".0123-recent.svs.{uuid.uuid4().hex}.part"  # unlocked but young
        recent.write_bytes(b"partial")

        staged.staged_slide(other_uri)  # copies, then trims the cache

        assert not parts["dead"].exists()
        assert not dead_lock.exists()  # the dead slide is not cached: its free lock file goes too
        assert parts["live"].exists()  # as old, but its copying process holds the lock
        assert recent.exists()
        assert _cached(cache) == ["other.svs"]
        # The killed copy left no lock behind: its slide stages now.
        assert staged.staged_slide(dead_uri).read_bytes() == Path(dead_uri).read_bytes()
    finally:
        for proc in (dead, live):
            proc.kill()
            proc.join(30)


def test_default_cap_follows_free_disk_and_the_setting_overrides_it(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = staged.cache_folder()
    # held + free - 10% of the disk, at most half the disk, never below 0
    monkeypatch.setattr(staged.shutil, "disk_usage", _disk(total=10_000, free=2_000))
    assert staged._limit_bytes(folder, held=300) == 300 + 2_000 - 1_000
    monkeypatch.setattr(staged.shutil, "disk_usage", _disk(total=1_000, free=900))
    assert staged._limit_bytes(folder, held=300) == 500
    monkeypatch.setattr(staged.shutil, "disk_usage", _disk(total=10_000, free=100))
    assert staged._limit_bytes(folder, held=300) == 0
    monkeypatch.setenv(staged.LIMIT_ENV, "2.5")
    assert staged._limit_bytes(folder, held=300) == int(2.5 * (1 << 30))

    # Staging: a 400-byte disk caps the cache at 200 bytes (two 100-byte slides) unless set.
    monkeypatch.setattr(staged.shutil, "disk_usage", _disk(total=400, free=400))
    monkeypatch.setenv(staged.LIMIT_ENV, "1")
    uris = [_slide(tmp_path, f"s{i}.svs") for i in range(4)]
    for i, uri in enumerate(uris[:3]):
        local = staged.staged_slide(uri)
        os.utime(local, (1_000_000 + i, 1_000_000 + i))  # used in this order
    assert _cached(cache) == ["s0.svs", "s1.svs", "s2.svs"]  # 1 GiB set: nothing removed
    monkeypatch.delenv(staged.LIMIT_ENV)
    staged.staged_slide(uris[3])
    assert _cached(cache) == ["s2.svs", "s3.svs"]  # the least recently used went
    locks = sorted(p.name.split("-", 1)[1] for p in cache.glob(".*.lock") if p.name != ".evict.lock")
    assert locks == ["s2.svs.lock", "s3.svs.lock"]  # the evicted slides' free lock files went too

    # A disk with less free space than its reserve keeps only the slide just staged.
    monkeypatch.setattr(staged.shutil, "disk_usage", _disk(total=10_000, free=100))
    staged.staged_slide(uris[0])
    assert _cached(cache) == ["s0.svs"]


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "inf"])
def test_bad_cap_setting_names_the_variable(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    uri = _slide(tmp_path, "slide.svs")
    monkeypatch.setenv(staged.LIMIT_ENV, value)
    with pytest.raises(SlideError, match=staged.LIMIT_ENV) as caught:
        staged.staged_slide(uri)
    assert repr(value) in str(caught.value)
    assert not cache.exists() or _cached(cache) == []  # refused before any copy
