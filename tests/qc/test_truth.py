"""Known truth: `mixture-ray qc` finds defects planted in synthetic slides (scripts/qc_truth.py, small).

Two slides of each defect type and two clean slides, each from its own synthetic slide, at 512 px;
QC samples 64-px tiles (as in test_stage.py: the default 256-px tile leaves at most four tiles on
a 512-px slide). The full-size run is ``python scripts/qc_truth.py --out FILE.json``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mixture_ray.config import build_config
from mixture_ray.qc.config import QcConfig
from mixture_ray.qc.stage import run
from mixture_ray.synth.defect_scores import DefectScores, format_scores, score_qc
from mixture_ray.synth.defects import CLEAN, DEFECT_TYPES, write_defect_set

Planted = tuple[Path, DefectScores, pd.DataFrame]

pytestmark = [pytest.mark.truth, pytest.mark.usefixtures("ray_session")]

PER_TYPE, SEED, SIZE = 2, 0, 512
SMALL_SLIDES = {"tile_px": 64}
TARGET = 0.9


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    """The planted set, QC'd and scored once for the module."""
    root = tmp_path_factory.mktemp("planted")
    manifest = write_defect_set(root / "set", per_type=PER_TYPE, seed=SEED, size=SIZE)
    report = run(build_config(QcConfig, {"manifest": manifest, "out_dir": root / "qc", **SMALL_SLIDES}))
    assert report.complete, report.failures
    scores, table = score_qc(pd.read_csv(manifest, keep_default_na=False), report.table)
    return manifest, scores, table


def test_planted_set_has_every_type_from_its_own_slide(planted: Planted) -> None:
    manifest, _, _ = planted
    frame = pd.read_csv(manifest, keep_default_na=False)
    assert frame.defect.value_counts().to_dict() == dict.fromkeys((CLEAN, *DEFECT_TYPES), PER_TYPE)
    assert frame.base.is_unique and frame.slide_id.is_unique and (frame.mpp == 0.5).all()
    assert all((manifest.parent / p).is_file() for p in frame.path)
    for kind in DEFECT_TYPES:
        assert frame[frame.defect == kind].params.nunique() == PER_TYPE  # strengths and positions vary


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_each_planted_defect_is_found_with_precision_and_recall_of_at_least_0_9(
        planted: Planted, kind: str) -> None:
    _, scores, table = planted
    row = scores.per_type.loc[kind]
    shown = table[["slide_id", "decision", "detected", "reason"]].to_string(index=False)
    assert row.precision >= TARGET and row.recall >= TARGET, f"{kind}\n{format_scores(scores)}\n{shown}"
