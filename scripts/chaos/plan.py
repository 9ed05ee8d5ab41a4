"""The chaos run's fault plan: the stages, the cohort sizes, the kinds of fault and a seeded draw of them."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: The chain, in order, and each stage's output folder under a run's root.
STAGES = ("tile", "embed", "cluster", "classify", "maps", "cases")
FOLDERS = {"tile": "tiles", "embed": "embeddings", "cluster": "clusters", "classify": "predictions",
           "maps": "maps", "cases": "cases"}
#: Stages whose folder holds a lease while a run writes it (``StageFolder.prepare``).
LEASED = ("tile", "embed", "classify", "maps", "cases")
#: Stages that stream slides into a committed Parquet store (part ledger, driver-after-commit).
STORES = ("tile", "embed", "classify")
#: Process titles of a stage's Ray work (``ray::<title>``) that SIGKILL and mid-stage node faults aim at.
WORK_TITLES = {"tile": ("MapWorker",), "embed": ("MapWorker",), "classify": ("MapWorker",),
               "maps": ("_safe_draw",), "cases": ("count_file",)}
#: The pipeline verb's line for a finished stage (its name and seconds).
PIPELINE_DONE = re.compile(r"\[pipeline\] stage \d+/\d+ (\S+): done in ([\d.]+)s")
#: The seeded classifier's classes (the finding classifier of a real run).
CLASSES = ("normal_alveolar", "dense_fibrosis", "fibroblastic_foci", "other")
#: Columns that order rows: tile keys, then case ids (cases tables).
KEY_COLUMNS = ("slide_id", "case_id", "magnification", "x", "y")
#: Record fields that differ from run to run by nature (wall time, where the work ran).
VOLATILE = frozenset({"seconds", "nodes", "devices"})
RTOL = ATOL = 1e-5

# Fault families: the plan takes one of each (as many as it has faults for), then draws the rest.
WORKER_TOKEN, ACTOR_TOKEN, DRIVER_CRASH = "worker-token", "actor-token", "driver-crash"
DRIVER_KILL, WRITE_FAIL, NODE_BETWEEN = "driver-kill", "write-fail", "node-between"
PROCESS_KILL, NODE_DURING = "process-kill", "node-during"
FAMILIES = (WORKER_TOKEN, ACTOR_TOKEN, DRIVER_CRASH, DRIVER_KILL, WRITE_FAIL, NODE_BETWEEN, PROCESS_KILL,
            NODE_DURING)
TOKEN_FAMILIES = (WORKER_TOKEN, ACTOR_TOKEN, DRIVER_CRASH, WRITE_FAIL)


@dataclasses.dataclass(frozen=True)
class Size:
    """How big a chaos run is: the cohort, the stages' settings and a stage attempt's time limit."""

    n_cases: int
    slide_px: int
    tile_size: int
    max_tiles: int
    part_rows: int
    batch_size: int
    ks: tuple[int, ...]
    thumbnail_px: int
    attempt_timeout_s: float
    workers: int = 2


#: The full run of scripts/chaos_run.py: 6 one-slide cases, 80 tiles each, parts of 60 rows. Several
#: ks give a killed cluster driver a moment between two clusterings.
FULL = Size(n_cases=6, slide_px=2048, tile_size=32, max_tiles=80, part_rows=60, batch_size=16, ks=(4, 6, 8),
            thumbnail_px=512, attempt_timeout_s=300.0)
#: The test's run: 3 one-slide cases, 48 tiles each, one actor per Ray Data pool (quicker to start).
SMALL = Size(n_cases=3, slide_px=1024, tile_size=32, max_tiles=48, part_rows=40, batch_size=16, ks=(2, 3),
             thumbnail_px=256, attempt_timeout_s=150.0, workers=1)


# ---------------------------------------------------------------------------------------------- faults
@dataclasses.dataclass
class Fault:
    """One planned fault and what became of it."""

    family: str
    kind: str
    stage: str
    point: str
    mechanism: str
    errno: str = ""
    at: float = 0.0
    injected: bool = False
    attempt: int | None = None
    survived: bool = False
    detail: str = ""
    claimed: str = ""

    def row(self) -> dict[str, Any]:
        """The fault as a JSON record."""
        return dataclasses.asdict(self)


def catalogue() -> list[Fault]:
    """Every fault the chain offers, in chain order (a stage's token points are unique)."""
    faults: list[Fault] = []
    for stage in STAGES:
        if stage == "tile":
            faults += [Fault(WORKER_TOKEN, "worker", stage, "tile.pixels", "crash_once"),
                       Fault(WORKER_TOKEN, "worker", stage, "tile.coordinates", "crash_once")]
        if stage in ("embed", "classify"):
            faults.append(Fault(ACTOR_TOKEN, "actor", stage, f"{stage}.batch", "crash_once"))
        if stage in STORES:
            faults += [Fault(DRIVER_CRASH, "driver", stage, f"{stage}.driver-after-commit", "crash_once"),
                       Fault(WRITE_FAIL, "write", stage, "write._COMMITTED.json", "fail_once"),
                       Fault(WRITE_FAIL, "write", stage, "write._index.json", "fail_once")]
        moment = "holding the lease" if stage in LEASED else "writing clusterings"
        faults += [Fault(DRIVER_KILL, "driver", stage, f"driver, {moment}", "SIGKILL") for _ in range(2)]
        faults.append(Fault(WRITE_FAIL, "write", stage, "write._SUCCESS", "fail_once"))
        if stage in LEASED:
            faults.append(Fault(WRITE_FAIL, "write", stage, "write._settings.json", "fail_once"))
        if stage == "maps":
            faults.append(Fault(WRITE_FAIL, "write", stage, "write.legend.json", "fail_once"))
        if stage != STAGES[0]:
            faults.append(Fault(NODE_BETWEEN, "node", stage, f"worker node, before {stage}", "remove_node"))
        if stage in WORK_TITLES:
            titles = "|".join(WORK_TITLES[stage])
            kind = "actor" if "MapWorker" in titles else "worker"
            faults += [Fault(PROCESS_KILL, kind, stage, f"busy ray::{titles}", "SIGKILL"),
                       Fault(NODE_DURING, "node", stage, f"worker node running ray::{titles}", "remove_node")]
    return faults


def plan_faults(seed: int, count: int) -> list[Fault]:
    """``count`` faults drawn with ``seed``: one of each family first (as far as count allows), then any.

    Args:
        seed: the seed of every draw (which faults, errno names, when a driver is killed).
        count: how many faults (at most the size of :func:`catalogue`).

    Returns:
        The faults in chain order.
    """
    rng = random.Random(seed)
    pool = catalogue()
    if not 1 <= count <= len(pool):
        raise ValueError(f"faults: give 1 to {len(pool)} (got {count})")
    chosen: list[Fault] = []
    for family in FAMILIES[:count]:
        pick = rng.choice([f for f in pool if f.family == family])
        chosen.append(pick)
        pool.remove(pick)
    chosen += rng.sample(pool, count - len(chosen))
    for fault in chosen:
        if fault.mechanism == "fail_once":
            fault.errno = rng.choice(("EIO", "ENOSPC"))
        if fault.family == DRIVER_KILL:
            fault.at = round(rng.uniform(0.3, 0.8), 2)
    chosen.sort(key=lambda f: (STAGES.index(f.stage), FAMILIES.index(f.family), f.point))
    return chosen
