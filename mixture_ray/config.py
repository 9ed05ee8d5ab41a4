"""Typed, validated stage configs loaded from YAML with ``key=value`` overrides.

Each stage folder holds its own frozen dataclass config (``<stage>/config.py``) built from
:func:`option` fields; this module only loads them. ``load_config(TileConfig, path,
["max_tiles_per_slide=50"])`` reads the YAML file (if any), applies the overrides, coerces each value
to the declared type and runs the class's ``validate``. Unknown keys and bad values raise
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from mixture_ray.config_values import coerce
from mixture_ray.errors import ConfigError
from mixture_ray.locations import Uri
from mixture_ray.paths import config_path

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


def narrow(cls: type[C], cfg: object) -> C:
    """The fields of ``cls`` taken from ``cfg`` (a config that derives from ``cls``): a small spec."""
    return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def require_positive(cfg: object, *names: str) -> None:
    """Raise ConfigError naming the first of ``names`` whose value on ``cfg`` is not > 0."""
    for name in names:
        value = getattr(cfg, name)
        if value <= 0:
            raise ConfigError(f"{name}: must be > 0 (got {value!r})")


# ---------------------------------------------------------------- shared groups


@dataclasses.dataclass(frozen=True)
class RayTrainRun:
    """Ray Train run settings shared by pretrain and finetune (``train.<key>``)."""

    workers: int = option("Ray Train workers (>1: DDP across workers)", 1)
    cpus_per_worker: float = option("CPUs each training worker reserves", 1.0)
    torch_threads: int = option(
        "torch threads per worker on CPU; 0 = the cores of the worker's node shared among its workers", 0)
    use_gpu: bool | None = option("train on GPUs; null = when the cluster has them", None)
    checkpoint_every: int = option("report a checkpoint every this many steps (and at the end)", 100)
    keep_checkpoints: int = option("checkpoints kept in the run folder", 2)
    max_failures: int = option("worker failures retried from the last checkpoint (-1 = always)", 1)
    log_every: int = option("print loss and throughput every this many steps", 20)
    tracking_uri: str | None = option(
        "MLflow tracking URI for parameters, per-step metrics and the model path: local = a file store in "
        "<out_dir>/mlruns, a folder, or a URI (http://host:5000, sqlite:///mlflow.db); null = the "
        "MLFLOW_TRACKING_URI variable where set, else no tracking", None)
    experiment: str = option("MLflow experiment of the run (created when missing)", "mixture_ray")

    def validate(self) -> None:
        """Positive counts; max_failures >= -1."""
        require_positive(self, "workers", "cpus_per_worker", "checkpoint_every", "keep_checkpoints")
        require_positive(self, "log_every")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads: must be >= 0 (got {self.torch_threads})")
        if self.max_failures < -1:
            raise ConfigError(f"max_failures: must be >= -1 (got {self.max_failures})")


#: GPUs requested per actor or task: ``auto`` or a number (YAML ``1`` or CLI ``"1"``).
GpuRequest = Literal["auto"] | float | str  # a numeric string ("1") is checked by check_gpus


@dataclasses.dataclass(frozen=True)
class ActorPool:
    """Ray Data actor-pool settings shared by tile, embed and classify (``pool.<key>``)."""

    workers: int = option("actors (each keeps its model or its open slides)", 1)
    actor_cpus: float = option("CPUs each actor reserves in Ray's scheduler", 1.0)
    batch_size: int = option("tiles per batch handed to an actor", 64)
    part_rows: int = option(
        "rows per Parquet part of the output store (a part holds many slides' rows; larger parts mean "
        "fewer files, later commits and more memory per writer task)", 20_000)
    gpus: GpuRequest = option(
        "GPUs each model actor requests: a number (requested even when no GPU node is up yet, so an "
        "autoscaling cluster starts one), or auto = 1 when the cluster has a GPU, else 0", "auto")

    def validate(self) -> None:
        """Positive sizes; gpus is auto or a number >= 0."""
        require_positive(self, "workers", "actor_cpus", "batch_size", "part_rows")
        check_gpus("pool.gpus", self.gpus)


def check_gpus(key: str, value: str | float) -> None:
    """A GPU request is ``auto`` or a number >= 0; a clear error names ``key`` otherwise."""
    if value == "auto":
        return
    try:
        amount = float(value)
    except ValueError:
        amount = -1.0
    if not amount >= 0:
        raise ConfigError(f"{key}: give auto or a number of GPUs >= 0 (got {value!r})")


#: Where a model stage's tile pixels come from (``input.pixels``).
PixelSource = Literal["auto", "store", "slides"]
#: Where tile JPEGs are decoded (``input.decode``).
DecodePlace = Literal["cpu", "model"]
#: Stain normalisation of tiles read for a model (``input.stain``).
StainNormalisation = Literal["none", "macenko"]


@dataclasses.dataclass(frozen=True)
class TileInput:
    """How embed and classify get ready tile pixels (``input.<key>``), in CPU stages apart from the model.

    Decoding (or reading from the slides), resizing and stacking run in Ray Data stages of their
    own, so the model actors receive ready uint8 batches and only run the model.
    """

    pixels: PixelSource = option(
        "store: the tile store's encoded tiles; slides: read each tile from its slide (coordinates-only "
        "stores, encoding=none); auto: the store's tiles when it has them, else the slides", "auto")
    decode: DecodePlace = option(
        "cpu: decode JPEGs in CPU tasks; model: in the model actor, on its GPU when it has one "
        "(torchvision decode_jpeg)", "cpu")
    cpus: float = option("CPUs each decode task or slide-reading actor reserves", 1.0)
    readers: int = option("slide-reading actors when pixels come from the slides", 1)
    backend: str = option("slide reader when pixels come from the slides: auto, openslide, tiffslide, cucim",
                          "auto")
    tile_cache_mb: int = option("decoded native-tile cache per open slide and level, in MiB", 64)
    stain: StainNormalisation = option(
        "stain normalisation of each tile before the model: none, or macenko (H&E vectors and "
        "concentrations mapped to stain_reference; rescues faded slides)", "none")
    stain_reference: Path | None = option(
        "an RGB image (PNG/JPEG/TIFF) whose stains are the target; null = Macenko's reference", None)

    def validate(self) -> None:
        """Positive CPUs, readers and cache; stain normalisation happens in the CPU stages."""
        require_positive(self, "cpus", "readers", "tile_cache_mb")
        if self.stain != "none" and self.decode == "model":
            raise ConfigError("input.stain: normalisation runs in the CPU stages; set input.decode=cpu")
        if self.stain_reference is not None and not Path(self.stain_reference).is_file():
            raise ConfigError(f"input.stain_reference: {self.stain_reference} is not a file")


# ---------------------------------------------------------------- loading and coercion


def config_fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    """Field name -> (resolved type, field) for a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def option_keys(cls: type) -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    """Every settable key of a config: its fields, with a group's keys as ``group.key``.

    Args:
        cls: the config dataclass.

    Returns:
        Key -> (type, field); a group's own default is the stage's default group.
    """
    keys: dict[str, tuple[Any, dataclasses.Field[Any]]] = {}
    for name, (hint, field) in config_fields(cls).items():
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            base: Any = field.default if isinstance(field.default, hint) else hint()
            for sub, (sub_hint, sub_field) in config_fields(hint).items():
                copy = dataclasses.field(default=getattr(base, sub), metadata=sub_field.metadata)
                keys[f"{name}.{sub}"] = (sub_hint, copy)
        else:
            keys[name] = (hint, field)
    return keys


def _is_textual(hint: Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint in (str, Path) or (bool(args) and all(a in (str, Path, Uri) for a in args))


def parse_overrides(pairs: Iterable[str], cls: type | None = None) -> dict[str, Any]:
    """Parse ``key=value`` strings into a key -> value mapping.

    Path and string keys of ``cls`` are taken literally; other values are read as YAML scalars or
    lists (``magnifications=[5, 20]``).
    """
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


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path``; errors name ``what`` and the file."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: not valid YAML: {exc}") from exc


def load_config(
    cls: type[C],
    path: Path | str | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> C:
    """Build a validated config from a YAML file plus ``key=value`` overrides (later wins).

    Args:
        cls: the stage's config dataclass (``TileConfig``, ...).
        path: a YAML file of keys, or None.
        overrides: ``["tile_size=224", "pool.workers=2"]`` (values read as YAML) or a mapping;
            a dotted key sets one key of a shared group (``train.workers``, ``pool.batch_size``).

    Returns:
        The validated, frozen config; every path in it is absolute.

    Example:
        >>> load_config(TileConfig, "tile.yaml", ["pool.workers=4"])
    """
    values: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml(Path(path), "config file")
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of key: value at the top")
        values = _nest(loaded or {})
    later = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides, cls)
    return build_config(cls, _merge(values, _nest(later)))


def _merge(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
    """``later`` over ``earlier``; a group given in both keeps the keys ``later`` does not set."""
    out = dict(earlier)
    for key, value in later.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _nest(values: Mapping[Any, Any]) -> dict[str, Any]:
    """``{"train.workers": 2}`` -> ``{"train": {"workers": 2}}``; keys in order, later ones win.

    A dotted key and a ``train`` mapping of the same source are merged; the caller's mappings are
    copied, never changed.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{key!r}: config keys are names (strings), e.g. tile_size or pool.workers")
        group, dot, sub = key.partition(".")
        if not dot:
            out = _merge(out, {key: dict(value) if isinstance(value, Mapping) else value})
            continue
        if not group or not sub:
            raise ConfigError(f"{key}: expected group.key, e.g. pool.workers")
        current = out.get(group)
        if current is not None and not isinstance(current, Mapping):
            raise ConfigError(f"{key}: {group} is not a group of keys")
        out[group] = {**(current or {}), sub: value}
    return out


def build_config(cls: type[C], values: Mapping[str, Any]) -> C:
    """Coerce ``values`` to ``cls`` field types, reject unknown keys, then validate.

    Args:
        cls: the config dataclass.
        values: key -> value; a group is a mapping or dotted keys (``train.workers``).

    Returns:
        The validated, frozen config with absolute paths.
    """
    values = _nest(values)
    fields = config_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        moved = [f"{k} is now {g}.{k}" for k in unknown for g, (h, _) in fields.items()
                 if isinstance(h, type) and dataclasses.is_dataclass(h) and k in config_fields(h)]
        renamed: dict[str, str] = getattr(cls, "RENAMED_KEYS", {})
        moved += [f"{k}: {renamed[k]}" for k in unknown if k in renamed]
        hint = f" ({'; '.join(moved)})" if moved else ""
        raise ConfigError(
            f"unknown key(s) for {cls.__name__}: {', '.join(unknown)}{hint}; known keys: {', '.join(fields)}"
        )
    for name, value in values.items():
        hint_type = fields[name][0]
        is_group = isinstance(hint_type, type) and dataclasses.is_dataclass(hint_type)
        if isinstance(value, Mapping) and not is_group:
            raise ConfigError(f"{name}: is not a group of keys; got {dict(value)!r}")
    kwargs: dict[str, Any] = {}
    for name, (hint, field) in fields.items():
        if name in values and isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = _group(name, hint, field, values[name])
        elif name in values:
            kwargs[name] = coerce(name, hint, values[name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{name}: required key is missing ({field.metadata.get('help', '')})")
    cfg = _with_absolute_paths(cls(**kwargs))
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def _group(name: str, hint: type, field: dataclasses.Field[Any], value: Any) -> Any:
    """A shared group: the given keys over the stage's default group (not the group's defaults)."""
    if isinstance(value, hint):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of {', '.join(config_fields(hint))}, got {value!r}")
    base: Any = field.default if isinstance(field.default, hint) else hint()
    try:
        return build_config(hint, {**dataclasses.asdict(base), **value})
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _with_absolute_paths(cfg: C) -> C:
    """``cfg`` with every path field (defaults included) made absolute: see mixture_ray.paths."""
    changes: dict[str, Any] = {}
    for name, (_, field) in config_fields(type(cfg)).items():
        value = getattr(cfg, name)
        keywords = field.metadata.get("path_unless")
        if isinstance(value, Path):
            changes[name] = config_path(name, value)
        elif isinstance(value, tuple) and any(isinstance(v, Path) for v in value):  # URIs kept as given
            changes[name] = tuple(config_path(name, v) if isinstance(v, Path) else v for v in value)
        elif keywords and isinstance(value, str) and value and value not in keywords:
            changes[name] = str(config_path(name, value))
    return dataclasses.replace(cfg, **changes) if changes else cfg  # type: ignore[type-var]
