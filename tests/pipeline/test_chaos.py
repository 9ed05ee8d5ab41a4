"""The chaos run, small: tile -> embed -> cluster -> classify -> maps -> cases on a simulated 3-node
cluster under six seeded faults (one of each family: a killed tile worker, a killed model actor, a
driver that dies after a commit, a driver killed with SIGKILL, a failed write, a worker node replaced),
against a clean run of the same chain on the same cluster.

The machinery is ``scripts/chaos.py``; the full run (20 faults) is ``python scripts/chaos_run.py``
(docs/chaos.md). One simulated cluster serves the module; the test process starts its nodes but
joins none of them (each stage is its own driver process), so no Ray session of this process is
touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.chaos import (
    FAMILIES,
    FOLDERS,
    SMALL,
    STAGES,
    STORES,
    ChaosResult,
    SimCluster,
    chaos_run,
    describe,
    plan_faults,
)

pytestmark = [pytest.mark.safety, pytest.mark.multinode, pytest.mark.timeout(420)]

SEED, FAULTS = 0, 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    """A head with no CPU and two 2-CPU worker nodes whose workers see the module's fault folder."""
    with SimCluster(tmp_path_factory.mktemp("chaos-faults")) as sim:
        yield sim


@pytest.fixture(scope="module")
def result(cluster: SimCluster, tmp_path_factory: pytest.TempPathFactory) -> ChaosResult:
    """The clean run and the chaos run (seed 0, six faults), compared."""
    return chaos_run(tmp_path_factory.mktemp("chaos"), cluster, seed=SEED, faults=FAULTS, size=SMALL)


def test_the_plan_is_seeded_and_takes_one_fault_of_each_family_first() -> None:
    full = plan_faults(0, 20)
    assert [f.row() for f in full] == [f.row() for f in plan_faults(0, 20)]
    assert [f.row() for f in full] != [f.row() for f in plan_faults(1, 20)]
    assert {f.family for f in full} == set(FAMILIES)
    small = plan_faults(SEED, FAULTS)
    assert sorted(f.family for f in small) == sorted(FAMILIES[:FAULTS])
    assert {f.kind for f in small} == {"worker", "actor", "driver", "write", "node"}
    with pytest.raises(ValueError, match="faults: give 1 to"):
        plan_faults(0, 1000)


def test_every_fault_is_injected_and_survived(result: ChaosResult, cluster: SimCluster) -> None:
    assert result.chain_complete, describe(result)
    for fault in result.faults:
        assert fault.injected and fault.survived, describe(result)
        if fault.mechanism in ("crash_once", "fail_once"):  # the token was renamed by the process it hit
            claimed = Path(fault.claimed)
            assert claimed.name.startswith(f"{fault.point}.claimed-") and claimed.exists(), fault
    assert not [p.name for p in cluster.fault_dir.iterdir() if p.is_file()]  # no token left for a later run
    assert sum(len(run.attempts) for run in result.chaos) > len(STAGES)  # some stage needed a rerun


def test_outputs_are_identical_to_the_clean_run(result: ChaosResult) -> None:
    assert {c.stage for c in result.comparisons} == set(STAGES), describe(result)
    assert result.identical, describe(result)
    assert result.ok, describe(result)


def test_no_lease_and_no_staging_of_a_store_is_left(result: ChaosResult) -> None:
    """Leases are given back (or taken over and given back); a rerun removes a killed run's staging."""
    left = [Path(p).name for p in result.leftovers]
    assert not [name for name in left if name.startswith("_LEASE")], result.leftovers
    staging = tuple(f".{FOLDERS[stage]}.tmp-" for stage in STORES)
    assert not [name for name in left if name.startswith(staging)], result.leftovers
