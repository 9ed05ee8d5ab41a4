"""The per-worker MoCo loop run by Ray Train: resume, augment, step, log, checkpoint."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.train
import ray.train.torch
import torch

from mixture_ray.faults import crash_once
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.augment import AugmentSpec, random_view, to_float
from mixture_ray.models.backbone import upgrade_state_dict
from mixture_ray.pretrain.moco import MoCo
from mixture_ray.tracking import MetricLog
from mixture_ray.train_progress import post_step
from mixture_ray.train_run import report_to_ray_train, worker_threads

if TYPE_CHECKING:
    from mixture_ray.model_input.feed import TrainingFeed
    from mixture_ray.pretrain.config import PretrainConfig



def build_moco(cfg: PretrainConfig, world: int) -> MoCo:
    """The MoCo model for ``world`` workers (split BN only when training alone)."""
    return MoCo(
        arch=cfg.arch, dim=cfg.dim, mlp=cfg.mlp, queue_size=cfg.queue_size, momentum=cfg.momentum,
        temperature=cfg.temperature, split_bn=cfg.split_bn if world == 1 else 1, seed=cfg.seed,
    )


def train_state(model: MoCo, opt: torch.optim.Optimizer, step: int, epoch: int,
                cfg: PretrainConfig) -> dict[str, Any]:
    """Everything needed to resume, as tensors and primitives (``epoch``: the feed's epoch in progress)."""
    return {
        "format": ckpt.TRAIN_FORMAT, "step": step, "epoch": epoch, "spec": model.encoder().spec(),
        "query": model.encoder().state_dict(), "key": model.key.state_dict(),
        "queue": model.queue.state_dict(), "optimizer": opt.state_dict(),
        "magnification": cfg.magnification, "crop_fraction": cfg.crop_fraction,
    }


def restore(model: MoCo, opt: torch.optim.Optimizer) -> tuple[int, int]:
    """Load the latest Ray Train checkpoint (resume or retry).

    Returns:
        Its step and the feed epoch to start (the one after the checkpoint's); (0, 0) if none.
    """
    found = ray.train.get_checkpoint()
    if found is None:
        return 0, 0
    with found.as_directory() as folder:
        state = ckpt.load(Path(folder) / ckpt.TRAIN_FILE)
    model.encoder().load_state_dict(upgrade_state_dict(state["query"]))
    model.key.load_state_dict(upgrade_state_dict(state["key"]))
    model.queue.load_state_dict(state["queue"])
    opt.load_state_dict(state["optimizer"])
    return int(state["step"]), int(state.get("epoch", state["step"])) + 1


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker entry point; ``config`` holds ``cfg`` (the PretrainConfig) and ``feed``.

    The worker streams its own share of each epoch from the feed (a seeded order of the store's
    parts, a seeded local shuffle buffer), so what it trains on follows the seed, not the load.
    """
    cfg: PretrainConfig = config["cfg"]
    feed: TrainingFeed = config["feed"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(worker_threads(cfg.train, ctx.get_local_world_size()))
    model = build_moco(cfg, world).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.encoder().parameters(), lr=cfg.lr)
    start, first_epoch = restore(model, opt)
    step = start
    if world > 1:
        model.query = torch.nn.parallel.DistributedDataParallel(
            model.query, device_ids=[device.index] if cuda else None
        )
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank + 7919 * start)
    spec = AugmentSpec(cfg.crop_fraction, cfg.rotation, cfg.color_jitter)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    tick, seen, loss_value = time.perf_counter(), 0, float("nan")
    batches = feed.batches(first_epoch, rank=rank, world=world, batch_size=cfg.batch_size,
                           buffer_rows=cfg.shuffle_buffer)
    tracking = MetricLog(config.get("tracking") if rank == 0 else None)
    if step < cfg.max_steps:
        for epoch, batch in batches:
            tiles = torch.from_numpy(batch["image"]).to(device, non_blocking=True)  # uint8, then float
            images = to_float(tiles)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = model(random_view(images, spec, gen), random_view(images, spec, gen), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step, seen, loss_value = step + 1, seen + tiles.shape[0], float(loss.detach())
            crash_once(f"pretrain.step-{step}")  # fault injection (tests)
            rate = seen / max(time.perf_counter() - tick, 1e-9)
            if rank == 0:
                post_step(config.get("progress"), step=step, total=cfg.max_steps, samples=seen * world,
                          loss=loss_value)
                tracking.log(step, loss=loss_value, lr=float(opt.param_groups[0]["lr"]),
                             samples_per_s=rate * world)
            if rank == 0 and (step % cfg.train.log_every == 0 or step == cfg.max_steps):
                print(f"[pretrain] step {step}/{cfg.max_steps} loss {loss_value:.4f} "
                      f"{rate:.1f} samples/s/worker", flush=True)
            if step % cfg.train.checkpoint_every == 0 or step == cfg.max_steps:
                metrics = {"step": step, "loss": loss_value, "start_step": start,
                           "samples_per_s_per_worker": rate, "world_size": world}
                state = train_state(model, opt, step, epoch, cfg) if rank == 0 else None
                report_to_ray_train(metrics, state, ckpt.TRAIN_FILE)
            if step >= cfg.max_steps:
                break
    batches.close()  # stops this worker's feed
    tracking.close()
    if start >= cfg.max_steps:  # already finished: report so the run has a result
        ray.train.report({"step": step, "loss": loss_value, "start_step": start,
                          "samples_per_s_per_worker": 0.0, "world_size": world})
