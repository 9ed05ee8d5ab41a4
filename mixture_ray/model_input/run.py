"""Run a model stage (embed, classify) as one streaming execution, committing slide by slide."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ray

from mixture_ray.config import ActorPool, TileInput
from mixture_ray.errors import ConfigError
from mixture_ray.model_input.dataset import check_cpus, model_input
from mixture_ray.model_input.plan import RowFilter, TilePlan, plan_rows, stored_encoding
from mixture_ray.progress import ProgressLine
from mixture_ray.ray_runtime import cluster_resources, gpus_per_actor
from mixture_ray.report import Failure
from mixture_ray.store.slide_stream import SlideBatchRunner, stream_slides

if TYPE_CHECKING:
    from pathlib import Path

    from mixture_ray.locations import Uri
    from mixture_ray.store.folder import StageFolder


@dataclasses.dataclass(frozen=True)
class ModelStageRun:
    """What a model-stage run saw: slides requested, skipped as already committed, failures, devices."""

    requested: list[str]
    skipped: int
    failures: list[Failure]
    gpus_per_actor: float


def reads_slides(tiles: Path | Uri, source: TileInput) -> bool:
    """Whether pixels come from the slides: asked for, or ``auto`` with a coordinates-only store.

    Raises:
        ConfigError: ``input.pixels=store`` with a store that holds no pixels.
    """
    encoding = stored_encoding(tiles)
    if source.pixels == "store" and encoding == "none":
        raise ConfigError(f"input.pixels: store, but {tiles} holds coordinates only (encoding=none); "
                          "use input.pixels=slides (or auto) to read the tiles from the slides")
    if source.pixels == "auto":
        return encoding == "none"
    return source.pixels == "slides"


@dataclasses.dataclass(frozen=True)
class ModelStage:
    """One model stage's pipeline: its actor class, the columns it keeps, and its settings.

    Attributes:
        name: the stage (progress line).
        actor: the model actor class (receives numpy batches of ready tiles).
        actor_kwargs: its constructor arguments.
        keys: tile columns passed through to the output.
        size: tile edge the model wants (0 = as stored).
        pool: the model actor pool.
        source: the ``input`` settings.
    """

    name: str
    actor: type
    actor_kwargs: Mapping[str, Any]
    keys: Sequence[str]
    size: int
    pool: ActorPool
    source: TileInput

    def dataset(self, plan: TilePlan, rule: RowFilter, gpus: float) -> ray.data.Dataset:
        """Read -> decode (or read from slides) on CPUs -> model actors that write each slide's rows."""
        ready = model_input(plan, rule, self.source, keys=self.keys, size=self.size,
                            batch_size=self.pool.batch_size)
        return ready.map_batches(
            SlideBatchRunner,
            fn_constructor_kwargs={"inner": self.actor, "inner_kwargs": dict(self.actor_kwargs)},
            batch_size=self.pool.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.pool.workers),
            num_cpus=self.pool.actor_cpus,
            num_gpus=gpus,
        )

    def run(self, store: StageFolder, tiles: Path | Uri, *, magnification: float | None,
            max_background: float | None = None) -> ModelStageRun:
        """Process every pending slide of ``tiles`` into ``store`` (prepared), one commit per slide.

        Args:
            store: the prepared output folder.
            tiles: the complete tile store.
            magnification: only tiles of this magnification (None = all).
            max_background: only tiles with at most this background fraction (None = all).

        Returns:
            The slides requested and skipped, the failures, and the GPUs each model actor had.
        """
        rule = RowFilter(magnification, max_background, from_slides=reads_slides(tiles, self.source))
        plan = plan_rows(tiles, rule, done=store.committed_items())
        if not plan.requested:
            raise ConfigError(
                f"tiles: no tile of {tiles} matches magnification={magnification}, "
                f"max_background={max_background}; check the magnification (a tile store's "
                "_settings.json lists its magnifications)")
        store.plan(len(plan.requested))
        gpus = gpus_per_actor(self.pool.gpus)
        failures: list[Failure] = []
        if plan.expected:
            cpus = cluster_resources().get("CPU", 0.0)
            check_cpus(self.pool.workers, self.pool.actor_cpus, self.source, cpus)
            staging = store.new_staging()
            progress = ProgressLine(self.name, total_items=len(plan.expected),
                                    total_rows=sum(plan.expected.values()))
            failures = stream_slides(self.dataset(plan, rule, gpus), store=store, staging=staging,
                                     sources=plan.sources, progress=progress, expected=plan.expected,
                                     part_rows=self.pool.part_rows)
        return ModelStageRun(plan.requested, plan.skipped, failures, gpus)
