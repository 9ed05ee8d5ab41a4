"""`stats.split`: the diagnosis models use the cases of a split file (as a fold-nested clustering did)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mixture_ray.config import build_config
from mixture_ray.stats.config import SplitConfig, StatsConfig
from mixture_ray.stats.errors import StatsInputError
from mixture_ray.stats.simulate import simulate_cohort
from mixture_ray.stats.split import run_split
from mixture_ray.stats.stage import run as run_stats
from mixture_ray.store.case_split import Split, read_split, write_split


def _stats(root: Path, paths: dict[str, Path], split: Path, out: str) -> StatsConfig:
    return build_config(StatsConfig, {
        "frequencies": paths["frequencies"], "clinical": paths["clinical"], "out_dir": root / out,
        "feature_sets": ["5x", "20x"], "rf_trees": 50, "bootstrap_iterations": 200, "split": split})


def test_stats_uses_the_split_file_and_refuses_one_that_misses_cases(tmp_path: Path) -> None:
    sim = simulate_cohort(60, seed=3)
    paths = sim.write(tmp_path)
    split_file = tmp_path / "split.csv"
    report = run_split(build_config(SplitConfig, {"clinical": paths["clinical"], "out": split_file,
                                                  "test_fraction": 0.4, "seed": 7}))
    assert (report.n_train, report.n_test) == (36, 24)
    run_stats(_stats(tmp_path, paths, split_file, "out"))
    cases = pd.read_csv(tmp_path / "out" / "cases.csv")
    written = read_split(split_file)
    assert set(cases.case_id[cases.split == "test"]) == set(written.test)
    assert set(cases.case_id[cases.split == "train"]) == set(written.train)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_test"] == 24 and summary["split"] == f"read from {split_file}"

    short = tmp_path / "short.csv"
    write_split(short, Split(written.train[1:], written.test))
    with pytest.raises(StatsInputError, match=rf"does not list 1 analysed cases \({written.train[0]}\)"):
        run_stats(_stats(tmp_path, paths, short, "out2"))
