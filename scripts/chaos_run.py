"""The chaos run: the chain tile -> embed -> cluster -> classify -> maps -> cases under seeded random faults.

``python scripts/chaos_run.py --seed 0 --faults 20 --out benchmarks/results/chaos_run.json [--work DIR]
[--small]`` starts a simulated cluster on this machine (``ray.cluster_utils.Cluster``: a head with no
CPU and two 2-CPU worker nodes), writes a synthetic cohort (6 one-slide cases of 2048 px; ``--small``:
3 of 1024 px) and a seeded random finding classifier, runs the chain once clean and once while
``--faults`` faults drawn with ``--seed`` strike it (killed Ray workers and actors, killed drivers,
failed writes, worker nodes removed and replaced: ``scripts/chaos/`` and ``docs/chaos.md``), and
compares every final output of the two runs.

Prints the table of faults (kind, stage, point, how, attempt, injected, survived), each stage's
attempts, the comparison and the verdict, and writes them as JSON. Exit status 0 when every fault
was injected and survived and every output is identical to the clean run's; 1 otherwise (the work
folder is then kept and named). About 5 to 7 minutes on 2 cores with 20 faults.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chaos

from benchmarks.hardware import hardware_info


def main(argv: list[str] | None = None) -> int:
    """Run the chaos run; the exit status (0: identical outputs and every fault survived)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the fault plan and of what each fault hits")
    parser.add_argument("--faults", type=int, default=20, help="faults to inject (one of each family first)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--work", type=Path, default=None,
                        help="an empty or new folder for the cohort and both runs (default: a temporary "
                             "folder, removed after a run that passed)")
    parser.add_argument("--small", action="store_true", help="the test's cohort (3 cases of 1024 px)")
    args = parser.parse_args(argv)
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        parser.error(f"--work: {args.work} is not empty; give a new or empty folder")
    work = args.work or Path(tempfile.mkdtemp(prefix="chaos-run-"))
    work.mkdir(parents=True, exist_ok=True)
    size = chaos.SMALL if args.small else chaos.FULL
    start = time.perf_counter()
    with chaos.SimCluster(work / "faults") as cluster:
        result = chaos.chaos_run(work, cluster, seed=args.seed, faults=args.faults, size=size,
                                 log=lambda line: print(line, flush=True))
    record = {
        **result.to_json(),
        "command": shlex.join(["python", "scripts/chaos_run.py", *(sys.argv[1:] if argv is None else argv)]),
        "cluster": {"head_cpus": 0, "worker_nodes": cluster.n_workers, "cpus_per_worker": cluster.cpus,
                    "object_store_mb_per_node": cluster.object_store_mb},
        "seconds_total": round(time.perf_counter() - start, 1),
        "hardware": hardware_info(),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print()
    print(chaos.describe(result))
    print(f"wrote {args.out}")
    if result.ok and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    elif not result.ok:
        print(f"kept {work} (stage logs in {work / 'chaos' / '_logs'})")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
