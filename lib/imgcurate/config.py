"""The pipeline config: one YAML file that describes a whole curation run.

Validation happens before any work starts and every message names the key,
what was wrong and what would be right, e.g.::

    conf/pipeline.yaml: embed.batch_size: must be an integer >= 1, got 'big'
    conf/pipeline.yaml: dedupe: unknown key (did you mean 'dedup'?); valid keys: ...

The config is read from a local file or any fsspec URL, so a cluster job can
take it from object storage.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

STAGES = ("scan", "embed", "dedup", "reshard")


class ConfigError(ValueError):
    """The config is invalid; the message names the key and the fix."""


@dataclass
class ScanConfig:
    max_pixels: int = 2 * 89_478_485


@dataclass
class EmbedConfig:
    model: str = "openclip:ViT-L-14/openai"
    heads: list[str] | None = None
    batch_size: int | None = None
    weights_dir: str | None = None
    random_weights: bool = False
    fast_decode: bool = True
    vector_dtype: str = "float32"
    precision: str = "fp16"
    decode_threads: int | None = None
    shards_per_commit: int = 256


@dataclass
class DedupConfig:
    exact: bool = True
    phash: bool = True
    semantic: str = "auto"
    phash_distance: int | None = None
    semantic_eps: list[float] = field(default_factory=lambda: [0.01])
    clusters: int | None = None
    keep: str = "hard"


@dataclass
class SelectConfig:
    where: str | None = "status = 'ok'"
    sql: str | None = None


@dataclass
class ReshardConfig:
    dest: str | None = None
    samples_per_shard: int | None = 10_000
    max_shard_bytes: int | None = None
    keys: str = "keep"
    shuffle_seed: int | None = None
    skip_missing: bool = False


@dataclass
class SparkConfig:
    master: str | None = None
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    input: str = ""
    tables: str = ""
    root: str | None = None
    format: str = "parquet"
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    scan: ScanConfig = field(default_factory=ScanConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    reshard: ReshardConfig = field(default_factory=ReshardConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)


Check = Callable[[Any], str | None]  # returns a complaint, or None when the value is fine

_SECTIONS = {
    "scan": ScanConfig,
    "embed": EmbedConfig,
    "dedup": DedupConfig,
    "select": SelectConfig,
    "reshard": ReshardConfig,
    "spark": SparkConfig,
}


def _positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"must be an integer >= 1, got {value!r}"
    return None


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"must be a text, got {value!r}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {list(choices)}, got {value!r}"

    return check


def _list_of(check: Check) -> Check:
    def run(value: Any) -> str | None:
        if not isinstance(value, list):
            return f"must be a list, got {value!r}"
        complaints = [c for c in (check(item) for item in value) if c]
        return complaints[0] if complaints else None

    return run


def _integer(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, got {value!r}"
    return None


def _eps(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        return f"each eps must be a number between 0 and 1, got {value!r}"
    return None


def _keep(value: Any) -> str | None:
    if value in ("hard", "easy", "random") or (
        isinstance(value, str) and value.startswith("best:") and len(value) > 5
    ):
        return None
    return f"must be hard, easy, random or best:COLUMN, got {value!r}"


def _string_map(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be a mapping of Spark setting to value, got {value!r}"
    return None


CHECKS: dict[str, Check] = {
    "input": _text,
    "tables": _text,
    "root": _optional(_text),
    "format": _one_of("parquet", "delta"),
    "stages": _list_of(_one_of(*STAGES)),
    "scan.max_pixels": _positive_int,
    "embed.model": _text,
    "embed.heads": _optional(_list_of(_one_of("aesthetic", "nsfw", "clip_score"))),
    "embed.batch_size": _optional(_positive_int),
    "embed.weights_dir": _optional(_text),
    "embed.random_weights": _boolean,
    "embed.fast_decode": _boolean,
    "embed.vector_dtype": _one_of("float32", "float16"),
    "embed.precision": _one_of("fp16", "bf16", "fp32"),
    "embed.decode_threads": _optional(_positive_int),
    "embed.shards_per_commit": _positive_int,
    "dedup.exact": _boolean,
    "dedup.phash": _boolean,
    "dedup.semantic": _one_of("auto", "on", "off"),
    "dedup.phash_distance": _optional(_positive_int),
    "dedup.semantic_eps": _list_of(_eps),
    "dedup.clusters": _optional(_positive_int),
    "dedup.keep": _keep,
    "select.where": _optional(_text),
    "select.sql": _optional(_text),
    "reshard.dest": _optional(_text),
    "reshard.samples_per_shard": _optional(_positive_int),
    "reshard.max_shard_bytes": _optional(_positive_int),
    "reshard.keys": _one_of("keep", "renumber"),
    "reshard.shuffle_seed": _optional(
        lambda v: None if isinstance(v, int) else "must be an integer"
    ),
    "reshard.skip_missing": _boolean,
    "spark.master": _optional(_text),
    "spark.conf": _string_map,
}


def load_config(path: str, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read and validate a pipeline config from a local path or URL."""
    import yaml

    from imgcurate.io import fs

    if not fs.exists(path):
        raise ConfigError(f"{path}: config file not found")
    with fs.open_binary(path) as handle:
        try:
            raw = yaml.safe_load(handle.read().decode("utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(raw, source=path, overrides=overrides)


def parse_config(
    raw: dict[str, Any], source: str = "config", overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    """Validate a config mapping and build a :class:`PipelineConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values")
    raw = _apply_overrides(raw, overrides or {})
    config = PipelineConfig()
    top_level = {f.name for f in fields(PipelineConfig)}
    for key, value in raw.items():
        _require_known(source, key, top_level)
        if key in _SECTIONS:
            setattr(config, key, _section(source, key, value))
        else:
            _check(source, key, value)
            setattr(config, key, value)
    _check_required(source, config)
    return config


def _apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if key:
            merged.setdefault(section, {})[key] = value
        else:
            merged[section] = value
    return merged


def _section(source: str, name: str, value: Any):
    cls = _SECTIONS[name]
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {name}: must be a mapping, got {value!r}")
    known = {f.name for f in fields(cls)}
    for key, item in value.items():
        _require_known(source, f"{name}.{key}", {f"{name}.{k}" for k in known})
        _check(source, f"{name}.{key}", item)
    if name == "select" and value.get("sql"):
        if value.get("where"):
            raise ConfigError(f"{source}: select: give either where or sql, not both")
        value = {**value, "where": None}
    if name == "spark" and "conf" in value:
        value = {**value, "conf": {str(k): str(v) for k, v in value["conf"].items()}}
    return cls(**value)


def _require_known(source: str, key: str, known: set[str]) -> None:
    if key in known:
        return
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{source}: {key}: unknown key{hint}; valid keys: {', '.join(sorted(known))}")


def _check(source: str, key: str, value: Any) -> None:
    complaint = CHECKS[key](value)
    if complaint:
        raise ConfigError(f"{source}: {key}: {complaint}")


def _check_required(source: str, config: PipelineConfig) -> None:
    if "scan" in config.stages and not config.input:
        raise ConfigError(f"{source}: input: required when the scan stage runs (a shard pattern)")
    if not config.tables:
        raise ConfigError(f"{source}: tables: required (the tables directory)")
    if "reshard" in config.stages and not config.reshard.dest:
        raise ConfigError(
            f"{source}: reshard.dest: required when the reshard stage runs "
            "(or remove reshard from stages)"
        )
    order = [s for s in STAGES if s in config.stages]
    if order != config.stages:
        config.stages = order  # stages always run in pipeline order
