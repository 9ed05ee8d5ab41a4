"""Numbers from environment variables: unset gives None, bad values name the variable and the fix."""

from __future__ import annotations

import pytest

from mixture_ray.env_settings import env_number
from mixture_ray.errors import ConfigError
from mixture_ray.locations import S3_ATTEMPTS_ENV, s3_attempts

NAME = "MIXTURE_RAY_TEST_NUMBER"


@pytest.mark.parametrize("text", ["", "  "])
def test_unset_or_blank_is_none(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(NAME, text)
    assert env_number(NAME, minimum=0, meaning="test units") is None
    monkeypatch.delenv(NAME)
    assert env_number(NAME, minimum=0, meaning="test units") is None


@pytest.mark.parametrize(("text", "whole", "expected"), [("2.5", False, 2.5), (" 3 ", True, 3.0)])
def test_good_values(monkeypatch: pytest.MonkeyPatch, text: str, whole: bool, expected: float) -> None:
    monkeypatch.setenv(NAME, text)
    assert env_number(NAME, minimum=1, meaning="test units", whole=whole) == expected


@pytest.mark.parametrize(("text", "whole"), [("lots", False), ("0.5", False), ("nan", False),
                                             ("inf", False), ("2.5", True)])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, text: str, whole: bool) -> None:
    monkeypatch.setenv(NAME, text)
    with pytest.raises(ConfigError) as caught:
        env_number(NAME, minimum=1, meaning="test units", whole=whole)
    message = str(caught.value)
    assert NAME in message and repr(text) in message and "test units" in message and ">= 1" in message


def test_s3_attempts_default_and_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(S3_ATTEMPTS_ENV, raising=False)
    assert s3_attempts() == 10
    monkeypatch.setenv(S3_ATTEMPTS_ENV, "4")
    assert s3_attempts() == 4
    monkeypatch.setenv(S3_ATTEMPTS_ENV, "0")
    with pytest.raises(ConfigError, match=S3_ATTEMPTS_ENV):
        s3_attempts()
