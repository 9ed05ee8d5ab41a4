"""Training progress on the driver: what a worker posts, and the line the driver prints from it."""

from __future__ import annotations

import io

from mixture_ray.train_progress import TrainingProgress, post_step


class ListSink:
    """A stand-in for the Ray queue: keeps what is put."""

    def __init__(self) -> None:
        self.items: list[dict[str, float]] = []

    def put_nowait(self, item: dict[str, float]) -> None:
        self.items.append(item)


def test_workers_post_at_most_every_two_seconds_and_always_the_last_step() -> None:
    sink = ListSink()
    for step in range(1, 11):
        post_step(sink, step=step, total=10, samples=8 * step, loss=1.0 / step)
    assert [p["step"] for p in sink.items] == [1, 10]  # ten fast steps: the first and the last
    post_step(None, step=1, total=1, samples=1, loss=0.0)  # no sink: nothing, no error


def test_the_line_has_step_rate_loss_metrics_and_eta() -> None:
    progress = TrainingProgress("finetune", total_steps=0, stream=io.StringIO())
    progress.first = {"step": 10, "total": 110, "samples": 80, "loss": 2.0, "time": 1000.0}
    progress.latest = {"step": 60, "total": 110, "samples": 480, "loss": 0.51234, "time": 1100.0,
                       "epoch": 2, "val_balanced_accuracy": 0.8125}
    assert progress.text() == ("[finetune] step 60/110  4.0 samples/s  loss 0.5123  epoch 2  "
                               "val_balanced_accuracy 0.8125  ETA 1m40s")  # 2 s a step, 50 to go
    progress.latest = progress.first
    assert progress.text() == "[finetune] step 10/110  loss 2.0000"  # one post: no rate, no ETA yet
