"""Planted QC defects (seeded variety) and their scoring, on hand-made data (no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mixture_ray.synth.defect_scores import OTHER, detected_defects, format_scores, score_defects, score_qc
from mixture_ray.synth.defects import CLEAN, DEFECT_TYPES, plant

REASONS = {  # as mixture_ray.qc.decide writes them
    "faded": "faded stain: strength 0.33 of the reference (< 0.6); re-stain or re-scan, or normalise "
             "the stain",
    "blurred": "blur: 50% of 16 sampled tiles have a Laplacian variance < 40; re-scan out-of-focus areas "
               "(blurry tiles are in the exclusion mask)",
    "pen": "pen marks on 5.3% of the tissue (in the exclusion mask)",
    "fold": "tissue folds on 7.5% of the tissue (in the exclusion mask)",
    "fluorescence": "not H&E: fluorescence-like (dark background with bright signal)",
    "ihc": "not H&E: IHC-like (brown DAB dominates the tissue)",
}


def image() -> np.ndarray:
    """Pink tissue with purple nuclei on white: enough texture and stain for every defect."""
    rng = np.random.default_rng(0)
    out = np.full((128, 128, 3), 245, np.uint8)
    out[16:112, 16:112] = (225, 140, 190)
    out[16:112, 16:112][rng.random((96, 96)) < 0.2] = (90, 60, 150)
    return out


def test_reasons_map_to_defect_types() -> None:
    for kind, reason in REASONS.items():
        assert detected_defects("flag", reason) == {kind}
    both = "; ".join([REASONS["faded"], REASONS["blurred"], "mpp missing: guessed 0.5 um/px; give the mpp"])
    assert detected_defects("flag", both) == {"faded", "blurred"}
    assert detected_defects("pass", REASONS["pen"]) == frozenset()
    assert detected_defects("fail", "not H&E: dark background (not a bright-field slide)") == frozenset()


def test_scores_of_a_hand_made_table_with_one_false_positive_and_one_false_negative() -> None:
    truth = ["none", "none", "faded", "faded", "faded", "pen", "pen"]
    found = [set(), {"faded"}, {"faded"}, {"faded"}, set(), {"pen"}, {"pen", "fold"}]
    decisions = ["pass", "flag", "flag", "flag", "pass", "flag", "flag"]
    scores = score_defects(truth, found, decisions=decisions, types=("faded", "pen", "fold"))
    faded = scores.per_type.loc["faded"]
    assert (faded.tp, faded.fp, faded.fn, faded.tn) == (2, 1, 1, 3)
    assert faded.precision == pytest.approx(2 / 3) and faded.recall == pytest.approx(2 / 3)
    pen = scores.per_type.loc["pen"]
    assert (pen.tp, pen.fp, pen.fn, pen.precision, pen.recall) == (2, 0, 0, 1.0, 1.0)
    fold = scores.per_type.loc["fold"]
    assert (fold.tp, fold.fp, fold.precision) == (0, 1, 0.0) and math.isnan(fold.recall)  # none planted
    expected = pd.DataFrame(
        {"slides": [2, 3, 2], "faded": [1, 2, 0], "pen": [0, 0, 2], "fold": [0, 0, 1], CLEAN: [1, 1, 0],
         OTHER: [0, 0, 0]}, index=["none", "faded", "pen"])
    assert scores.confusion.loc[["none", "faded", "pen"]].equals(expected.rename_axis("true", axis=0)
                                                                 .rename_axis("detected", axis=1))
    assert scores.worst() == 0.0  # fold's precision; its undefined recall also counts as 0
    assert scores.to_dict()["per_type"]["fold"]["recall"] is None
    assert "precision" in format_scores(scores) and "n/a" in format_scores(scores)


def test_a_flag_for_no_planted_reason_is_other_and_missing_rows_detect_nothing() -> None:
    manifest = pd.DataFrame({"slide_id": ["a", "b", "c"], "defect": ["none", "pen", "faded"]})
    qc = pd.DataFrame({"slide_id": ["a", "b"], "decision": ["flag", "flag"],
                       "reason": ["mpp missing: the slide records neither mpp nor objective power",
                                  REASONS["pen"]]})
    scores, table = score_qc(manifest, qc)
    assert list(table.detected) == ["", "pen", ""]
    assert scores.confusion.loc["none", OTHER] == 1 and scores.confusion.loc["faded", OTHER] == 1
    assert scores.per_type.loc["pen", "recall"] == 1.0 and scores.per_type.loc["faded", "recall"] == 0.0


def test_planting_is_seeded_varied_and_changes_the_image() -> None:
    base = image()
    for kind in DEFECT_TYPES:
        first, params = plant(kind, base, np.random.default_rng(1))
        again, same = plant(kind, base, np.random.default_rng(1))
        other, different = plant(kind, base, np.random.default_rng(2))
        assert first.shape == base.shape and first.dtype == np.uint8
        assert np.array_equal(first, again) and params == same, kind
        assert params != different and not np.array_equal(first, other), kind
        assert not np.array_equal(first, base), kind
    clean, params = plant(CLEAN, base, np.random.default_rng(1))
    assert np.array_equal(clean, base) and params == {}
    with pytest.raises(ValueError, match="unknown defect"):
        plant("smudge", base, np.random.default_rng(1))
