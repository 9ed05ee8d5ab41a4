"""Experiment tracking: a pretrain and a finetune logged to an MLflow file store and read back with
MLflow's client; their run ids in ``_SUCCESS`` and in the model files, and classify traced to both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError
from mixture_ray.pretrain.config import PretrainConfig
from mixture_ray.store.folder import SUCCESS
from mixture_ray.tracking import start_run
from tests.finetune.support import ft_cfg


def _record(folder: Path) -> dict[str, object]:
    record: dict[str, object] = json.loads((folder / SUCCESS).read_text())
    return record


def test_training_runs_are_read_back_from_mlflow_and_traced_by_classify(labelled: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    """Parameters, one loss and learning rate per step, validation metrics, the checkpoint path and
    FINISHED, as MLflow's client reads them; the same run ids in the model files, the run folders'
    _SUCCESS and the lineage of a classify run made with the classifier."""
    from mlflow.tracking import MlflowClient

    from mixture_ray.classify.config import ClassifyConfig
    from mixture_ray.classify.stage import run as run_classify
    from mixture_ray.finetune.stage import run as run_finetune
    from mixture_ray.pretrain.stage import run as run_pretrain

    labels, tiles = labelled
    store = tmp_path / "mlruns"  # a folder: MLflow's file store
    cfg = build_config(PretrainConfig, {
        "tiles": tiles, "out_dir": tmp_path / "pretrain", "name": "elex", "batch_size": 8, "queue_size": 32,
        "split_bn": 2, "max_steps": 4, "train.checkpoint_every": 2, "train.tracking_uri": str(store),
        "train.experiment": "tracking-test"})
    pretrained = run_pretrain(cfg)
    client = MlflowClient(tracking_uri=store.as_uri())
    record = _record(pretrained.run_dir)
    run_id = str(record["run_id"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "pretrain-elex"
    assert client.get_experiment(run.info.experiment_id).name == "tracking-test"
    assert run.data.params["max_steps"] == "4" and run.data.params["train.checkpoint_every"] == "2"
    assert Path(run.data.params["checkpoint"]).is_dir()
    assert run.data.params["encoder"] == str(pretrained.encoder)
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "lr")] == [
        (step, pytest.approx(cfg.lr)) for step in (1, 2, 3, 4)]
    assert torch.load(pretrained.encoder, weights_only=True)["run_id"] == run_id
    assert record["mlflow"] == {"tracking_uri": store.as_uri(), "experiment_id": run.info.experiment_id,
                                "run_id": run_id}
    assert [e["stage"] for e in record["lineage"]] == ["tile"]  # type: ignore[union-attr,index]

    tuned = run_finetune(ft_cfg(labels, tiles, tmp_path / "finetune", model=str(pretrained.encoder),
                                batch_size=16, magnification=20.0,
                                **{"train.tracking_uri": str(store), "train.experiment": "tracking-test"}))
    ft_id = str(_record(tuned.run_dir)["run_id"])
    ft_run = client.get_run(ft_id)
    assert ft_run.info.status == "FINISHED" and ft_run.data.params["model"] == str(pretrained.encoder)
    assert len(client.get_metric_history(ft_id, "loss")) == tuned.step
    val = client.get_metric_history(ft_id, "val_balanced_accuracy")
    assert [m.value for m in val] == pytest.approx([tuned.val_balanced_accuracy])
    assert torch.load(tuned.classifier, weights_only=True)["run_id"] == ft_id

    classified = run_classify(build_config(ClassifyConfig, {
        "tiles": tiles, "classifier": tuned.classifier, "out_dir": tmp_path / "predictions",
        "max_background": 0.7}))
    assert classified.complete, classified.summary()
    traced = {e["stage"]: e["run_id"] for e in _record(tmp_path / "predictions")["lineage"]}  # type: ignore[union-attr]
    assert traced["finetune"] == ft_id and traced["pretrain"] == run_id and "tile" in traced


def test_an_unwritable_tracking_store_fails_before_training(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The message names the key and the URI; without a URI (setting or variable) nothing is tracked."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"train\.tracking_uri .*file/mlruns.*MLflow could not start a run"):
        start_run(str(blocker / "mlruns"), out_dir=tmp_path, experiment="x", stage="pretrain", name="run",
                  params={"lr": "0.001"})
    assert start_run(None, out_dir=tmp_path, experiment="x", stage="pretrain", name="run", params={}) is None
