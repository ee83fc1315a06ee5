"""Polite, guarded page fetching: robots.txt, per-host limits, bounded redirects and sizes."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import urllib3

from webli.pipeline.config import CrawlConfig
from webli.stages.crawl.extract import absolute_url
from webli.stages.netguard import guarded_pool_manager, is_blocked_error, literal_host_drop_reason, scheme_drop_reason
from webli.stages.robots import ROBOTS_MAX_BYTES, RobotsCache, user_agent_token

HTML_TYPES = ("text/html", "application/xhtml+xml")
READ_CHUNK = 64 * 1024


@dataclass
class FetchResult:
    """One fetch: the final URL, and either a body or the reason it was refused."""

    url: str
    status: int | None = None
    content_type: str | None = None
    body: bytes | None = None
    reason: str | None = None
    fetch_time: datetime | None = None

    @property
    def media_type(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()


class HostLimiter:
    """Per-host politeness: at most N requests in flight and a minimum delay between starts."""

    def __init__(self, max_concurrent: int, delay: float):
        self.max_concurrent = max_concurrent
        self.delay = delay
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(self.max_concurrent))
        self._next_start: dict[str, float] = defaultdict(float)

    @contextmanager
    def slot(self, host: str, delay: float | None = None) -> Iterator[None]:
        """Wait for a turn to request `host`; `delay` overrides the default (Crawl-delay)."""
        with self._lock:
            semaphore = self._slots[host]
        with semaphore:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next_start[host])
                self._next_start[host] = start + max(self.delay, delay or 0.0)
            time.sleep(max(0.0, start - now))
            yield


class Fetcher:
    """HTTP GET with the SSRF guard on every connection, robots.txt and politeness."""

    def __init__(self, config: CrawlConfig):
        self.config = config
        self.limiter = HostLimiter(config.max_concurrent_per_host, config.politeness_delay)
        self.pool = guarded_pool_manager(
            config.allow_private_networks, num_pools=64, maxsize=config.max_concurrent_per_host,
            headers={"User-Agent": config.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"},
            retries=False, block=False)
        self.robots = RobotsCache(self.load_robots, user_agent_token(config.user_agent)) \
            if config.obey_robots else None

    def load_robots(self, url: str) -> tuple[int | None, bytes | None]:
        """Fetch a robots.txt (redirects followed, size capped): (status or None, body or None)."""
        result = self.get(url, accept=(), max_bytes=ROBOTS_MAX_BYTES, check_robots=False)
        if result.reason and result.reason.startswith("http_"):
            return result.status, None
        return (result.status, result.body) if result.body is not None else (None, None)

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be requested (scheme, literal private address, robots), or None."""
        reason = scheme_drop_reason(url) or literal_host_drop_reason(url, self.config.allow_private_networks)
        if reason:
            return {"scheme": "non_http_scheme", "data_uri": "non_http_scheme"}.get(reason, reason)
        if self.robots is not None and not self.robots.allowed(url):
            return "robots_disallowed"
        return None

    def get(self, url: str, accept: tuple[str, ...] = HTML_TYPES, max_bytes: int | None = None,
            check_robots: bool = True) -> FetchResult:
        """Fetch `url`, following up to max_redirects redirects, each one re-checked."""
        max_bytes = max_bytes or self.config.max_page_bytes
        for _ in range(self.config.max_redirects + 1):
            reason = self.refusal(url) if check_robots else scheme_drop_reason(url)
            if reason:
                return FetchResult(url, reason=reason)
            result = self._get_once(url, accept, max_bytes)
            if result.reason != "redirect":
                return result
            url = result.body.decode()
        return FetchResult(url, reason="too_many_redirects")

    def _get_once(self, url: str, accept: tuple[str, ...], max_bytes: int) -> FetchResult:
        delay = self.robots.crawl_delay(url) if self.robots is not None else None
        deadline = time.monotonic() + self.config.timeout
        with self.limiter.slot(urlsplit(url).netloc, delay):
            try:
                return self._request(url, accept, max_bytes, deadline)
            except Exception as err:  # noqa: BLE001 - every network failure is a counted reason
                return FetchResult(url, reason=fetch_error_reason(err))

    def _request(self, url: str, accept: tuple[str, ...], max_bytes: int, deadline: float) -> FetchResult:
        timeout = urllib3.Timeout(connect=self.config.timeout, read=self.config.timeout)
        response = self.pool.request("GET", url, redirect=False, preload_content=False, timeout=timeout)
        try:
            result = FetchResult(url, status=response.status, content_type=response.headers.get("Content-Type"),
                                 fetch_time=datetime.now(UTC))
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                target = absolute_url(response.headers["Location"], url)
                result.reason, result.body = ("redirect", target.encode()) if target else ("bad_redirect", None)
            elif response.status >= 400:
                result.reason = f"http_{response.status}"
            elif accept and result.media_type not in accept:
                result.reason = "not_html"
            else:
                result.body, result.reason = read_capped(response, max_bytes, deadline)
            return result
        finally:
            if not response.isclosed():
                # The body was left unread (a redirect, an error page, a refused type or size) and its rest may
                # still be in flight: a reused connection would read it as the next response (a spurious
                # "truncated"), so this one is closed rather than kept alive.
                response.close()
            response.release_conn()


def read_capped(response, max_bytes: int, deadline: float) -> tuple[bytes | None, str | None]:
    """Read a body up to `max_bytes` before `deadline`: (body, None) or (None, reason)."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        return None, "too_large"
    chunks, size = [], 0
    for chunk in response.stream(READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            return None, "too_large"
        if time.monotonic() > deadline:
            return None, "timeout"
        chunks.append(chunk)
    return b"".join(chunks), None


def fetch_error_reason(error: BaseException) -> str:
    """Name a network failure: private_address, timeout, truncated, connection_error."""
    if is_blocked_error(error):
        return "private_address"
    text = f"{type(error).__name__} {error}".lower()
    if "timeout" in text or "timed out" in text:
        return "timeout"
    if "incomplete" in text or "protocol" in text or "contentlength" in text:
        return "truncated"
    return "connection_error"
