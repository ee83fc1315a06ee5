"""Run configuration: one YAML file, validated at start, overridable from the CLI.

Every section forbids unknown keys, so a typo is an error that names the key
and lists the keys that exist, instead of a setting silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from webli.pipeline.sections.base import Section
from webli.pipeline.sections.card import CardConfig
from webli.pipeline.sections.cluster import ClusterConfig
from webli.pipeline.sections.crawl import DEFAULT_BOILERPLATE_ALTS, DEFAULT_USER_AGENT, AltFilterConfig, CrawlConfig
from webli.pipeline.sections.dedup import DedupConfig, EvalSetConfig
from webli.pipeline.sections.download import DownloadConfig
from webli.pipeline.sections.ocr import OcrConfig
from webli.pipeline.sections.score import ScoreConfig
from webli.pipeline.sections.select import SelectConfig
from webli.pipeline.sections.train import TrainConfig

__all__ = ["AltFilterConfig", "CardConfig", "ClusterConfig", "Config", "ConfigError", "CrawlConfig",
           "DEFAULT_BOILERPLATE_ALTS", "DEFAULT_USER_AGENT", "DedupConfig", "DownloadConfig", "EvalSetConfig",
           "OcrConfig", "ScoreConfig", "Section", "SelectConfig", "TrainConfig", "apply_overrides",
           "config_to_yaml", "load_config", "validate_config"]

class Config(Section):
    """A whole run."""

    output: str = Field(..., description="output root: a local path or an fsspec URL")
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    ocr: OcrConfig = Field(default_factory=OcrConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @model_validator(mode="after")
    def _download_sizes_consistent(self) -> Config:
        if self.download.large_copy_size and self.download.large_copy_size < self.download.image_size:
            raise ValueError("download.large_copy_size must be 0 or at least download.image_size")
        return self


class ConfigError(ValueError):
    """The configuration is invalid; the message names each bad key."""


def _section_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The config section class at a validation error's location (list indices skipped)."""
    section: type[BaseModel] | None = model
    for part in path:
        if isinstance(part, int) or section is None:
            continue
        field = section.model_fields.get(str(part))
        annotation = field.annotation if field else None
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        section = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return section


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        section = _section_at(model, error["loc"][:-1])
        known = sorted(section.model_fields) if section else []
        return f"{location}: unknown key; expected one of {known}"
    if error["type"] == "missing":
        return f"{location}: required key is missing"
    return f"{location}: {error['msg']} (got {error.get('input')!r})"


def validate_config(raw: dict[str, Any]) -> Config:
    """Validate a config mapping, raising ConfigError with one line per bad key."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        lines = [_describe(e, Config) for e in err.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """'crawl.max_pages=10' -> (['crawl', 'max_pages'], 10); the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like section.key=value")
    dotted, value = assignment.split("=", 1)
    return dotted.strip().split("."), yaml.safe_load(value)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply 'a.b=value' overrides to a raw config mapping (a copy is returned)."""
    merged = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for assignment in overrides:
        path, value = parse_override(assignment)
        node = merged
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {assignment!r}: {part} is not a section")
        node[path[-1]] = value
    return merged


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read, override and validate a YAML config file."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    return validate_config(apply_overrides(raw, list(overrides)))


def config_to_yaml(config: Config) -> str:
    """The resolved config as YAML (what is saved under the output root)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
