"""Bad clinical input is one error naming the file, every problem, its 1-based data rows and case ids."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mixture_ray.cli import EXIT_BAD_INPUT, main
from mixture_ray.config import build_config
from mixture_ray.errors import ConfigError, MixtureRayError
from mixture_ray.stats.clinical import load_clinical
from mixture_ray.stats.config import StatsConfig
from mixture_ray.stats.errors import ClinicalTableError, StatsInputError
from mixture_ray.stats.features import load_frequencies
from mixture_ray.stats.simulate import simulate_cohort

N = 12


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    sim = simulate_cohort(N, seed=1, baseline_ks=())
    sim.frequencies.to_csv(tmp_path / "frequencies.csv", index=False)
    return sim.frequencies, sim.clinical.astype(str)


def check(tmp_path: Path, clinical: pd.DataFrame, **settings: object) -> ClinicalTableError:
    path = tmp_path / "clinical.csv"
    clinical.to_csv(path, index=False)
    cfg = build_config(
        StatsConfig,
        {
            "frequencies": tmp_path / "frequencies.csv",
            "clinical": path,
            "out_dir": tmp_path / "out",
            **settings,
        },
    )
    ids = list(load_frequencies(cfg.frequencies).frame.index)
    with pytest.raises(ClinicalTableError) as info:
        load_clinical(path, ids, cfg)
    assert isinstance(info.value, MixtureRayError) and str(path) in str(info.value)
    assert "1-based data rows" in str(info.value)
    return info.value


def only(error: ClinicalTableError) -> str:
    assert len(error.problems) == 1, error.problems
    return error.problems[0]


def test_missing_column_is_named_with_the_columns_present(tmp_path: Path, cohort: tuple) -> None:
    _, clinical = cohort
    problem = only(check(tmp_path, clinical.drop(columns=["time"])))
    assert "column 'time' is missing" in problem and "case_id, diagnosis, label, event" in problem
    assert "time_column" in problem


def test_bad_times_name_rows_and_cases(tmp_path: Path, cohort: tuple) -> None:
    _, clinical = cohort
    clinical.loc[1, "time"] = ""
    clinical.loc[4, "time"] = "soon"
    clinical.loc[6, "time"] = "-2.5"
    error = check(tmp_path, clinical)
    text = "\n".join(error.problems)
    assert len(error.problems) == 3
    assert "row 2 (case 'case-0001'): follow-up time ('time') is missing" in text
    assert "row 5 (case 'case-0004')" in text and "not a number (got ['soon'])" in text
    assert "row 7 (case 'case-0006')" in text and "is negative" in text


def test_events_must_be_zero_or_one(tmp_path: Path, cohort: tuple) -> None:
    _, clinical = cohort
    clinical.loc[[2, 3], "event"] = ["2", "yes"]
    problem = only(check(tmp_path, clinical))
    assert "rows 3, 4 (cases 'case-0002', 'case-0003')" in problem and "not 0 or 1" in problem


def test_duplicate_case_ids(tmp_path: Path, cohort: tuple) -> None:
    _, clinical = cohort
    clinical.loc[5, "case_id"] = "case-0000"
    error = check(tmp_path, clinical)
    assert "rows 1, 6 (cases 'case-0000', 'case-0000'): case id appears more than once" in error.problems[0]


def test_clinical_cases_without_tiles(tmp_path: Path, cohort: tuple) -> None:
    _, clinical = cohort
    clinical.loc[3, "case_id"] = "ghost-7"
    error = check(tmp_path, clinical, missing_clinical="warn")
    text = "\n".join(error.problems)
    assert "row 4 (case 'ghost-7'): case has no tiles (not in the frequency table)" in text
    # case-0003 lost its clinical row: only a note with warn, a listed problem with error
    assert "case-0003" not in text
    error = check(tmp_path, clinical, missing_clinical="error")
    assert any("'case-0003'" in p and "missing_clinical=warn" in p for p in error.problems)


def test_frequency_cases_without_clinical_rows_are_left_out_with_a_note(
    tmp_path: Path, cohort: tuple
) -> None:
    _, clinical = cohort
    path = tmp_path / "clinical.csv"
    clinical.drop(index=[2, 9]).to_csv(path, index=False)
    cfg = build_config(
        StatsConfig,
        {"frequencies": tmp_path / "frequencies.csv", "clinical": path, "out_dir": tmp_path / "out"},
    )
    data = load_clinical(path, list(load_frequencies(cfg.frequencies).frame.index), cfg)
    assert data.excluded_cases == ("case-0002", "case-0009") and len(data.frame) == N - 2
    assert "'case-0002', 'case-0009'" in data.notes[0] and "left out" in data.notes[0]


def test_labels_missing_or_single_class(tmp_path: Path, cohort: tuple) -> None:
    _, clinical = cohort
    missing = clinical.copy()
    missing.loc[[0, 7], "label"] = ""
    problem = only(check(tmp_path, missing))
    assert "rows 1, 8 (cases 'case-0000', 'case-0007'): label ('label') is missing" in problem
    single = clinical.assign(label="1")
    problem = only(check(tmp_path, single))
    assert "only one class" in problem and "both classes" in problem


def test_text_labels_need_positive_label(tmp_path: Path, cohort: tuple) -> None:
    _, clinical = cohort
    error = check(tmp_path, clinical, label_column="diagnosis")
    assert "set positive_label" in only(error) and "rows 1, 2" in only(error)
    error = check(tmp_path, clinical, label_column="diagnosis", positive_label="UIP?")
    assert "positive_label 'UIP?' does not occur" in only(error)
    path = tmp_path / "clinical.csv"
    cfg = build_config(
        StatsConfig,
        {
            "frequencies": tmp_path / "frequencies.csv",
            "clinical": path,
            "out_dir": tmp_path,
            "label_column": "diagnosis",
            "positive_label": "UIP",
        },
    )
    data = load_clinical(path, list(clinical["case_id"]), cfg)
    assert list(data.frame["label"]) == list((clinical["diagnosis"] == "UIP").astype(int))
    assert (data.positive, data.negative) == ("UIP", "non-UIP")


def test_every_problem_is_listed_at_once(tmp_path: Path, cohort: tuple) -> None:
    _, clinical = cohort
    clinical.loc[0, "time"] = "x"
    clinical.loc[1, "event"] = "3"
    clinical.loc[2, "label"] = ""
    error = check(tmp_path, clinical.drop(columns=["diagnosis"]), subgroup_column="diagnosis")
    assert len(error.problems) == 4
    assert "column 'diagnosis' is missing" in str(error) and "row 3 (case 'case-0002')" in str(error)


def test_frequency_table_problems_and_config_errors(tmp_path: Path, cohort: tuple) -> None:
    frequencies, _ = cohort
    bad = frequencies.copy()
    bad.loc[3, "20x/fat"] = None
    bad.loc[5, "case_id"] = "case-0000"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(StatsInputError) as info:
        load_frequencies(tmp_path / "bad.csv")
    assert "rows 1, 6 (cases 'case-0000', 'case-0000')" in str(info.value)
    assert "row 4 (case 'case-0003')" in str(info.value)
    for key, value in (("feature_sets", ["20y"]), ("test_fraction", 1.5), ("covariates", ["time"])):
        with pytest.raises(ConfigError, match=key):
            build_config(StatsConfig, {"frequencies": "f", "clinical": "c", "out_dir": "o", key: value})


def test_cli_exits_with_bad_input_and_names_the_row(
    tmp_path: Path, cohort: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    _, clinical = cohort
    clinical.loc[3, "event"] = "maybe"
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    code = main(
        [
            "stats",
            "--frequencies",
            str(tmp_path / "frequencies.csv"),
            "--clinical",
            str(tmp_path / "clinical.csv"),
            "--out-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "row 4 (case 'case-0003')" in err and "event" in err
    assert not (tmp_path / "out" / "_SUCCESS").exists()
