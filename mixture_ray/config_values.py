"""A config value converted to its declared type (paths, URIs, tuples, unions, literals)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri, is_uri


def coerce(name: str, hint: Any, value: Any) -> Any:
    """Convert ``value`` to the annotated type ``hint`` or raise ConfigError naming ``name``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(name, arg, value)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{name}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else [value]
        if isinstance(value, str):
            items = [v for v in value.split(",") if v.strip()]
            items = [yaml.safe_load(v) for v in items]
        return tuple(coerce(f"{name}[{i}]", args[0], v) for i, v in enumerate(items))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    if hint is Uri:
        if isinstance(value, str) and is_uri(value):
            return Uri(value)
        raise ConfigError(f"{name}: expected an object-store URI (s3://bucket/key), got {value!r}")
    if hint is Path:
        if isinstance(value, str) and is_uri(value):
            raise ConfigError(f"{name}: {value!r} is an object-store URI, but this key takes a local or "
                              "shared path (URIs are taken by the Parquet stores: out_dir of tile, embed, "
                              "classify and every key reading one; clusterings and other stages' folders are "
                              "local: see docs/cluster.md, Object storage)")
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{name}: expected a path, got {value!r}")
        return Path(value)
    raise ConfigError(f"{name}: unsupported config type {hint!r}")  # pragma: no cover
