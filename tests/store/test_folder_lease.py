"""One writer per stage folder: the lease refuses a live holder, takes over a dead one, and two
real tile runs on one folder leave every tile once."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mixture_ray.errors import FolderBusyError
from mixture_ray.locations import Location
from mixture_ray.store.folder import StageFolder, committed_files
from mixture_ray.store.folder_lease import LEASE, FolderLease, Holder
from tests.tile.test_faults import make_cohort

pytestmark = pytest.mark.safety


def foreign_lease(folder: Path, *, host: str = "gpu-node-7", pid: int = 4242, age_s: float = 0.0) -> Holder:
    holder = Holder("someone-else", "tile", host, pid, "raysubmit_123", time.time() - age_s - 10,
                    time.time() - age_s)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEASE).write_text(holder.to_json())
    return holder


def test_a_live_holder_is_named_and_the_folder_left_alone(tmp_path: Path) -> None:
    foreign_lease(tmp_path / "tiles")
    (tmp_path / "tiles" / "_settings.json").write_text('{"tile_size": 1}')
    folder = StageFolder(tmp_path / "tiles", stage="tile")
    with pytest.raises(FolderBusyError) as refused:
        folder.prepare({"tile_size": 224})
    message = str(refused.value)
    assert "gpu-node-7" in message and "pid 4242" in message and "raysubmit_123" in message
    assert "tile run" in message and "MIXTURE_RAY_LEASE_STALE_S" in message
    assert json.loads((tmp_path / "tiles" / "_settings.json").read_text()) == {"tile_size": 1}  # untouched


def test_a_silent_holder_is_taken_over_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    foreign_lease(tmp_path / "tiles", age_s=300)
    folder = StageFolder(tmp_path / "tiles", stage="embed")
    with caplog.at_level(logging.WARNING, logger="mixture_ray.store.folder_lease"):
        folder.prepare({})
    assert any("took over" in r.message and "gpu-node-7" in r.getMessage() for r in caplog.records)
    held = Holder.parse((tmp_path / "tiles" / LEASE).read_text())
    assert held is not None and held.pid == os.getpid() and held.stage == "embed"
    assert folder.finish(requested=[], failures=[], extra={})
    assert not (tmp_path / "tiles" / LEASE).exists()  # given back at finish


def test_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    foreign_lease(tmp_path / "tiles", host=socket.gethostname(), pid=int(dead.stdout))
    lease = FolderLease(Location.of(tmp_path / "tiles"), "tile")
    lease.acquire()  # fresh heartbeat, but its process is gone
    assert Holder.parse((tmp_path / "tiles" / LEASE).read_text()) == lease.holder
    lease.release()


def test_heartbeat_renews_and_a_lost_lease_stops_commits(tmp_path: Path) -> None:
    lease = FolderLease(Location.of(tmp_path), "tile", stale_after_s=1.2)  # a beat every 0.2 s
    lease.acquire()
    first = lease.holder.heartbeat
    time.sleep(0.7)
    renewed = Holder.parse((tmp_path / LEASE).read_text())
    assert renewed is not None and renewed.heartbeat > first and renewed.owner == lease.holder.owner
    lease.ensure_held()
    foreign_lease(tmp_path)  # another run took it over (this one was paused too long)
    time.sleep(0.7)
    with pytest.raises(FolderBusyError, match=r"lost its lease.*gpu-node-7"):
        lease.ensure_held()
    lease.release()
    assert Holder.parse((tmp_path / LEASE).read_text()).owner == "someone-else"  # type: ignore[union-attr]


def _contend(folder: str, start_at: float, results: multiprocessing.Queue,  # type: ignore[type-arg]
             everyone_tried: Any) -> None:
    lease = FolderLease(Location.of(folder), "tile")
    time.sleep(max(0.0, start_at - time.time()))
    try:
        lease.acquire()
        results.put("won")
        everyone_tried.wait(60)  # held until every contender has tried, however late it started
        lease.release()
    except FolderBusyError:
        results.put("refused")


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_racing_processes_get_one_lease(tmp_path: Path, stale: bool) -> None:
    if stale:
        foreign_lease(tmp_path, age_s=600)
    context = multiprocessing.get_context("spawn")
    results, everyone_tried = context.Queue(), context.Event()
    start_at = time.time() + 3.0
    workers = [context.Process(target=_contend, args=(str(tmp_path), start_at, results, everyone_tried))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=60) for _ in workers)
    everyone_tried.set()
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == ["refused", "refused", "refused", "won"]
    assert not list(tmp_path.glob("_LEASE.takeover-*"))


def test_two_tile_runs_on_one_folder_leave_every_tile_once(tmp_path: Path) -> None:
    manifest = make_cohort(tmp_path / "cohort", 3, 1024, 5)
    out = tmp_path / "tiles"
    args = [sys.executable, "-m", "mixture_ray", "tile", "--manifest", str(manifest), "--out-dir", str(out),
            "--tile-size", "64", "--max-tiles-per-slide", "40", "--pool.workers", "1"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (out / LEASE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    first_out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, first_out
    assert second.returncode != 0 and "is in use by a tile run" in second.stderr, second.stderr
    assert f"pid {first.pid}" in second.stderr
    table = pq.read_table(committed_files(out), columns=["slide_id", "x", "y", "magnification"])
    keys = set(zip(*(table[c].to_pylist() for c in table.column_names), strict=True))
    assert table.num_rows == len(keys) > 0  # no tile twice
    assert not (out / LEASE).exists()


def test_the_planned_item_count_is_kept_in_the_lease_for_status(tmp_path: Path) -> None:
    folder = StageFolder(tmp_path / "tiles", stage="tile", item_column="slide_id")
    folder.prepare({"tile_size": 1})
    holder = Holder.parse((tmp_path / "tiles" / LEASE).read_text())
    assert holder is not None and holder.planned_items is None
    folder.plan(12)
    holder = Holder.parse((tmp_path / "tiles" / LEASE).read_text())
    assert holder is not None and holder.planned_items == 12
    assert folder.lease is not None and folder.lease.holder.planned_items == 12  # heartbeats keep it
    folder.lease.release()
    old = json.loads(Holder("x", "tile", "h", 1, None, 0.0, 0.0).to_json())
    del old["planned_items"]  # a lease written before the field existed still parses
    parsed = Holder.parse(json.dumps(old))
    assert parsed is not None and parsed.planned_items is None
