"""`mixture-ray pipeline --file jobs/pipeline.yaml`: several stages in order from one YAML file.

The file lists the stages to run, each a verb of :data:`mixture_ray.stages.STAGES` with its
config keys inline and/or in a YAML file of its own::

    stages:
      - stage: synth
        config: {out_dir: runs/cohort, n_cases: 4}
      - stage: tile
        config_file: tile.yaml          # relative to this file's folder
        config: {out_dir: runs/tiles}   # inline keys win over the file's

Paths: ``config_file`` is resolved against the folder of the pipeline file; every path *inside*
a stage's config (inline or in its ``config_file``) is, as for ``mixture-ray <stage> --config``,
relative to the working directory of the command and made absolute when the config is built
(:mod:`mixture_ray.paths`). Under ``ray job submit --working-dir .`` that is the uploaded folder, so
data and outputs of a multi-node job belong on shared storage, given as absolute paths.

Every stage's config is built and validated before the first stage runs, so a typo in the last
stage fails at once, naming the stage number, the verb and the key. The stages then run in order;
the job stops at the first stage that raises (the CLI exits 2) or whose report is not complete
(exit 3). ``from_stage`` resumes a job at a given stage; each stage also resumes its own work.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.config import load_config, read_yaml
from mixture_ray.errors import ConfigError, MixtureRayError
from mixture_ray.paths import resolve_recorded
from mixture_ray.report import Failure, Report
from mixture_ray.stages import BY_NAME, StageSpec

if TYPE_CHECKING:
    from mixture_ray.pipeline.config import PipelineConfig

#: Verbs that cannot be a step of a pipeline (they are pipelines themselves).
NOT_A_STEP = ("demo", "pipeline")

_ENTRY_KEYS = ("stage", "config", "config_file")


@dataclasses.dataclass(frozen=True)
class Step:
    """One stage of a pipeline with its validated config."""

    number: int
    spec: StageSpec
    config: Any

    @property
    def name(self) -> str:
        """``stage <number> (<verb>)``, the way messages name the step."""
        return f"stage {self.number} ({self.spec.name})"


@dataclasses.dataclass(frozen=True)
class PipelineReport(Report):
    """What a pipeline job ran, and where it stopped."""

    file: Path
    ran: tuple[str, ...]
    total: int
    seconds: float
    complete: bool = True
    failures: tuple[Failure, ...] = ()
    stopped_at: str = ""
    out_dir: Path | None = None

    def summary(self) -> str:
        """One line: the stages run and, when the job stopped early, where."""
        head = f"[pipeline] {self.file}: {len(self.ran)} of {self.total} stages run in {self.seconds:.1f}s"
        if self.complete:
            return f"{head} ({', '.join(self.ran)})"
        return f"{head}; stopped at {self.stopped_at}, which left {len(self.failures)} items failed"


def load_pipeline(path: Path) -> list[Step]:
    """Read a pipeline file and build and validate every stage's config (nothing runs).

    Args:
        path: the pipeline YAML file (``stages:`` list of ``{stage, config, config_file}``).

    Returns:
        The steps in file order, numbered from 1.

    Raises:
        ConfigError: the file, an entry or a stage's config is invalid; the message names the file,
            the stage number, the verb and the key.
    """
    loaded = read_yaml(Path(path), "pipeline file")
    entries = loaded.get("stages") if isinstance(loaded, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"pipeline file {path}: expected `stages:` with a list of {{stage, config}} items")
    return [_step(path, number, entry) for number, entry in enumerate(entries, start=1)]


def _step(path: Path, number: int, entry: object) -> Step:
    where = f"pipeline file {path}: stage {number}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with `stage:` and `config:` (got {entry!r})")
    verb = entry.get("stage")
    unknown = sorted(set(entry) - set(_ENTRY_KEYS))
    if unknown:
        raise ConfigError(f"{where} ({verb}): unknown entry key(s) {', '.join(map(str, unknown))}; "
                          f"known: {', '.join(_ENTRY_KEYS)}")
    verbs = [name for name in BY_NAME if name not in NOT_A_STEP]
    if verb not in verbs:
        hint = ""
        if verb == "explain":
            hint = "; explain is now `explain fit`, `explain apply` or `explain analyse`"
        raise ConfigError(f"{where}: stage: {verb!r} is not one of {', '.join(verbs)}{hint}")
    where = f"{where} ({verb})"
    inline = entry.get("config") or {}
    if not isinstance(inline, dict):
        raise ConfigError(f"{where}: config: expected a mapping of key: value (got {inline!r})")
    config_file = entry.get("config_file")
    if config_file is not None and (not isinstance(config_file, str) or not config_file):
        raise ConfigError(f"{where}: config_file: expected a file name (got {config_file!r})")
    spec = BY_NAME[verb]
    source = resolve_recorded(config_file, path) if config_file else None
    try:
        cfg: Any = load_config(spec.config(), source, inline)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return Step(number, spec, cfg)


def run(cfg: PipelineConfig) -> PipelineReport:
    """Validate every stage of ``cfg.file``, then run them in order from ``cfg.from_stage``.

    Prints one line as each stage starts and ends, and each stage's own summary. Ray's log lines of
    a stage go to ``<its out_dir>/_logs/ray.log`` unless the command was given ``--verbose``.

    Args:
        cfg: the pipeline file and the stage number to start at.

    Returns:
        The report: complete when every stage ran complete; otherwise the failures of the stage
        that stopped the job (its own failures table is under its ``out_dir``).

    Raises:
        MixtureRayError: a stage's config is invalid (before anything runs) or a stage failed; the
            CLI prints the message and exits 2.
    """
    steps = load_pipeline(cfg.file)
    start, ran = time.perf_counter(), []
    for step in steps[cfg.from_stage - 1:]:
        label = f"[pipeline] stage {step.number}/{len(steps)} {step.spec.name}"
        print(f"{label}: start", flush=True)
        began = time.perf_counter()
        _route_ray_logs(step.config)
        try:
            report = step.spec.runner()(step.config)
        except MixtureRayError:
            print(f"{label}: failed after {time.perf_counter() - began:.1f}s; fix it and resume with "
                  f"--from-stage {step.number}", file=sys.stderr, flush=True)
            raise
        print(report.summary())
        state = "done" if report.complete else f"{len(report.failures)} items failed"
        print(f"{label}: {state} in {time.perf_counter() - began:.1f}s", flush=True)
        ran.append(step.spec.name)
        if not report.complete:
            out_dir = getattr(report, "out_dir", None) or getattr(step.config, "out_dir", None)
            return PipelineReport(cfg.file, tuple(ran), len(steps), time.perf_counter() - start,
                                  complete=False, failures=tuple(report.failures), stopped_at=step.name,
                                  out_dir=out_dir)
    return PipelineReport(cfg.file, tuple(ran), len(steps), time.perf_counter() - start)


def _route_ray_logs(stage_cfg: Any) -> None:
    """Each stage's Ray log lines to its own ``out_dir/_logs/ray.log``, as the CLI does for one stage.

    ``--verbose`` (the CLI's routing of the pipeline command) is kept for every stage.
    """
    from mixture_ray import ray_runtime

    out_dir = getattr(stage_cfg, "out_dir", None)
    log_file = out_dir / "_logs" / "ray.log" if isinstance(out_dir, Path) else None
    ray_runtime.route_ray_logs(log_file, verbose=ray_runtime.ray_logs_verbose())
