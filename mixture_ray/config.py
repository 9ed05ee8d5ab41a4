"""Typed, validated stage configs loaded from YAML with ``key=value`` overrides.

Each stage folder holds its own frozen dataclass config (``<stage>/config.py``) built from
:func:`option` fields; this module only loads them. ``load_config(TileConfig, path,
["max_tiles_per_slide=50"])`` reads the YAML file (if any), applies the overrides, coerces each value
to the declared type and runs the class's ``validate``. Unknown keys and bad values raise
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from mixture_ray.errors import ConfigError
from mixture_ray.paths import absolute_path

C = TypeVar("C")


def option(text: str, default: Any = dataclasses.MISSING, *, path_unless: tuple[str, ...] = ()) -> Any:
    """A dataclass field with a help string (shown by ``mixture-ray <stage> --help``).

    ``path_unless`` marks a string field that holds a path unless it is one of these keywords
    (``model: random``); such a path is made absolute like every ``Path`` field.
    """
    metadata: dict[str, Any] = {"help": text}
    if path_unless:
        metadata["path_unless"] = path_unless
    if isinstance(default, list | tuple):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def require_positive(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value <= 0:
            raise ConfigError(f"{name}: must be > 0 (got {value!r})")


# ---------------------------------------------------------------- loading and coercion


def config_fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    """Field name -> (resolved type, field) for a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def _is_textual(hint: Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint in (str, Path) or (len(args) == 1 and args[0] in (str, Path))


def parse_overrides(pairs: Iterable[str], cls: type | None = None) -> dict[str, Any]:
    """Parse ``key=value`` strings. Path and string keys of ``cls`` are taken literally;
    other values are read as YAML scalars or lists (``magnifications=[5, 20]``)."""
    hints = typing.get_type_hints(cls) if cls is not None else {}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        if key in hints and _is_textual(hints[key]):
            out[key] = raw if raw.lower() not in ("null", "none", "~") else None
            continue
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from exc
    return out


def load_config(
    cls: type[C],
    path: Path | str | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> C:
    """Build a validated ``cls`` from a YAML file plus overrides (later wins)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of key: value at the top")
        values.update(loaded or {})
    values.update(overrides if isinstance(overrides, Mapping) else parse_overrides(overrides, cls))
    return build_config(cls, values)


def build_config(cls: type[C], values: Mapping[str, Any]) -> C:
    """Coerce ``values`` to ``cls`` field types, reject unknown keys, then validate."""
    fields = config_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) for {cls.__name__}: {', '.join(unknown)}; known keys: {', '.join(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, (hint, field) in fields.items():
        if name in values:
            kwargs[name] = coerce(name, hint, values[name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{name}: required key is missing ({field.metadata.get('help', '')})")
    cfg = _with_absolute_paths(cls(**kwargs))
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def _with_absolute_paths(cfg: C) -> C:
    """``cfg`` with every path field (defaults included) made absolute: see store.paths."""
    changes: dict[str, Any] = {}
    for name, (_, field) in config_fields(type(cfg)).items():
        value = getattr(cfg, name)
        keywords = field.metadata.get("path_unless")
        if isinstance(value, Path):
            changes[name] = absolute_path(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, Path) for v in value):
            changes[name] = tuple(absolute_path(v) for v in value)
        elif keywords and isinstance(value, str) and value and value not in keywords:
            changes[name] = str(absolute_path(value))
    return dataclasses.replace(cfg, **changes) if changes else cfg  # type: ignore[type-var]


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
    if hint is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{name}: expected a path, got {value!r}")
        return Path(value)
    raise ConfigError(f"{name}: unsupported config type {hint!r}")  # pragma: no cover
