"""Typed, validated stage configs loaded from YAML with ``key=value`` overrides.

Every stage has one frozen dataclass here. ``load_config(TileConfig, path, ["max_tiles_per_slide=50"])``
reads the YAML file (if any), applies the overrides, coerces each value to the declared type and
runs the class's ``validate``. Unknown keys and bad values raise :class:`ConfigError` naming the key.
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

C = TypeVar("C")


def _help(text: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a help string (shown by ``mixture-ray <stage> --help``)."""
    if isinstance(default, list | tuple):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata={"help": text})
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """`mixture-ray synth`: write a synthetic cohort with planted findings, diagnosis and survival."""

    out_dir: Path = _help("folder that receives slides/, masks/, manifest.csv, clinical.csv")
    n_cases: int = _help("number of cases", 8)
    min_slides_per_case: int = _help("fewest slides per case", 1)
    max_slides_per_case: int = _help("most slides per case", 3)
    width: int = _help("slide width at level 0 in pixels", 4096)
    height: int = _help("slide height at level 0 in pixels", 4096)
    mpp: float = _help("microns per pixel at level 0 (written as MPP in the description)", 0.5)
    app_mag: float = _help("objective power written as AppMag", 20.0)
    levels: int = _help("pyramid levels (each 4x smaller than the one above)", 3)
    tile_px: int = _help("TIFF tile edge in pixels", 256)
    jpeg_quality: int = _help("JPEG quality of the TIFF tiles", 85)
    mask_downsample: int = _help("ground-truth mask pixel = this many level-0 pixels", 16)
    seed: int = _help("random seed; the same seed gives the same cohort", 0)

    def validate(self) -> None:
        _positive(self, "n_cases", "width", "height", "levels", "tile_px", "mask_downsample")
        _positive(self, "mpp", "app_mag", "min_slides_per_case", "max_slides_per_case")
        if self.min_slides_per_case > self.max_slides_per_case:
            raise ConfigError(
                "min_slides_per_case: must be <= max_slides_per_case "
                f"(got {self.min_slides_per_case} > {self.max_slides_per_case})"
            )
        if self.tile_px % 16:
            raise ConfigError(f"tile_px: must be a multiple of 16 for TIFF tiles (got {self.tile_px})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality: must be in 1..100 (got {self.jpeg_quality})")
        smallest = min(self.width, self.height) // 4 ** (self.levels - 1)
        if smallest < 16:
            raise ConfigError(
                f"levels: {self.levels} levels of a {self.width}x{self.height} slide leave a "
                f"level under 16 px; use fewer levels or a larger slide"
            )


TileEncoding = Literal["jpeg", "png", "none"]
Backend = Literal["auto", "openslide", "tiffslide", "cucim"]


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """`mixture-ray tile`: cut slides (or an ImageFolder tree) into a Parquet tile store."""

    out_dir: Path = _help("tile store folder (created; reruns skip slides already committed)")
    manifest: Path | None = _help(
        "CSV/Parquet manifest (slide_id, case_id, path[, mpp]) or a folder of slides", None
    )
    from_images: Path | None = _help("ImageFolder tree to import instead of slides", None)
    magnifications: tuple[float, ...] = _help(
        "objective magnifications to tile at; mpp = 10 / magnification", [2.5, 5.0, 20.0]
    )
    tile_size: int = _help("tile edge in pixels at the target magnification", 280)
    stride: int = _help("step between tiles in pixels at the target magnification; 0 = tile_size", 0)
    background_threshold: int = _help("a pixel is background when all of R, G, B exceed this", 220)
    max_background: float = _help("drop tiles whose background fraction exceeds this", 0.9)
    max_tiles_per_slide: int = _help(
        "keep at most this many tiles per slide and magnification, drawn with the seed; 0 = all", 300
    )
    encoding: TileEncoding = _help("tile pixels stored as jpeg, png, or none (coordinates only)", "jpeg")
    jpeg_quality: int = _help("JPEG quality when encoding=jpeg", 90)
    backend: Backend = _help("slide reader: auto, openslide, tiffslide, cucim", "auto")
    workers: int = _help("pixel-reading actors (one slide handle cache each)", 2)
    actor_cpus: float = _help("logical CPUs each pixel actor reserves in Ray's scheduler", 1.0)
    batch_size: int = _help("tiles per Ray Data batch in the pixel stage", 32)
    slides_per_commit: int = _help("slides written and committed together (resume granularity)", 16)
    seed: int = _help("random seed for tile sampling", 0)

    def validate(self) -> None:
        if (self.manifest is None) == (self.from_images is None):
            raise ConfigError("manifest / from_images: give exactly one of them")
        if not self.magnifications:
            raise ConfigError("magnifications: give at least one magnification")
        for mag in self.magnifications:
            if not 0 < mag <= 100:
                raise ConfigError(f"magnifications: {mag} is not a magnification in (0, 100]")
        _positive(self, "tile_size", "workers", "batch_size", "slides_per_commit", "actor_cpus")
        if self.stride < 0:
            raise ConfigError(f"stride: must be >= 0 (got {self.stride})")
        if not 0 <= self.background_threshold <= 255:
            raise ConfigError(f"background_threshold: must be in 0..255 (got {self.background_threshold})")
        if not 0.0 <= self.max_background <= 1.0:
            raise ConfigError(f"max_background: must be in [0, 1] (got {self.max_background})")
        if self.max_tiles_per_slide < 0:
            raise ConfigError(f"max_tiles_per_slide: must be >= 0 (got {self.max_tiles_per_slide})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality: must be in 1..100 (got {self.jpeg_quality})")

    @property
    def step(self) -> int:
        """Stride in target pixels (tile_size when stride is 0)."""
        return self.stride or self.tile_size


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """`mixture-ray demo`: the whole pipeline on a small synthetic cohort on the local machine."""

    out_dir: Path = _help("folder for every stage's output (cohort/, tiles/, ...)", Path("demo_out"))
    n_cases: int = _help("synthetic cases", 6)
    slide_px: int = _help("synthetic slide edge in pixels at level 0 (20x, 0.5 um/px)", 3072)
    tile_size: int = _help("tile edge in pixels", 128)
    magnifications: tuple[float, ...] = _help("magnifications to tile at", [5.0, 20.0])
    max_tiles_per_slide: int = _help("tiles kept per slide and magnification", 200)
    workers: int = _help("pixel-reading actors", 2)
    seed: int = _help("random seed of the cohort and the sampling", 0)

    def validate(self) -> None:
        _positive(self, "n_cases", "slide_px", "tile_size", "max_tiles_per_slide", "workers")


def _positive(cfg: object, *names: str) -> None:
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
            f"unknown key(s) for {cls.__name__}: {', '.join(unknown)}; "
            f"known keys: {', '.join(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, (hint, field) in fields.items():
        if name in values:
            kwargs[name] = coerce(name, hint, values[name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{name}: required key is missing ({field.metadata.get('help', '')})")
    cfg = cls(**kwargs)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


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
