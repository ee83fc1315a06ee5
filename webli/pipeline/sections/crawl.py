"""crawl: where pairs come from and which alt texts are kept."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from webli.pipeline.sections.base import Section

DEFAULT_USER_AGENT = "webli-builder/0.1 (+https://github.com/webli-builder/webli-builder)"
DEFAULT_BOILERPLATE_ALTS = [
    "icon", "logo", "image", "img", "picture", "photo", "pic", "note", "tip", "warning", "caution",
    "important", "prev", "previous", "next", "up", "home", "top", "back", "banner", "spacer",
    "placeholder", "thumbnail", "avatar", "button", "arrow", "bullet", "blank", "loading", "untitled",
    "screenshot", "figure", "diagram", "alt", "null", "none", "n/a",
]


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
    alt: AltFilterConfig = Field(default_factory=AltFilterConfig)

    @field_validator("seeds")
    @classmethod
    def _seeds_are_http(cls, seeds: list[str]) -> list[str]:
        bad = [s for s in seeds if not s.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"seeds must be http(s) URLs, got {bad[:3]}")
        return seeds
