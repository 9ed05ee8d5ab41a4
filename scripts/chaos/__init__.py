"""The chaos run: the chain tile -> embed -> cluster -> classify -> maps -> cases on a simulated
multi-node Ray cluster, once clean and once under seeded random faults, with every output compared.

Shared by ``scripts/chaos_run.py`` (the full run, ``--faults 20``) and ``tests/pipeline/test_chaos.py``
(a small one). Modules: ``plan`` (sizes, fault kinds, the seeded draw), ``cluster`` (the simulated
cluster), ``chain`` (the stages run and rerun under faults), ``compare`` (outputs, clean vs chaos),
``outcome`` (the whole run, its table and verdict). Nothing here is part of the package: it drives
the real CLI from outside.

- **The cluster** (:class:`SimCluster`): ``ray.cluster_utils.Cluster`` on this machine, a head with
  no CPU (where the drivers connect) and worker nodes. Every node's raylet, so every Ray worker,
  gets ``MIXTURE_RAY_FAULTS`` (the fault folder) in its environment.
- **The chain**: each stage runs as its own driver, ``python -m mixture_ray <stage> --config
  <stage>.yaml`` with ``RAY_ADDRESS`` set to the cluster, as ``ray job submit`` would run it. A
  stage is done when its command exits 0 and its folder has ``_SUCCESS``; otherwise the same
  command is run again, as a user would (the stages resume from their committed slides).
- **The faults** (:func:`plan_faults`, seeded), of five kinds:

  - *worker* / *actor*: a token in the fault folder that the first process reaching a point
    claims and dies at (``mixture_ray.faults.crash_once``: ``tile.pixels``, ``tile.coordinates``,
    ``embed.batch``, ``classify.batch``), or a busy Ray worker or actor process of the stage
    killed with SIGKILL from outside (a Ray Data ``MapWorker``, a maps task, a cases task);
  - *driver*: the driver exits right after a commit (``<stage>.driver-after-commit``), or is
    killed with SIGKILL part-way through the stage (for a stage with a folder lease, once it
    holds the lease); the rerun must take the dead driver's lease over and resume;
  - *write*: one write raises ``OSError`` (``fail_once``: ``write._COMMITTED.json``,
    ``write._SUCCESS``, ``write._settings.json``, ``write._index.json``, ``write.legend.json``;
    EIO or ENOSPC, drawn);
  - *node*: a worker node removed (``Cluster.remove_node``, not gracefully) and a fresh one
    added, between stages or while the stage's work runs on it.

  A fault is *injected* when its token was claimed, its process killed or its node removed; it
  is *survived* when its stage then completed (reruns allowed) and every output of that stage is
  identical to the clean run's.
- **The comparison** (:func:`snapshot`, :func:`compare`): committed rows of the tile, embedding
  and prediction stores sorted by tile key; each clustering's assignments (sorted), centroids,
  scaler and metrics; every map's pixels, the legend and the agreement table; every cases
  table. Wall times, node ids and the run's own folder name are left out. Values are compared
  exactly; floating-point values that differ in the last bits (within ``rtol`` and ``atol``,
  1e-5) are reported as *close* with the largest difference, anything else as *different*.
"""

from __future__ import annotations

from .cluster import SimCluster
from .outcome import ChaosResult, chaos_run, describe, fault_table
from .plan import FAMILIES, FOLDERS, FULL, SMALL, STAGES, STORES, Fault, Size, plan_faults

__all__ = ["FAMILIES", "FOLDERS", "FULL", "SMALL", "STAGES", "STORES", "ChaosResult", "Fault", "SimCluster",
           "Size", "chaos_run", "describe", "fault_table", "plan_faults"]
