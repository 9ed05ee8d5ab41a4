"""The chaos run from end to end, and its result: the fault table and the verdict."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from .chain import Chain, StageRun, write_inputs
from .compare import Comparison, _finite, compare, leftovers, snapshot
from .plan import ATOL, DRIVER_KILL, LEASED, RTOL, STAGES, Fault, Size, plan_faults

if TYPE_CHECKING:
    from pathlib import Path

    from .cluster import SimCluster


@dataclasses.dataclass
class ChaosResult:
    """A chaos run: its plan and faults, both runs' attempts, the comparison and the leftovers."""

    seed: int
    size: Size
    faults: list[Fault]
    clean: list[StageRun]
    chaos: list[StageRun]
    comparisons: list[Comparison]
    leftovers: list[str]
    clean_seconds: float
    chaos_seconds: float

    @property
    def chain_complete(self) -> bool:
        """Every stage of the chaos run completed."""
        return len(self.chaos) == len(STAGES) and all(r.complete for r in self.chaos)

    @property
    def identical(self) -> bool:
        """Every output item identical to the clean run's (floats within rtol/atol)."""
        return bool(self.comparisons) and all(c.status in ("identical", "close") for c in self.comparisons)

    @property
    def ok(self) -> bool:
        """Complete, identical, and every fault injected and survived."""
        return self.chain_complete and self.identical and all(f.injected and f.survived for f in self.faults)

    def to_json(self) -> dict[str, Any]:
        """The JSON record of the run."""
        def stages(runs: list[StageRun]) -> dict[str, Any]:
            return {r.stage: {"complete": r.complete, "seconds": round(r.seconds, 2),
                              "attempts": [a.row() for a in r.attempts]} for r in runs}

        close = [c for c in self.comparisons if c.status == "close"]
        return {
            "name": "chaos_run", "seed": self.seed, "size": dataclasses.asdict(self.size),
            "ok": self.ok, "faults_planned": len(self.faults),
            "faults_injected": sum(f.injected for f in self.faults),
            "faults_survived": sum(f.survived for f in self.faults),
            "clean_seconds": round(self.clean_seconds, 1), "chaos_seconds": round(self.chaos_seconds, 1),
            "chaos_attempts": sum(len(r.attempts) for r in self.chaos),
            "outputs": {"items": len(self.comparisons),
                        "identical": sum(c.status == "identical" for c in self.comparisons),
                        "close": len(close),
                        "max_abs_diff_of_close": max((c.max_abs_diff for c in close), default=0.0),
                        "rtol": RTOL, "atol": ATOL,
                        "not_identical": [{**dataclasses.asdict(c), "max_abs_diff": _finite(c.max_abs_diff)}
                                          for c in self.comparisons if c.status != "identical"]},
            "faults": [f.row() for f in self.faults],
            "leftovers": self.leftovers,
            "clean": stages(self.clean), "chaos": stages(self.chaos),
        }


def chaos_run(work: Path, cluster: SimCluster, *, seed: int, faults: int, size: Size,
              log: Any = None) -> ChaosResult:
    """Inputs, a clean run, a chaos run with ``faults`` seeded faults, and the comparison, under ``work``.

    Args:
        work: an empty folder (inputs in ``inputs/``, the runs in ``clean/`` and ``chaos/``).
        cluster: the started cluster (its fault folder must be empty).
        seed: seeds the fault plan and which node or process is hit.
        faults: how many faults to inject.
        size: the cohort and stage settings.
        log: called with a line of progress (e.g. ``print``); None: quiet.

    Returns:
        The result; ``ok`` says whether the outputs are identical and every fault was survived.
    """
    say = log or (lambda _line: None)
    plan = plan_faults(seed, faults)
    inputs = write_inputs(work / "inputs", size)
    start = time.perf_counter()
    clean_runs = Chain(cluster, inputs, work / "clean", size).run_clean()
    clean_seconds = time.perf_counter() - start
    say(f"clean run: {clean_seconds:.1f} s ({', '.join(f'{r.stage} {r.seconds:.1f}' for r in clean_runs)})")
    start = time.perf_counter()
    chaos_runs = Chain(cluster, inputs, work / "chaos", size).run_chaos(
        plan, {r.stage: r.seconds for r in clean_runs}, seed)
    chaos_seconds = time.perf_counter() - start
    say(f"chaos run: {chaos_seconds:.1f} s, {sum(len(r.attempts) for r in chaos_runs)} stage attempts")
    complete = len(chaos_runs) == len(STAGES) and all(r.complete for r in chaos_runs)
    comparisons = compare(snapshot(work / "clean"), snapshot(work / "chaos")) if complete else []
    done = {r.stage for r in chaos_runs if r.complete}
    for fault in plan:
        same = all(c.status in ("identical", "close") for c in comparisons if c.stage == fault.stage)
        fault.survived = fault.injected and fault.stage in done and bool(comparisons) and same
    return ChaosResult(seed, size, plan, clean_runs, chaos_runs, comparisons, leftovers(work / "chaos"),
                       clean_seconds, chaos_seconds)


def fault_table(faults: list[Fault]) -> str:
    """The faults as a fixed-width table: kind, stage, point, how, attempt, injected, survived, detail."""
    header = ("#", "kind", "stage", "point", "how", "attempt", "injected", "survived", "detail")
    rows = [header]
    for number, f in enumerate(faults, start=1):
        how = f"{f.mechanism} {f.errno}".strip()
        if f.family == DRIVER_KILL and f.stage in LEASED:
            how = f"SIGKILL at {f.at:.2f} x clean"
        rows.append((str(number), f.kind, f.stage, f.point, how, "-" if f.attempt is None else str(f.attempt),
                     "yes" if f.injected else "NO", "yes" if f.survived else "NO", f.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
                     for r in rows)


def describe(result: ChaosResult) -> str:
    """The fault table, each stage's attempts, the comparison and the verdict, for a console."""
    lines = [fault_table(result.faults), ""]
    for run in result.chaos:
        codes = ", ".join("timeout" if a.rc is None else str(a.rc) for a in run.attempts)
        state = "" if run.complete else "; NEVER COMPLETED"
        lines.append(f"{run.stage}: {len(run.attempts)} attempt(s), exit status {codes}, "
                     f"{run.seconds:.1f} s{state}")
    compared = result.comparisons
    same = sum(c.status == "identical" for c in compared)
    close = [c for c in compared if c.status == "close"]
    largest = max((c.max_abs_diff for c in close), default=0.0)
    lines.append(f"outputs: {len(compared)} items compared: {same} bit-identical, {len(close)} equal within "
                 f"rtol = atol = {RTOL:g} (largest difference {largest:.3g}), "
                 f"{len(compared) - same - len(close)} different")
    lines += [f"  {c.status}: {c.item}: {c.detail}" for c in compared if c.status != "identical"]
    lines.append(f"left behind in the chaos run's folders: {', '.join(result.leftovers) or 'nothing'}")
    injected = sum(f.injected for f in result.faults)
    survived = sum(f.survived for f in result.faults)
    lines.append(f"seed {result.seed}: {len(result.faults)} faults planned, {injected} injected, {survived} "
                 f"survived; clean run {result.clean_seconds:.1f} s, chaos run {result.chaos_seconds:.1f} s: "
                 f"{'OK' if result.ok else 'FAILED'}")
    return "\n".join(lines)
