"""One writer per stage folder: a lease with its holder's host, PID, job id and a heartbeat.

A run takes the lease (``_LEASE.json`` in the folder) before it touches anything there, renews it
every ``heartbeat_s`` from a daemon thread, checks it before each commit, and gives it back when it
finishes. A second run on a held folder is refused with :class:`FolderBusyError` naming the holder.

- **Local disk and NFS.** The lease is created with ``O_CREAT | O_EXCL`` (atomic on both). A lease
  whose heartbeat is older than ``stale_after_s``, or whose holder is a dead process on this host, is
  taken over: the contenders race to create ``_LEASE.takeover-<old owner>`` exclusively, the winner
  replaces the lease and logs the take-over; a loser starts again and finds the winner's lease.
- **Object store.** pyarrow writes no conditional PUT, so the fallback is *write, wait, read back*:
  a run that finds no live lease PUTs its own, waits ``settle_s`` and reads the lease again. S3 reads
  are strongly consistent after a write, so two runs that PUT within ``settle_s`` of each other both
  read the same last writer, and only that one goes on. Two runs that start within the same few
  milliseconds after a lease went stale are the remaining window; keep one job per folder there.
- A run in the same process on a folder its own earlier run left held (an exception before
  ``finish``, in a notebook) takes the lease over without waiting.

Heartbeats are wall-clock times: hosts that share a folder need clocks within ``stale_after_s``.
``MIXTURE_RAY_LEASE_STALE_S`` (default 120) sets ``stale_after_s``; the heartbeat is a sixth of it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from mixture_ray.env_settings import env_number
from mixture_ray.errors import FolderBusyError

if TYPE_CHECKING:
    from mixture_ray.locations import Location

LOG = logging.getLogger(__name__)
LEASE = "_LEASE.json"
STALE_ENV = "MIXTURE_RAY_LEASE_STALE_S"
DEFAULT_STALE_S = 120.0


def stale_after_from_env() -> float:
    """Seconds without a heartbeat after which a lease is taken over (``MIXTURE_RAY_LEASE_STALE_S``)."""
    value = env_number(STALE_ENV, minimum=1.0, meaning="seconds after which a silent lease is stale")
    return DEFAULT_STALE_S if value is None else value


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lease, as written in ``_LEASE.json``."""

    owner: str
    stage: str
    host: str
    pid: int
    job_id: str | None
    started: float
    heartbeat: float
    #: Items (slides) the run was asked for, once it knows (:meth:`FolderLease.plan`): status's ETA.
    planned_items: int | None = None

    @classmethod
    def me(cls, stage: str) -> Holder:
        """A new holder: this process, now."""
        now = time.time()
        return cls(uuid.uuid4().hex, stage, socket.gethostname(), os.getpid(),
                   os.environ.get("RAY_JOB_SUBMISSION_ID") or os.environ.get("SLURM_JOB_ID"), now, now)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder in a lease file's text; None for a torn or foreign file."""
        try:
            raw: dict[str, Any] = json.loads(text)
            planned = raw.get("planned_items")
            return cls(str(raw["owner"]), str(raw["stage"]), str(raw["host"]), int(raw["pid"]),
                       raw.get("job_id"), float(raw["started"]), float(raw["heartbeat"]),
                       None if planned is None else int(planned))
        except (ValueError, KeyError, TypeError):
            return None  # a torn or foreign file: treated as stale

    def to_json(self) -> str:
        """The lease file's text."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def describe(self) -> str:
        """Who, where and how recently alive, for messages."""
        job = f", job {self.job_id}" if self.job_id else ""
        age = max(0.0, time.time() - self.heartbeat)
        return (f"a {self.stage} run on host {self.host} (pid {self.pid}{job}), "
                f"started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.started))}, "
                f"last heartbeat {age:.0f} s ago")

    def is_stale(self, stale_after_s: float) -> bool:
        """True when the heartbeat stopped, or the holder is a dead (or this) process on this host."""
        if time.time() - self.heartbeat > stale_after_s:
            return True
        if self.host != socket.gethostname():
            return False
        if self.pid == os.getpid():
            return True  # this process's own earlier run, which never finished
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


class FolderLease:
    """The lease of one stage folder for one run (see the module's docstring)."""

    def __init__(self, where: Location, stage: str, *, stale_after_s: float | None = None,
                 settle_s: float = 1.0) -> None:
        self.where = where
        self.file = where / LEASE
        self.stale_after_s = stale_after_from_env() if stale_after_s is None else stale_after_s
        self.heartbeat_s = self.stale_after_s / 6
        self.settle_s = settle_s
        self.holder = Holder.me(stage)
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, or raise :class:`FolderBusyError` naming the live holder."""
        for _ in range(5):
            current = self._read()
            if current is not None and not current.is_stale(self.stale_after_s):
                raise FolderBusyError(
                    f"{self.where} is in use by {current.describe()}; wait for it to finish, or write to "
                    f"another folder. A holder that died is taken over once its heartbeat is "
                    f"{self.stale_after_s:.0f} s old ({STALE_ENV}), or at once from its own host")
            if self._claim(current):
                if current is not None:
                    LOG.warning("%s: took over the lease of %s (stale)", self.where, current.describe())
                self._start_heartbeat()
                return
        raise FolderBusyError(f"{self.where}: other runs keep taking its lease; run one job per folder")

    def ensure_held(self) -> None:
        """Raise before a commit when another run has taken the lease over."""
        if self.lost is not None:
            raise FolderBusyError(f"{self.where}: this run lost its lease ({self.lost}); it stops without "
                                  "committing more. Rerun once the other run has finished")

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still this run's."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        current = self._read()
        if current is not None and current.owner == self.holder.owner:
            self.file.delete()

    # ------------------------------------------------------------------ internals
    def _read(self) -> Holder | None:
        try:
            return Holder.parse(self.file.read_text())
        except (FileNotFoundError, OSError):
            return None

    def _claim(self, stale: Holder | None) -> bool:
        if not self.where.is_local:
            return self._claim_object_store()
        if stale is None and self.file.exists():
            stale = Holder("unreadable", "?", "?", 0, None, 0.0, 0.0)  # torn file: replace it
        if stale is not None:
            return self._take_over_local(stale)
        return self._create_local()

    def _create_local(self) -> bool:
        try:
            fd = os.open(self.file.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            out.write(self.holder.to_json())
            out.flush()
            os.fsync(out.fileno())
        return True

    def _take_over_local(self, stale: Holder) -> bool:
        gate = self.where / f"_LEASE.takeover-{stale.owner}"
        try:
            os.close(os.open(gate.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False  # another contender is taking it over
        try:
            current = self._read()
            if (current.owner if current else "unreadable") != stale.owner:
                return False
            self.file.delete()
            return self._create_local()
        finally:
            gate.delete()

    def _claim_object_store(self) -> bool:
        self.file.write_text(self.holder.to_json())
        time.sleep(self.settle_s)
        current = self._read()
        return current is not None and current.owner == self.holder.owner

    def plan(self, items: int) -> None:
        """Record how many items this run was asked for in the lease file (best effort)."""
        self.holder = dataclasses.replace(self.holder, planned_items=int(items))
        try:
            self.file.write_text(self.holder.to_json())
        except OSError as exc:  # only status's ETA needs it; the next heartbeat writes it again
            LOG.warning("%s: planned items not written to the lease (%s)", self.where, exc)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.where}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            current = self._read()
            if current is None or current.owner != self.holder.owner:
                self.lost = f"now held by {current.describe()}" if current else "the lease file was removed"
                LOG.error("%s: %s", self.where, self.lost)
                return
            self.holder = dataclasses.replace(self.holder, heartbeat=time.time())
            try:
                self.file.write_text(self.holder.to_json())
            except OSError as exc:  # a missed beat is survivable; the next one tries again
                LOG.warning("%s: lease heartbeat not written (%s)", self.where, exc)
