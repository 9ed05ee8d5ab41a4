"""Live training progress on the driver's console: step / total, samples/s, loss, metrics, ETA.

The rank-0 training worker posts its step to a small Ray queue (an actor of no CPU) at most every
``post_every_s`` seconds and at the last step; a thread of the driver prints them with the same
rules as the data stages' progress line (redrawn in place on a terminal, a full line every
``log_interval_s`` in a log). Under ``ray job submit`` the driver's lines are the job's log, so
``ray job logs`` shows them. Worker output itself stays in ``<out_dir>/_logs/ray.log`` unless
``--verbose``.

Example:
    >>> with TrainingProgress("pretrain", total_steps=1000) as progress:
    ...     trainer = torch_trainer(loop, {"cfg": cfg, "progress": progress.sink}, ...)
    ...     trainer.fit()
    # in the loop, on rank 0:
    >>> post_step(config.get("progress"), step=step, total=1000, samples=seen, loss=loss)
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, TextIO

from mixture_ray.progress import format_seconds

#: Least seconds between two posts of a worker (the last step is always posted).
POST_EVERY_S = 2.0
_last_post: dict[int, float] = {}


def post_step(sink: Any, *, step: int, total: int, samples: int, loss: float, **metrics: float) -> None:
    """Post one step from a training worker (rank 0); never raises, never blocks.

    Args:
        sink: the queue from :attr:`TrainingProgress.sink` (None: nothing to do).
        step: steps done.
        total: steps of the run.
        samples: samples this worker has seen since it started (for the rate).
        loss: the step's loss.
        **metrics: more figures to show (``val_balanced_accuracy=0.81``).
    """
    if sink is None:
        return
    now = time.monotonic()
    if step < total and now - _last_post.get(id(sink), -math.inf) < POST_EVERY_S:
        return
    _last_post[id(sink)] = now
    try:
        sink.put_nowait({"step": step, "total": total, "samples": samples, "loss": loss, "time": time.time(),
                         **metrics})
    except Exception:  # a full or lost queue must never stop training
        return


class TrainingProgress:
    """The driver side: a Ray queue for the workers and a thread that prints what arrives.

    Args:
        stage: the stage's name, printed first.
        total_steps: steps of the run (for the ETA).
        stream: where to print (stderr).
        interval_s: least time between redraws on a terminal.
        log_interval_s: least time between lines when the stream is not a terminal.
    """

    def __init__(self, stage: str, *, total_steps: int, stream: TextIO | None = None,
                 interval_s: float = 0.5, log_interval_s: float = 15.0) -> None:
        self.stage, self.total_steps = stage, total_steps
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval_s if self.tty else log_interval_s
        self.sink: Any = None
        self.latest: dict[str, Any] | None = None
        self.first: dict[str, Any] | None = None
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_print = -math.inf

    def __enter__(self) -> TrainingProgress:
        from ray.util.queue import Queue

        self.sink = Queue(maxsize=256, actor_options={"num_cpus": 0})
        self._thread = threading.Thread(target=self._drain, name=f"{self.stage} progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._take_all()
        if self.latest is not None:
            self._print(end="\n" if self.tty else "")
        if self.sink is not None:
            self.sink.shutdown()

    def text(self) -> str:
        """The current line, from the latest post."""
        latest = self.latest or {}
        step, total = int(latest.get("step", 0)), int(latest.get("total", self.total_steps))
        parts = [f"[{self.stage}] step {step:,}/{total:,}"]
        rate = self._rate()
        if rate is not None:
            parts.append(f"{rate:,.1f} samples/s")
        if "loss" in latest:
            parts.append(f"loss {latest['loss']:.4f}")
        extra = {k: v for k, v in latest.items() if k not in ("step", "total", "samples", "loss", "time")}
        parts += [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()]
        eta = self._eta(step, total)
        if eta is not None:
            parts.append(f"ETA {format_seconds(eta)}")
        return "  ".join(parts)

    def _rate(self) -> float | None:
        if self.first is None or self.latest is None or self.latest is self.first:
            return None
        seconds = self.latest["time"] - self.first["time"]
        return float(self.latest["samples"] - self.first["samples"]) / seconds if seconds > 0 else None

    def _eta(self, step: int, total: int) -> float | None:
        if self.first is None or self.latest is None or step <= self.first["step"]:
            return None
        per_step = float(self.latest["time"] - self.first["time"]) / (step - self.first["step"])
        return float(per_step * max(0, total - step))

    def _take_all(self) -> bool:
        got = False
        while True:
            try:
                post = self.sink.get_nowait()
            except Exception:
                return got
            restarted = self.latest is not None and post["samples"] < self.latest["samples"]
            if self.first is None or post["step"] < self.first["step"] or restarted:  # a worker restarted
                self.first = post
            self.latest, got = post, True

    def _drain(self) -> None:
        while not self._stop.wait(0.25):
            if self._take_all() and time.monotonic() - self._last_print >= self.interval:
                self._print()

    def _print(self, end: str = "") -> None:
        self._last_print = time.monotonic()
        line = self.text()
        self.lines.append(line)
        if self.tty:
            self.stream.write("\r\033[K" + line + end)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
