"""One progress line a person can read: done/total, rate and ETA of a long stage.

On a terminal the line is redrawn in place (at most every ``interval_s``); in a log (CI, ``ray job
logs``) a full line is printed every ``log_interval_s`` instead, so the log stays short. Ray's own
progress bars are switched off by :func:`mixture_ray.ray_runtime.route_ray_logs` unless the user
asks for them with ``--verbose``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3700`` -> ``1h01m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLine:
    """Progress of one stage run over slides (items) and rows (tiles).

    Args:
        stage: the stage's name, printed first.
        total_items: slides this run will process.
        total_rows: tiles this run will process, when known up front (else the ETA is by slides).
        unit: what a row is called ("tiles").
        stream: where to print (stderr).
        interval_s: least time between redraws on a terminal.
        log_interval_s: least time between lines when the stream is not a terminal.

    Example:
        >>> line = ProgressLine("embed", total_items=3, total_rows=300)
        >>> line.update(items_done=1, rows_done=100)
        >>> line.close()
    """

    def __init__(self, stage: str, *, total_items: int, total_rows: int | None = None, unit: str = "tiles",
                 stream: TextIO | None = None, interval_s: float = 0.5, log_interval_s: float = 15.0) -> None:
        self.stage, self.total_items, self.total_rows, self.unit = stage, total_items, total_rows, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval_s if self.tty else log_interval_s
        self.start = time.monotonic()
        self.last_print = self.start
        self.items_done = self.rows_done = 0

    def text(self) -> str:
        """The current line: items and rows done, rows per second, and the ETA."""
        elapsed = time.monotonic() - self.start
        rate = self.rows_done / elapsed if elapsed > 0 else 0.0  # start-up included: never inflated
        rows = f"{self.rows_done:,}" + (f"/{self.total_rows:,}" if self.total_rows else "")
        parts = [f"[{self.stage}] {self.items_done}/{self.total_items} slides", f"{rows} {self.unit}",
                 f"{rate:,.0f} {self.unit}/s", f"elapsed {format_seconds(elapsed)}"]
        if self.total_rows and rate > 0:
            parts.append(f"ETA {format_seconds((self.total_rows - self.rows_done) / rate)}")
        elif self.items_done and self.total_items > self.items_done:
            per_item = elapsed / self.items_done
            parts.append(f"ETA {format_seconds(per_item * (self.total_items - self.items_done))}")
        return "  ".join(parts)

    def update(self, *, items_done: int, rows_done: int) -> None:
        """Record progress and print when the interval has passed.

        Args:
            items_done: slides finished so far in this run.
            rows_done: rows (tiles) processed so far in this run.

        Returns:
            None.
        """
        self.items_done, self.rows_done = items_done, rows_done
        if time.monotonic() - self.last_print >= self.interval:
            self._print()

    def _print(self, end: str = "") -> None:
        self.last_print = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + self.text() + end)
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Print the final line (always, so a log records the run's rate)."""
        self._print(end="\n" if self.tty else "")
