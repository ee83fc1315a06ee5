"""One crawl shard, from fetched pages to the pairs and pages tables plus stats.

A shard is either one WARC file or one group of seed hosts crawled
breadth-first. Both paths feed the same `PageRecorder`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from urllib.parse import urlsplit

import pyarrow as pa
from fastwarc.warc import ArchiveIterator, WarcRecordType
from w3lib.encoding import (
    html_body_declared_encoding,
    html_to_unicode,
    http_content_type_encoding,
    read_bom,
    resolve_encoding,
)
from w3lib.url import canonicalize_url

from webli import schemas
from webli.pipeline.config import CrawlConfig
from webli.stages.crawl.extract import parse_page
from webli.stages.crawl.fetch import HTML_TYPES, Fetcher, FetchResult
from webli.stages.crawl.langid import identify_languages
from webli.stages.crawl.pairs import boilerplate_set, page_pairs

log = logging.getLogger(__name__)


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str | bytes]:
    """(charset, document) with the charset from the BOM, HTTP header or <meta>, else UTF-8.

    A UTF-8 document is returned as bytes: lexbor parses UTF-8 itself, faster
    than a Python decode, and replaces bad bytes with U+FFFD as decoding would.
    """
    bom_charset, bom = read_bom(body)
    charset = bom_charset or http_content_type_encoding(content_type) or html_body_declared_encoding(body)
    charset = resolve_encoding(charset) if charset else "utf-8"
    if charset in (None, "utf-8", "ascii"):
        return "utf-8", body[len(bom or b""):]
    return html_to_unicode(content_type, body)


@dataclass
class PageRecorder:
    """Accumulates the pairs and pages of one shard, deduplicating pairs within it."""

    config: CrawlConfig
    robots_check: object | None = None  # callable(url) -> bool for image URLs, when crawling live
    pair_rows: dict[str, list] = field(default_factory=lambda: {n: [] for n in schemas.CRAWL_PAIRS.names})
    page_rows: dict[str, list] = field(default_factory=lambda: {n: [] for n in schemas.CRAWL_PAGES.names})
    drops: Counter = field(default_factory=Counter)
    page_outcomes: Counter = field(default_factory=Counter)
    candidates: int = 0
    seen_uids: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.boilerplate = boilerplate_set(self.config.alt)

    def refused(self, result: FetchResult, depth: int | None = None) -> None:
        """Record a page that was not parsed, with its reason."""
        self.page_outcomes[result.reason or "unknown"] += 1
        self._page_row(result, depth, "refused", result.reason, None, 0, 0)

    def parsed(self, result: FetchResult, depth: int | None = None, with_links: bool = False) -> list[str]:
        """Extract and record the pairs of an HTML page; returns its links when asked."""
        charset, html = decode_html(result.body, result.content_type)
        page = parse_page(html, result.url, with_links=with_links)
        kept = page_pairs(page, self.config.alt, self.boilerplate, self.seen_uids, self.drops)
        kept = self._drop_robots_disallowed_images(kept)
        self.candidates += len(page.images)
        languages = identify_languages([alt for _, _, alt in kept])
        for (uid, url, alt), (language, score) in zip(kept, languages):
            self._pair_row(uid, url, alt, result, page.title, page.html_lang, language, score)
        self.page_outcomes["parsed"] += 1
        self._page_row(result, depth, "parsed", None, charset, len(page.images), len(kept))
        return [] if page.nofollow else page.links

    def _drop_robots_disallowed_images(self, kept: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        if self.robots_check is None:
            return kept
        allowed = [pair for pair in kept if self.robots_check(pair[1])]
        for uid, _, _ in set(kept) - set(allowed):
            self.seen_uids.discard(uid)
        self.drops["image_robots_disallowed"] += len(kept) - len(allowed)
        return allowed

    def _pair_row(self, uid, url, alt, result, title, html_lang, language, score) -> None:
        row = self.pair_rows
        for name, value in (("uid", uid), ("url", url), ("alt", alt), ("page_url", result.url),
                            ("page_title", title), ("html_lang", html_lang), ("language", language),
                            ("language_score", score), ("fetch_time", result.fetch_time)):
            row[name].append(value)

    def _page_row(self, result, depth, status, reason, charset, images, pairs) -> None:
        row = self.page_rows
        for name, value in (("url", result.url), ("depth", depth), ("http_status", result.status),
                            ("content_type", result.content_type), ("charset", charset),
                            ("bytes", len(result.body) if result.body is not None else None),
                            ("images", images), ("pairs", pairs), ("status", status), ("reason", reason),
                            ("fetch_time", result.fetch_time)):
            row[name].append(value)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        """The shard's pairs and pages tables, conformed to their schemas."""
        pairs = schemas.conform(pa.table(self.pair_rows, schema=schemas.CRAWL_PAIRS), schemas.CRAWL_PAIRS)
        pages = schemas.conform(pa.table(self.page_rows, schema=schemas.CRAWL_PAGES), schemas.CRAWL_PAGES)
        return pairs, pages

    def stats(self, started: float) -> dict:
        """Stats vocabulary: image candidates in, pairs forwarded, drops by reason; pages by outcome."""
        return {
            "stage": "crawl",
            "total": self.candidates,
            "forwarded": len(self.pair_rows["uid"]),
            "dropped_by_reason": dict(sorted(self.drops.items())),
            "pages": {"total": sum(self.page_outcomes.values()), "parsed": self.page_outcomes["parsed"],
                      "refused_by_reason": {k: v for k, v in sorted(self.page_outcomes.items()) if k != "parsed"}},
            "duration_s": round(time.time() - started, 3),
        }


# --- WARC input --------------------------------------------------------------

def warc_responses(stream) -> Iterator[FetchResult]:
    """HTTP responses stored in a WARC stream (gzip or not, Common Crawl's layout).

    The target URI may be wrapped in <> (wget follows the WARC 1.0 draft's examples).
    """
    for record in ArchiveIterator(stream, record_types=WarcRecordType.response, parse_http=True):
        http = record.http_headers
        result = FetchResult(
            url=record.headers.get("WARC-Target-URI", "").strip().strip("<>"),
            status=http.status_code if http else None, content_type=http.get("Content-Type") if http else None,
            fetch_time=record.record_date.astimezone(UTC) if record.record_date else None)
        if result.media_type in HTML_TYPES:  # other payloads are skipped unread
            result.body = record.reader.read()
        yield result


def record_warc_response(recorder: PageRecorder, result: FetchResult) -> None:
    """Parse a stored response if it is an HTML page with status 200, else count why not."""
    if result.status != 200:
        result.reason = f"http_{result.status}" if result.status else "not_http"
    elif result.media_type not in HTML_TYPES:
        result.reason = "not_html"
    elif result.body is None or len(result.body) > recorder.config.max_page_bytes:
        result.reason, result.body = "too_large", None
    if result.reason:
        recorder.refused(result)
    else:
        recorder.parsed(result)


def crawl_warc(stream, config: CrawlConfig) -> tuple[pa.Table, pa.Table, dict]:
    """Pairs, pages and stats of every HTML response in one WARC stream."""
    started = time.time()
    recorder = PageRecorder(config)
    for result in warc_responses(stream):
        record_warc_response(recorder, result)
    pairs, pages = recorder.tables()
    return pairs, pages, recorder.stats(started)


# --- live crawl from seeds ---------------------------------------------------

def in_scope(url: str, seeds: list[str], scope: str) -> bool:
    """Is `url` inside the crawl: on a seed's host, or under a seed's folder."""
    if scope == "host":
        return urlsplit(url).netloc in {urlsplit(s).netloc for s in seeds}
    return any(url.startswith(s.rsplit("/", 1)[0] + "/") for s in seeds)


def url_identity(url: str) -> str:
    """The form under which two URLs are the same page (sorted query, no fragment)."""
    return canonicalize_url(url)


@dataclass
class Frontier:
    """Breadth-first frontier: URLs by depth level, each page at most once, up to max_pages."""

    max_pages: int
    seen: set[str] = field(default_factory=set)

    @property
    def has_room(self) -> bool:
        """Can another page still be admitted?"""
        return len(self.seen) < self.max_pages

    def admit(self, urls: Iterable[str]) -> list[str]:
        """The URLs not seen before, in order, within the page budget."""
        admitted = []
        for url in urls:
            if not self.has_room:
                break
            identity = url_identity(url)
            if identity in self.seen:
                continue
            self.seen.add(identity)
            admitted.append(url)
        return admitted


def crawl_seeds(seeds: list[str], config: CrawlConfig, fetcher: Fetcher | None = None
                ) -> tuple[pa.Table, pa.Table, dict]:
    """Crawl breadth-first from `seeds` within scope; pairs, pages and stats.

    Each depth level is fetched concurrently (politeness is enforced per host
    by the fetcher) and then processed in URL order, so the output does not
    depend on response timing.
    """
    started = time.time()
    fetcher = fetcher or Fetcher(config)
    robots_check = fetcher.robots.allowed if fetcher.robots is not None else None
    recorder = PageRecorder(config, robots_check=robots_check)
    frontier = Frontier(config.max_pages)
    level = frontier.admit(sorted(seeds))
    workers = config.max_concurrent_per_host * max(1, len({urlsplit(s).netloc for s in seeds}))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crawl") as pool:
        for depth in range(config.max_depth + 1):
            if not level:
                break
            results = sorted(pool.map(fetcher.get, level), key=lambda r: r.url)
            links = []
            for result in results:
                # links are only worth extracting while they can still be admitted
                wants_links = depth < config.max_depth and frontier.has_room
                if result.reason:
                    recorder.refused(result, depth)
                else:
                    links += recorder.parsed(result, depth, with_links=wants_links)
            level = frontier.admit(sorted(u for u in set(links) if in_scope(u, seeds, config.scope)))
            log.info("crawl %s: depth %d done, %d pages, %d pairs so far, %d pages next",
                     urlsplit(seeds[0]).netloc, depth, sum(recorder.page_outcomes.values()),
                     len(recorder.pair_rows["uid"]), len(level))
    pairs, pages = recorder.tables()
    return pairs, pages, recorder.stats(started)
