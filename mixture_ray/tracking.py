"""Experiment tracking in MLflow: one run per pretrain or finetune, with its settings, metrics and model.

Off unless a tracking URI is set: ``train.tracking_uri`` in the stage's config, else the
``MLFLOW_TRACKING_URI`` variable. ``local`` is a file store in ``<out_dir>/mlruns``; a folder path is a
file store there; any URI MLflow takes (``http://...`` for a tracking server, ``sqlite:///...``,
``databricks``) is passed on. MLflow 3 keeps its file store in maintenance mode, behind
``MLFLOW_ALLOW_FILE_STORE``, which is set here for a ``file:`` URI; a team that shares one tracking
server or wants MLflow's newest features points ``tracking_uri`` at it (or at ``sqlite:///...``,
which needs the full ``mlflow`` package).

The driver creates the run and logs the flattened config as parameters before training starts (a
tracking URI that does not work fails the stage then, naming the key); the rank-0 training worker
logs loss, learning rate, throughput and validation metrics per step, in batches
(:class:`MetricLog`); the driver ends the run with the checkpoint and model paths as parameters,
or marks it FAILED. The run id goes into the stage's ``_SUCCESS`` record (``run_id``) and into the
exported model file, and from there into the lineage of every stage made with it
(:mod:`mixture_ray.store.lineage`).

MLflow's own client is used rather than Ray Train's ``setup_mlflow``: the run must exist on the
driver, so that its id reaches the end record even when no worker logs, and the training loop
must log without Ray (``mlflow-skinny`` is a dependency; no server is needed for a file store).

Example:
    >>> run = start_run("local", out_dir=Path("runs"), experiment="mixture_ray", stage="pretrain",
    ...                 name="elex", params={"lr": "0.001"})
    >>> log = MetricLog(run)            # in the training worker of rank 0
    >>> log.log(1, loss=7.1, lr=0.001); log.close()
    >>> end_run(run, "FINISHED", params={"checkpoint": "runs/elex/checkpoint_000001"})
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixture_ray.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_URI, ALLOW_FILE_STORE = "MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE"
#: ``train.tracking_uri: local``: a file store in ``<out_dir>/mlruns``.
LOCAL = "local"
#: MLflow's limits: parameters per batch, metrics per batch, characters of a parameter's value.
PARAMS_PER_BATCH, METRICS_PER_BATCH, PARAM_CHARS = 100, 1000, 6000
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrackedRun:
    """Where one MLflow run lives; small and picklable, handed to the training workers."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    def record(self) -> dict[str, str]:
        """The fields an end record keeps under ``mlflow``."""
        return dataclasses.asdict(self)


def resolve_uri(setting: str | None, out_dir: Path) -> str | None:
    """The tracking URI in force: the setting, else ``MLFLOW_TRACKING_URI``, else None (no tracking)."""
    uri = setting or os.environ.get(ENV_URI) or None
    if uri is None:
        return None
    if uri == LOCAL:
        return (out_dir / "mlruns").resolve().as_uri()
    if ":" in uri and not Path(uri).exists():  # a URI: file:, http(s):, sqlite:, databricks...
        return uri
    return Path(uri).expanduser().resolve().as_uri()


def flat_params(config: Any) -> dict[str, str]:
    """A config dataclass as MLflow parameters: nested fields joined with dots, values as text."""
    raw = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    flat: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else str(name))
        else:
            flat[key] = (value if isinstance(value, str) else json.dumps(value))[:PARAM_CHARS]

    walk(raw, "")
    return flat


def _client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:  # pragma: no cover - mlflow-skinny is a dependency
        raise ConfigError(f"train.tracking_uri {uri}: MLflow is not installed (pip install mlflow-skinny), "
                          "or set train.tracking_uri: null") from err
    if uri.startswith("file:"):  # MLflow 3 keeps its file store behind an opt-in (it favours a database)
        os.environ.setdefault(ALLOW_FILE_STORE, "true")
    return MlflowClient(tracking_uri=uri)


def start_run(uri: str | None, *, out_dir: Path, experiment: str, stage: str, name: str,
              params: Mapping[str, str]) -> TrackedRun | None:
    """Create an MLflow run for a training stage and log its parameters; None when not tracking.

    Args:
        uri: ``train.tracking_uri`` (see :func:`resolve_uri`).
        out_dir: the stage's output folder (``local`` puts the store there).
        experiment: the experiment's name (created when missing).
        stage: ``pretrain`` or ``finetune`` (a tag, and the run name's start).
        name: the run's folder name under ``out_dir``.
        params: the flattened config (:func:`flat_params`).

    Raises:
        ConfigError: the tracking store cannot be reached or written; the message names the key.
    """
    resolved = resolve_uri(uri, out_dir)
    if resolved is None:
        return None
    from mlflow.entities import Param

    try:
        client = _client(resolved)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
        run = client.create_run(experiment_id, run_name=f"{stage}-{name}",
                                tags={"mixture_ray.stage": stage, "mixture_ray.run_dir": str(out_dir / name)})
        items = [Param(k, v) for k, v in sorted(params.items())]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            client.log_batch(run.info.run_id, params=items[start:start + PARAMS_PER_BATCH])
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"train.tracking_uri {resolved}: MLflow could not start a run ({err}); check the "
                          f"URI and that the server is up, or set train.tracking_uri: null") from err
    return TrackedRun(resolved, str(experiment_id), str(run.info.run_id))


def end_run(run: TrackedRun | None, status: str, *, params: Mapping[str, str] | None = None) -> None:
    """Log the final parameters (checkpoint, model file) and close the run as FINISHED or FAILED.

    A tracking store that fails now is logged as a warning: the model is already written.
    """
    if run is None:
        return
    from mlflow.entities import Param

    try:
        client = _client(run.tracking_uri)
        if params:
            client.log_batch(run.run_id, params=[Param(k, str(v)[:PARAM_CHARS]) for k, v in params.items()])
        client.set_terminated(run.run_id, status=status)
    except Exception as err:
        log.warning("MLflow run %s at %s could not be closed (%s)", run.run_id, run.tracking_uri, err)


class MetricLog:
    """Per-step metrics of one tracked run, sent in batches by the worker that owns them (rank 0).

    Never stops training: a batch that fails is kept (up to ``keep`` metrics) and sent with the
    next one, and the first failure is logged as a warning.

    Args:
        run: the run (None: every call is a no-op).
        flush_every_s: least seconds between two sends (a full batch is sent at once).
        keep: most metrics held while the store is failing.
    """

    def __init__(self, run: TrackedRun | None, *, flush_every_s: float = 5.0, keep: int = 100_000) -> None:
        self.run, self.flush_every_s, self.keep = run, flush_every_s, keep
        self._pending: list[Any] = []
        self._last = time.monotonic()
        self._client: Any = None
        self._warned = False

    def log(self, step: int, **values: float) -> None:
        """Queue ``values`` for ``step``; sends when the batch is full or old enough."""
        if self.run is None:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._pending += [Metric(key, float(value), stamp, int(step)) for key, value in values.items()]
        if len(self._pending) >= METRICS_PER_BATCH or time.monotonic() - self._last >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Send what is queued, in batches of MLflow's size."""
        if self.run is None or not self._pending:
            return
        self._last = time.monotonic()
        try:
            if self._client is None:
                self._client = _client(self.run.tracking_uri)
            while self._pending:
                self._client.log_batch(self.run.run_id, metrics=self._pending[:METRICS_PER_BATCH])
                del self._pending[:METRICS_PER_BATCH]
        except Exception as err:
            del self._pending[:-self.keep]
            if not self._warned:
                self._warned = True
                log.warning("MLflow run %s: metrics could not be sent (%s); kept and retried",
                            self.run.run_id, err)

    def close(self) -> None:
        """Send the rest."""
        self.flush()
