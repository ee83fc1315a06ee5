"""Run configuration: one YAML file, validated at start, overridable from the CLI.

Every section forbids unknown keys, so a typo is an error that names the key
and lists the keys that exist, instead of a setting silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_USER_AGENT = "webli-builder/0.1 (+https://github.com/webli-builder/webli-builder)"
DEFAULT_BOILERPLATE_ALTS = [
    "icon", "logo", "image", "img", "picture", "photo", "pic", "note", "tip", "warning", "caution",
    "important", "prev", "previous", "next", "up", "home", "top", "back", "banner", "spacer",
    "placeholder", "thumbnail", "avatar", "button", "arrow", "bullet", "blank", "loading", "untitled",
    "screenshot", "figure", "diagram", "alt", "null", "none", "n/a",
]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AltFilterConfig(Section):
    """Which alt texts the crawl keeps."""

    min_chars: int = Field(3, ge=1, description="shorter alt texts are dropped (alt_too_short)")
    max_chars: int = Field(512, ge=1, description="longer alt texts are dropped (alt_too_long)")
    boilerplate: list[str] = Field(default_factory=lambda: list(DEFAULT_BOILERPLATE_ALTS),
                                   description="alt texts dropped when equal to one of these, case-folded")


class CrawlConfig(Section):
    """Where pairs come from: seed URLs crawled breadth-first, or WARC files."""

    seeds: list[str] = Field(default_factory=list, description="start URLs (http or https)")
    seeds_file: str | None = Field(None, description="a text file with one seed URL per line")
    warc: list[str] = Field(default_factory=list, description="WARC paths or globs (.warc, .warc.gz), local or fsspec")
    max_pages: int = Field(1000, ge=1, description="pages fetched per crawl shard (host)")
    max_depth: int = Field(3, ge=0, description="link hops from a seed")
    scope: Literal["host", "prefix"] = Field("host", description="follow links on the seed's host, or under its URL")
    allow_private_networks: bool = Field(False, description="allow loopback/private addresses (tests, intranets)")
    user_agent: str = Field(DEFAULT_USER_AGENT, description="User-Agent; its product token is matched in robots.txt")
    obey_robots: bool = Field(True, description="obey robots.txt (RFC 9309), Crawl-delay included")
    politeness_delay: float = Field(1.0, ge=0, description="seconds between two requests to one host (at least)")
    max_concurrent_per_host: int = Field(2, ge=1, description="requests in flight to one host")
    timeout: float = Field(10.0, gt=0, description="seconds for a whole page fetch")
    max_page_bytes: int = Field(2_000_000, ge=1024, description="larger pages are refused (too_large)")
    max_redirects: int = Field(5, ge=0, description="redirect hops followed, each re-checked")
    pages_per_shard: int = Field(10_000, ge=1, description="WARC input: pages per crawl shard at most")
    alt: AltFilterConfig = Field(default_factory=AltFilterConfig)

    @field_validator("seeds")
    @classmethod
    def _seeds_are_http(cls, seeds: list[str]) -> list[str]:
        bad = [s for s in seeds if not s.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"seeds must be http(s) URLs, got {bad[:3]}")
        return seeds


class DownloadConfig(Section):
    """How images are fetched and resized (img2dataset's options)."""

    image_size: int = Field(256, ge=8, description="resize target in pixels")
    resize_mode: Literal["no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"] = "border"
    min_image_size: int = Field(32, ge=0, description="images whose smaller side is below are dropped (too_small)")
    max_aspect_ratio: float = Field(5.0, ge=1, description="images more elongated are dropped (aspect_ratio)")
    max_image_pixels: int = Field(60_000_000, ge=1, description="declared pixels above are refused before decoding")
    large_copy_size: int = Field(0, ge=0, description="also keep a copy with this longest side (0: off), for OCR")
    encode_format: Literal["jpg", "png", "webp"] = "jpg"
    encode_quality: int = Field(95, ge=0, le=100)
    thread_count: int = Field(32, ge=1, description="concurrent downloads per task")
    processes: int | None = Field(None, ge=1, description="worker processes (default: cluster.workers)")
    timeout: float = Field(10.0, gt=0, description="seconds per image request")
    retries: int = Field(0, ge=0, description="retries per image")
    max_redirects: int = Field(5, ge=0)
    shard_size: int = Field(10_000, ge=1, description="samples per download shard")
    obey_robots: bool = Field(True, description="check image URLs and redirect targets against robots.txt")
    disallowed_header_directives: list[str] = Field(
        default_factory=lambda: ["noai", "noimageai", "noindex", "noimageindex"],
        description="X-Robots-Tag directives that forbid using an image")


class ClusterConfig(Section):
    """The Dask cluster: a LocalCluster unless a scheduler address is given."""

    scheduler: str | None = Field(None, description="tcp://HOST:PORT of an existing scheduler")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    memory_limit: str = Field("auto", description="per LocalCluster worker, e.g. '4GiB'")
    task_retries: int = Field(2, ge=0, description="times a failed shard task is retried")
    dashboard: bool = Field(False, description="serve the Dask dashboard on 127.0.0.1:8787")


class Config(Section):
    """A whole run."""

    output: str = Field(..., description="output root: a local path or an fsspec URL")
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @model_validator(mode="after")
    def _download_sizes_consistent(self) -> Config:
        if self.download.large_copy_size and self.download.large_copy_size < self.download.image_size:
            raise ValueError("download.large_copy_size must be 0 or at least download.image_size")
        return self


class ConfigError(ValueError):
    """The configuration is invalid; the message names each bad key."""


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        section: type[BaseModel] | None = model
        for part in error["loc"][:-1]:
            field = section.model_fields.get(str(part)) if section else None
            section = field.annotation if field and isinstance(field.annotation, type) else None
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
