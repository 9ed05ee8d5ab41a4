"""jobs/presets/mixture-paper.yaml: every stage's keys valid, and the paper's choices where they matter."""

from __future__ import annotations

from pathlib import Path

from mixture_ray.pipeline.job import load_pipeline

PRESET = Path(__file__).resolve().parents[2] / "jobs" / "presets" / "mixture-paper.yaml"


def test_paper_preset_validates_with_the_papers_choices() -> None:
    steps = load_pipeline(PRESET)
    by_verb: dict[str, list[object]] = {}
    for step in steps:
        by_verb.setdefault(step.spec.name, []).append(step.config)
    pretrain_tiles, cohort_tiles = by_verb["tile"]
    def tiling(cfg: object) -> tuple[object, ...]:
        return tuple(getattr(cfg, k) for k in ("tile_size", "max_background", "max_tiles_per_slide"))

    assert tiling(pretrain_tiles) == (280, 0.9, 300) and tiling(cohort_tiles) == (224, 0.7, 0)
    for cfg in by_verb["pretrain"]:
        assert (cfg.arch, cfg.dim, cfg.mlp, cfg.queue_size, cfg.momentum, cfg.temperature, cfg.lr) == (
            "resnet18", 128, False, 4096, 0.99, 0.1, 1e-4)
    assert sorted(c.magnification for c in by_verb["pretrain"]) == [2.5, 5.0, 20.0]
    assert all(c.feature == "head" for c in by_verb["cluster"])
    assert list(by_verb["cluster"][0].ks) == [5, 8, 10, 30, 50, 80, 100, 120]
    assert all(c.per_cluster == 120 for c in by_verb["review"])
    (cases,) = by_verb["cases"]
    assert list(cases.exclude) == ["5x/complete_normal"]
    (stats,) = by_verb["stats"]
    assert (stats.forest, stats.km_model, stats.km_threshold) == ("regressor", ("5x", "random_forest"), 0.5)
    assert (stats.bootstrap_iterations, stats.test_fraction) == (5000, 0.3)
    assert list(stats.baseline_ks) == [4, 8, 10, 20, 30, 50, 80]
    assert list(stats.feature_sets) == ["2.5x", "5x", "20x", "2.5x+5x", "2.5x+20x", "5x+20x", "2.5x+5x+20x"]
