"""robots.txt per origin (RFC 9309, parsed by Protego), shared by the crawler and the downloader.

How robots.txt itself is fetched is given by the caller, so the crawler uses
its polite urllib3 fetcher and the download stage its guarded urllib opener.
A 2xx robots.txt is obeyed; a 4xx allows everything; a 5xx or an unreachable
host disallows everything (RFC 9309 §2.3.1).
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import urlsplit

from protego import Protego

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 §2.5: parse at least 500 KiB

# (robots.txt URL) -> (HTTP status or None if unreachable, body or None)
RobotsLoader = Callable[[str], tuple[int | None, bytes | None]]


def user_agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against ('webli-builder/0.1 (...)' -> 'webli-builder')."""
    return user_agent.split("/", 1)[0].split()[0] if user_agent.strip() else "*"


def origin(url: str) -> str:
    """scheme://host[:port] of a URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def rules_from_response(status: int | None, body: bytes | None) -> Protego | bool:
    """Parsed rules for a 2xx answer; True (allow all) for 4xx; False (disallow all) otherwise."""
    if status is not None and 200 <= status < 300 and body is not None:
        return Protego.parse(body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace"))
    return status is not None and 400 <= status < 500


class RobotsCache:
    """Rules per origin, each robots.txt loaded once (thread-safe)."""

    def __init__(self, loader: RobotsLoader, agent: str):
        self.loader = loader
        self.agent = agent
        self._lock = threading.Lock()
        self._rules: dict[str, Protego | bool] = {}
        self._origin_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)

    def rules(self, url: str) -> Protego | bool:
        site = origin(url)
        with self._lock:
            lock = self._origin_locks[site]
        with lock:
            if site not in self._rules:
                self._rules[site] = rules_from_response(*self.loader(f"{site}/robots.txt"))
            return self._rules[site]

    def allowed(self, url: str) -> bool:
        """May `url` be fetched by this agent?"""
        rules = self.rules(url)
        return rules if isinstance(rules, bool) else rules.can_fetch(url, self.agent)

    def crawl_delay(self, url: str) -> float | None:
        """Crawl-delay for this agent on `url`'s site, once its rules are loaded."""
        rules = self._rules.get(origin(url))
        if isinstance(rules, Protego):
            delay = rules.crawl_delay(self.agent)
            return float(delay) if delay is not None else None
        return None


def urllib_robots_loader(opener: urllib.request.OpenerDirector, user_agent: str,
                         timeout: float) -> RobotsLoader:
    """A RobotsLoader that fetches with an urllib opener (the download stage's guarded one)."""
    def load(url: str) -> tuple[int | None, bytes | None]:
        request = urllib.request.Request(url, headers={"User-Agent": user_agent})
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.read(ROBOTS_MAX_BYTES)
        except urllib.error.HTTPError as err:
            return err.code, None
        except (urllib.error.URLError, OSError, ValueError):
            return None, None

    return load
