"""Numbers read from environment variables, checked once: a bad value names the variable and the fix."""

from __future__ import annotations

import math
import os

from mixture_ray.errors import ConfigError


def env_number(name: str, *, minimum: float, meaning: str, whole: bool = False) -> float | None:
    """The number in environment variable ``name``, or None when it is unset or blank.

    Args:
        name: the variable, e.g. ``MIXTURE_RAY_S3_ATTEMPTS``.
        minimum: the smallest value allowed.
        meaning: what the number is, for the error message (e.g. "attempts per S3 request").
        whole: a whole number is required.

    Raises:
        ConfigError: the value is not a finite number of at least ``minimum`` (whole where asked),
            naming the variable, its value and what to give.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        shown = int(minimum) if float(minimum).is_integer() else minimum
        raise ConfigError(f"{name}={text!r}: give the {meaning} ({kind} >= {shown}), or unset it")
    return value
