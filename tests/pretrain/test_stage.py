"""MoCo building blocks, and pretraining on Ray Train: resume, a killed worker, 2 gloo workers."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch convention)

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.models import checkpoint as ckpt
from mixture_ray.models.augment import AugmentSpec, normalise, random_view, to_float
from mixture_ray.models.encoder import build_encoder
from mixture_ray.pretrain.config import PretrainConfig
from mixture_ray.pretrain.moco import KeyQueue, info_nce, momentum_update
from mixture_ray.pretrain.shuffle import gather, shuffle, unshuffle
from mixture_ray.pretrain.splitbn import SplitBatchNorm, convert_split_bn
from mixture_ray.store.folder import committed_files
from tests.conftest import TiledCohort


# ---------------------------------------------------------------- building blocks (no Ray)
def test_split_batch_norm_normalises_each_group_and_saves_as_plain_bn() -> None:
    torch.manual_seed(0)
    bn = SplitBatchNorm(3, num_splits=2).train()
    x = torch.randn(8, 3, 4, 4)
    x[1::2] += 5.0  # groups are interleaved: rows 0,2,4,6 and 1,3,5,7
    out = bn(x)
    for group in (out[0::2], out[1::2]):
        assert group.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    whole = nn.BatchNorm2d(3).train()(x)
    assert not torch.allclose(out, whole, atol=1e-3)  # a plain BN sees one batch
    plain = nn.BatchNorm2d(3)
    plain.load_state_dict(bn.state_dict())
    assert plain.running_mean is not None and bn.running_mean is not None
    assert torch.allclose(plain.running_mean, bn.running_mean)
    net = convert_split_bn(build_encoder("resnet18", 16, mlp=False), 4)
    assert sum(isinstance(m, SplitBatchNorm) for m in net.modules()) == 20
    build_encoder("resnet18", 16, mlp=False).load_state_dict(net.state_dict())  # same keys


def test_queue_momentum_and_loss() -> None:
    queue = KeyQueue(dim=4, size=5)
    keys = F.normalize(torch.randn(3, 4), dim=1)
    queue.push(keys)
    queue.push(keys * 2)
    assert int(queue.ptr) == 1  # 6 pushed into 5 slots wraps to 1
    assert torch.allclose(queue.queue[0], keys[2] * 2) and torch.allclose(queue.queue[3], keys[0] * 2)
    q, k = nn.Linear(2, 2), nn.Linear(2, 2)
    before = k.weight.detach().clone()
    momentum_update(k, q, 0.99)
    assert torch.allclose(k.weight, 0.99 * before + 0.01 * q.weight)
    qv = F.normalize(torch.randn(4, 8), dim=1)
    neg = F.normalize(torch.randn(16, 8), dim=1)
    easy = info_nce(qv, qv, neg, 0.1)
    hard = info_nce(qv, -qv, neg, 0.1)
    assert easy < 0.5 < hard
    logits = torch.cat([(qv * qv).sum(1, keepdim=True), qv @ neg.t()], 1) / 0.1
    assert torch.isclose(easy, F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)))


def test_augment_geometry() -> None:
    tiles = torch.randint(0, 256, (4, 40, 40, 3), dtype=torch.uint8)
    images = to_float(tiles)
    gen = torch.Generator().manual_seed(0)
    view = random_view(images, AugmentSpec(crop_fraction=0.8), gen)
    assert view.shape == (4, 3, 32, 32)
    identity = random_view(images, AugmentSpec(crop_fraction=1.0, rotation=0.0, flips=False), gen)
    assert torch.allclose(identity, normalise(images), atol=1e-4)
    again = random_view(images, AugmentSpec(), torch.Generator().manual_seed(0))
    assert torch.allclose(again, view)  # seeded
    base = normalise(images)
    options = [base, base.flip(-1), base.flip(-2), base.flip(-1).flip(-2)]
    seen = set()
    for _ in range(12):  # each sample is one of the four flip combinations; all of them occur
        flipped = random_view(images, AugmentSpec(1.0, 0.0), gen)
        for i in range(4):
            match = [j for j, o in enumerate(options) if torch.allclose(flipped[i], o[i], atol=1e-4)]
            assert len(match) == 1
            seen.add(match[0])
    assert seen == {0, 1, 2, 3}


def test_single_worker_shuffle_round_trip() -> None:
    x = torch.arange(12.0).view(6, 2)
    shuffled, undo = shuffle(x, torch.Generator().manual_seed(1))
    assert not torch.equal(shuffled, x)
    assert torch.equal(unshuffle(shuffled, undo), x)


def _ddp_shuffle_worker(rank: int, port: int, results: Any) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    x = torch.arange(8.0).view(4, 2) + 100 * rank
    shuffled, undo = shuffle(x, torch.Generator().manual_seed(rank))
    back = unshuffle(shuffled * 1.0, undo)
    queue = KeyQueue(dim=2, size=16, gen=torch.Generator().manual_seed(0))
    queue.push(gather(x))
    results[rank] = (x, shuffled, back, queue.queue.clone())
    dist.destroy_process_group()


def test_cross_worker_shuffle_with_two_gloo_processes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_ddp_shuffle_worker, args=(port, results), nprocs=2, join=True)
    (x0, s0, b0, q0), (x1, s1, b1, q1) = results[0], results[1]
    assert torch.equal(b0, x0) and torch.equal(b1, x1)  # unshuffle restores each worker's keys
    together = torch.cat([s0, s1])
    assert sorted(together[:, 0].tolist()) == sorted(torch.cat([x0, x1])[:, 0].tolist())
    assert not torch.equal(s0, x0) or not torch.equal(s1, x1)
    assert torch.equal(q0, q1)  # the queue gets the gathered keys of both workers
    assert torch.equal(q0[:8], torch.cat([x0, x1]))


def test_config_errors_name_the_key() -> None:
    base = {"tiles": "t", "out_dir": "o"}
    with pytest.raises(ConfigError, match="split_bn"):
        build_config(PretrainConfig, {**base, "batch_size": 10, "split_bn": 4})
    with pytest.raises(ConfigError, match="arch"):
        build_config(PretrainConfig, {**base, "arch": "vgg16"})


# ---------------------------------------------------------------- Ray Train runs
@pytest.fixture(scope="module")
def tiles(tiled_cohort: TiledCohort, ray_session: None) -> Path:
    """The shared tiled cohort's store (pretraining reads its 20x tiles)."""
    return tiled_cohort.tiles


def pretrain_cfg(tiles: Path, out: Path, **extra: Any) -> PretrainConfig:
    values = {"tiles": tiles, "out_dir": out, "name": "run", "batch_size": 8, "queue_size": 32,
              "split_bn": 2, "max_steps": 4, "train.checkpoint_every": 2, "train.log_every": 2,
              "train.cpus_per_worker": 1.0}
    values.update(extra)
    return build_config(PretrainConfig, values)


@pytest.mark.slow
def test_killed_worker_resumes_then_a_rerun_resumes_by_name(
    tiles: Path, tmp_path: Path, fault_dir: Path
) -> None:
    """A worker killed at step 5 (after the checkpoints of steps 2 and 4) is retried from a
    checkpoint, not from scratch; a second run of the same name resumes from the exported step.

    Step 2's checkpoint is certainly with the controller at the crash (Ray Train's result queue
    holds one result, so reporting step 4 waited for it); step 4's may not be yet, so the retry
    starts at 2 or 4. No sleep waits for the controller.
    """
    from mixture_ray.pretrain.stage import run as run_pretrain

    (fault_dir / "pretrain.step-5").touch()
    first = run_pretrain(pretrain_cfg(tiles, tmp_path, max_steps=6, **{"train.max_failures": 1}))
    assert not (fault_dir / "pretrain.step-5").exists() and list(fault_dir.glob("pretrain.step-5.claimed-*"))
    assert first.step == 6 and first.start_step in (2, 4)  # the retry resumed at a checkpoint
    exported = ckpt.load(first.encoder)  # weights_only=True
    assert exported["format"] == ckpt.ENCODER_FORMAT and exported["step"] == 6
    encoder = build_encoder("resnet18", 128, mlp=True)
    encoder.load_state_dict(exported["state_dict"])
    fresh = build_encoder("resnet18", 128, mlp=True)
    assert any(not torch.equal(a, b) for a, b in
               zip(encoder.state_dict().values(), fresh.state_dict().values(), strict=True))
    again = run_pretrain(pretrain_cfg(tiles, tmp_path, max_steps=8))
    assert (again.step, again.start_step) == (8, 6)
    state = ckpt.load(ckpt.find_checkpoint(again.run_dir / "elex.pt"))
    assert state["step"] == 8


def test_two_gloo_workers_train_with_ddp(tiles: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from mixture_ray.pretrain.stage import run as run_pretrain

    report = run_pretrain(pretrain_cfg(tiles, tmp_path, max_steps=3, **{
        "train.workers": 2, "train.cpus_per_worker": 0.5, "train.checkpoint_every": 1}))
    console = capsys.readouterr().err  # the driver's progress line, worker logs routed elsewhere
    assert re.search(r"\[pretrain\] step 3/3  [\d.]+ samples/s  loss \d+\.\d{4}", console), console
    assert report.step == 3 and report.metrics["world_size"] == 2
    assert report.samples_per_s_per_worker > 0
    states = [ckpt.load(p) for p in report.run_dir.glob(f"checkpoint_*/{ckpt.TRAIN_FILE}")]
    assert sorted(s["step"] for s in states) == [2, 3]  # three reported, keep_checkpoints=2 kept
    state = max(states, key=lambda s: int(s["step"]))
    assert int(state["queue"]["ptr"]) == (3 * 2 * 8) % 32  # queue took the keys of both workers


# ---------------------------------------------------------------- the training feed
def test_shuffle_buffer_batches_follow_the_rows_not_the_blocks() -> None:
    from mixture_ray.model_input.shuffle_buffer import shuffled_batches

    rows = np.arange(100)

    def stream(cut: int) -> list[dict[str, np.ndarray]]:
        return [{"v": rows[i:i + cut], "s": np.array([f"s{v % 7}" for v in rows[i:i + cut]], object)}
                for i in range(0, 100, cut)]

    def draw(cut: int, seed: int = 0) -> list[list[int]]:
        rng = np.random.default_rng(seed)
        return [b["v"].tolist() for b in shuffled_batches(stream(cut), batch_size=8, buffer_rows=32, rng=rng)]

    batches = draw(3)
    assert batches == draw(17) == draw(100)  # how the stream is cut into blocks does not matter
    assert batches != draw(3, seed=1)
    assert len(batches) == 12 and len({v for b in batches for v in b}) == 96  # each row at most once
    assert max(max(b) for b in batches[:1]) < 32  # the first batch comes from the first 32 rows
    assert all(b != sorted(b) for b in batches[:3])


def test_a_pretraining_batch_mixes_slides_and_each_epoch_has_its_seeded_order(tiles: Path,
                                                                            tmp_path: Path) -> None:
    """The store's parts are ordered by (seed, epoch) and read with their rows shuffled; the local
    shuffle buffer then mixes slides within a batch. Counts come from the index;
    a cache holds the same tiles, and is refused when it would not fit."""
    from mixture_ray.pretrain.data import check_cache_fits, tile_feed

    cfg = pretrain_cfg(tiles, tmp_path, magnification=20.0)
    feed = tile_feed(cfg)
    stored = pq.read_table(committed_files(tiles), columns=["slide_id", "magnification", "encoding"])
    at_20x = stored.filter(pc.equal(stored["magnification"], pa.scalar(20.0, pa.float32())))
    assert feed.rows == at_20x.num_rows and feed.cached is None

    def first_epochs(seed_feed: Any, epochs: int) -> list[list[str]]:
        out: dict[int, list[str]] = {}
        for epoch, batch in seed_feed.batches(0, rank=0, world=1, batch_size=8, buffer_rows=64):
            if epoch == epochs:
                break
            out.setdefault(epoch, []).extend(f"{s}" for s in batch["slide_id"])
            assert batch["image"].dtype == np.uint8 and batch["image"].shape[1:] == (32, 32, 3)
        return [out[e] for e in range(epochs)]

    epoch0, epoch1 = first_epochs(feed, 2)
    assert len(set(epoch0[:8])) >= 2  # the first batch holds tiles of several slides
    assert len(epoch0) == len(epoch1) == (feed.rows // 8) * 8  # every tile once, the short batch left out
    assert epoch0 != epoch1  # another order in epoch 1
    assert first_epochs(tile_feed(cfg), 2) == [epoch0, epoch1]  # the same seed, the same order
    other = tile_feed(pretrain_cfg(tiles, tmp_path, magnification=20.0, seed=5))
    assert first_epochs(other, 1)[0] != epoch0
    cached = tile_feed(pretrain_cfg(tiles, tmp_path, magnification=20.0, cache_tiles=True))
    assert cached.cached is not None and len(cached.cached) == len(feed.units())

    def images(from_feed: Any) -> list[bytes]:
        return sorted(np.asarray(r["image"]).tobytes() for r in from_feed.dataset(0).take_all())

    assert images(cached) == images(feed) and len(images(feed)) == feed.rows
    with pytest.raises(ConfigError, match=r"cache_tiles: .* GiB, more than 50% of Ray's object store"):
        check_cache_fits(cfg, 10**9)


def _cpu_burner() -> subprocess.Popen[bytes]:
    """A process spinning one core, to change the machine's load (and Ray Data's block timing)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _same_tensors(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_same_seed_gives_the_same_weights_under_load(tiles: Path, tmp_path: Path) -> None:
    """Two 3-step runs, the second beside a CPU burner: identical weights, key encoder and queue."""
    from mixture_ray.pretrain.stage import run as run_pretrain

    states = []
    for name in ("quiet", "loaded"):
        burner = _cpu_burner() if name == "loaded" else None
        try:
            report = run_pretrain(pretrain_cfg(tiles, tmp_path, name=name, max_steps=3, shuffle_buffer=32,
                                               **{"train.checkpoint_every": 3}))
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
        saved = [ckpt.load(p) for p in report.run_dir.glob(f"checkpoint_*/{ckpt.TRAIN_FILE}")]
        states.append(max(saved, key=lambda s: int(s["step"])))
    quiet, loaded = states
    assert quiet["step"] == loaded["step"] == 3 and quiet["epoch"] == loaded["epoch"] == 0
    for part in ("query", "key", "queue"):
        assert _same_tensors(quiet[part], loaded[part]), part
