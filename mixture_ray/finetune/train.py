"""The per-worker fine-tuning loop run by Ray Train: resume, stream and sample, step, validate, checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch convention)

from mixture_ray.faults import crash_once
from mixture_ray.finetune.metrics import classification_metrics
from mixture_ray.finetune.sampler import epoch_batches, epoch_counts
from mixture_ray.model_input.feed import numpy_batches
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.augment import AugmentSpec, random_view, to_float
from mixture_ray.models.backbone import Backbone, upgrade_state_dict
from mixture_ray.models.classifier import classifier_payload, from_elex, predict
from mixture_ray.tracking import MetricLog
from mixture_ray.train_progress import post_step
from mixture_ray.train_run import report_to_ray_train, worker_threads

if TYPE_CHECKING:
    from mixture_ray.finetune.config import FinetuneConfig
    from mixture_ray.model_input.feed import TrainingFeed

TRAIN_FILE = "finetune.pt"
TRAIN_FORMAT = "mixture_ray.finetune_state/1"


def steps_per_epoch(n_train: int, batch_size: int, world: int) -> int:
    """Full batches per worker per epoch (at least one)."""
    return max(1, (n_train // world) // batch_size)


def _fresh_progress() -> dict[str, Any]:
    return {"step": 0, "best": None, "best_score": -1.0, "best_epoch": 0, "best_metrics": None,
            "history": []}


def restore(net: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Load the latest Ray Train checkpoint (resume or retry); fresh progress when there is none."""
    found = ray.train.get_checkpoint()
    if found is None:
        return _fresh_progress()
    with found.as_directory() as folder:
        state = ckpt.load(Path(folder) / TRAIN_FILE)
    net.load_state_dict(upgrade_state_dict(state["model"]))
    opt.load_state_dict(state["optimizer"])
    return {k: state[k] for k in _fresh_progress()}


def validate(net: Backbone, dataset: Any, device: torch.device, batch_size: int = 128) -> dict[str, Any]:
    """Metrics of ``net`` on a streamed validation dataset (``image``, ``target`` batches).

    Args:
        net: the classifier (put in eval mode).
        dataset: a Ray Data dataset of decoded validation tiles, iterated here batch by batch.
        device: where the network runs.
        batch_size: tiles per forward pass.

    Returns:
        :meth:`ClassificationMetrics.to_dict` of the predictions against the targets.
    """
    truth, pred = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        truth.append(np.asarray(batch["target"], np.int64))
        pred.append(predict(net, batch["image"], batch_size=batch_size, device=device))
    return classification_metrics(np.concatenate(truth), np.concatenate(pred), net.classes).to_dict()


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker entry point.

    ``config`` holds cfg, classes, ``targets`` (an object ref to the training tiles' class
    indices, in the ``row`` order of the streamed tiles), ``feed`` (the training tiles'
    :class:`~mixture_ray.model_input.feed.TrainingFeed`: each epoch the worker streams its share of
    the tiles the epoch draws, in the seed's order) and ``val`` (the validation dataset, streamed
    by rank 0 at each epoch end).
    """
    cfg: FinetuneConfig = config["cfg"]
    feed: TrainingFeed = config["feed"]
    targets: np.ndarray = ray.get(config["targets"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type != "cuda":
        torch.set_num_threads(worker_threads(cfg.train, ctx.get_local_world_size()))
    net = from_elex(cfg.model, config["classes"], arch=cfg.arch, seed=cfg.seed).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    progress = restore(net, opt)
    start = step = int(progress["step"])
    model: nn.Module = net
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    per_epoch = steps_per_epoch(len(targets), cfg.batch_size, world)
    total = cfg.epochs * per_epoch
    spec = AugmentSpec(crop_fraction=1.0, rotation=cfg.rotation, flips=cfg.flips)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank + 7919 * start)
    loss_value = float("nan")
    tracking = MetricLog(config.get("tracking") if rank == 0 else None)
    while step < total:
        epoch, position = divmod(step, per_epoch)
        counts = epoch_counts(targets, len(net.classes), balanced=cfg.balanced, seed=cfg.seed, epoch=epoch)
        model.train()
        stream = numpy_batches(feed.dataset(epoch, rank=rank, world=world, counts=counts), cfg.batch_size)
        rng = np.random.default_rng([cfg.seed, rank, epoch, position])
        batches = epoch_batches(stream, counts, batch_size=cfg.batch_size, steps=per_epoch - position,
                                rng=rng)
        for b, (x, y) in enumerate(batches, start=position):
            tiles = torch.from_numpy(x).to(device)
            target = torch.from_numpy(y).to(device)
            views = random_view(to_float(tiles), spec, gen, size=net.input_size, mean=net.mean, std=net.std)
            loss = F.cross_entropy(model(views), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch.Tensor.backward is unannotated
            opt.step()
            step, loss_value = step + 1, float(loss.detach())
            crash_once(f"finetune.step-{step}")  # fault injection (tests)
            if rank == 0 and (step % cfg.train.log_every == 0 or step == total):
                print(f"[finetune] step {step}/{total} epoch {epoch + 1} loss {loss_value:.4f}", flush=True)
            if rank == 0:
                shown = {"epoch": epoch + 1}
                if progress["history"]:
                    shown["val_balanced_accuracy"] = progress["history"][-1]["val_balanced_accuracy"]
                post_step(config.get("progress"), step=step, total=total,
                          samples=(step - start) * cfg.batch_size * world, loss=loss_value, **shown)
                tracking.log(step, loss=loss_value, lr=float(opt.param_groups[0]["lr"]), epoch=epoch + 1)
            epoch_end = b == per_epoch - 1
            metrics: dict[str, Any] = {"step": step, "epoch": epoch + 1, "loss": loss_value,
                                       "start_step": start, "world_size": world}
            if epoch_end and rank == 0:  # only rank 0 checkpoints, so only it validates
                val = validate(net, config["val"], device)
                score = float(val["balanced_accuracy"] or 0.0)
                progress["history"].append({"epoch": epoch + 1, "step": step, "loss": loss_value,
                                            "val_balanced_accuracy": score})
                if score > progress["best_score"]:
                    progress.update(best=classifier_payload(net, epoch=epoch + 1, step=step),
                                    best_score=score, best_epoch=epoch + 1, best_metrics=val)
                metrics["val_balanced_accuracy"] = score
                tracking.log(step, **{f"val_{k}": float(v) for k, v in val.items()
                                      if isinstance(v, int | float) and not isinstance(v, bool)})
                model.train()
            if step % cfg.train.checkpoint_every == 0 or epoch_end:
                metrics["best_val_balanced_accuracy"] = progress["best_score"]
                state = None
                if rank == 0:
                    state = {"format": TRAIN_FORMAT, "model": net.state_dict(), "optimizer": opt.state_dict(),
                             **progress, "step": step}
                report_to_ray_train(metrics, state, TRAIN_FILE)
    tracking.close()
    if start >= total:  # already finished: report so the run has a result
        ray.train.report({"step": step, "epoch": cfg.epochs, "loss": loss_value, "start_step": start,
                          "world_size": world, "best_val_balanced_accuracy": progress["best_score"]})
