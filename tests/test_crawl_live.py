"""crawl_seeds against the demo site on 127.0.0.1 (no Dask): robots, politeness, bad pages."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webli.pipeline.config import CrawlConfig
from webli.stages.crawl.fetch import Fetcher, HostLimiter
from webli.stages.crawl.shard import crawl_seeds


def crawl_config(**overrides) -> CrawlConfig:
    settings = dict(allow_private_networks=True, politeness_delay=0, max_concurrent_per_host=4, timeout=1.5,
                    max_depth=4, max_page_bytes=1_000_000)
    return CrawlConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def crawled(demo_server):
    demo_server.clear_access_log()
    pairs, pages, stats = crawl_seeds([demo_server.url + "/index.html"], crawl_config())
    return pairs.to_pylist(), pages.to_pylist(), stats, list(demo_server.access_log)


def test_robots_disallowed_folder_is_never_fetched(crawled):
    _, pages, stats, access_log = crawled
    assert access_log[0] == "/robots.txt"
    assert not [path for path in access_log if path.startswith("/private/")]
    refused = {p["url"].split("/", 3)[3]: p["reason"] for p in pages if p["status"] == "refused"}
    assert refused["private/index.html"] == "robots_disallowed"
    assert stats["pages"]["refused_by_reason"]["robots_disallowed"] >= 1


def test_bad_pages_are_refused_with_reasons(crawled):
    _, pages, _, _ = crawled
    reasons = {p["url"].rsplit("/", 1)[1]: p["reason"] for p in pages if p["status"] == "refused"}
    assert reasons["404"] == "http_404"
    assert reasons["500"] == "http_500"
    assert reasons["slow"] == "timeout"
    assert reasons["loop"] == "too_many_redirects" or reasons.get("loop2") == "too_many_redirects"
    assert reasons["huge.html"] == "too_large" and reasons["huge-no-length.html"] == "too_large"
    assert reasons["text-plain.html"] == "not_html"
    assert reasons["short-body.html"] == "truncated"
    assert reasons["secret.html"] == "robots_disallowed"  # reached through /bad/to-private's redirect


def test_invalid_utf8_page_is_parsed_and_its_broken_alt_dropped(crawled):
    pairs, pages, stats, _ = crawled
    page = next(p for p in pages if p["url"].endswith("/bad/invalid-utf8.html"))
    assert page["status"] == "parsed"
    assert stats["dropped_by_reason"]["alt_bad_encoding"] >= 1
    assert not [r for r in pairs if "\ufffd" in r["alt"]]


def test_pairs_cover_languages_and_scripts(crawled, demo_site):
    pairs, _, stats, _ = crawled
    languages = {r["language"] for r in pairs}
    assert {"en", "de", "fr", "ru", "ar", "el", "hi", "ja"} <= languages
    assert stats["total"] == stats["forwarded"] + sum(stats["dropped_by_reason"].values())
    for reason in ("alt_empty", "alt_boilerplate", "alt_file_name", "alt_url", "duplicate_pair", "data_uri"):
        assert stats["dropped_by_reason"].get(reason, 0) >= 1, reason


def test_charset_from_http_header_and_meta(crawled):
    _, pages, _, _ = crawled
    charsets = {p["charset"] for p in pages if p["status"] == "parsed"}
    assert {"cp1251", "cp1252"} <= charsets  # windows-1251 via <meta>, ISO-8859-1 via Content-Type


def test_pairs_are_unique_and_urls_absolute(crawled):
    pairs, _, _, _ = crawled
    assert len({r["uid"] for r in pairs}) == len(pairs)
    assert all(r["url"].startswith("http://127.0.0.1:") for r in pairs)


def test_max_pages_and_depth_bound_the_crawl(demo_server):
    _, pages, _ = crawl_seeds([demo_server.url + "/index.html"], crawl_config(max_pages=5))
    assert pages.num_rows == 5
    _, pages, _ = crawl_seeds([demo_server.url + "/index.html"], crawl_config(max_depth=0))
    assert pages.column("url").to_pylist() == [demo_server.url + "/index.html"]


def test_same_site_same_output(demo_server):
    first = crawl_seeds([demo_server.url + "/index.html"], crawl_config(max_depth=1))[0]
    second = crawl_seeds([demo_server.url + "/index.html"], crawl_config(max_depth=1))[0]
    assert first.drop_columns(["fetch_time"]).equals(second.drop_columns(["fetch_time"]))


def test_loopback_refused_without_allow_private(demo_server):
    _, pages, stats = crawl_seeds([demo_server.url + "/index.html"], crawl_config(allow_private_networks=False))
    assert pages.column("reason").to_pylist() == ["private_address"]


def test_host_limiter_spaces_requests():
    limiter = HostLimiter(max_concurrent=1, delay=0.05)
    started = time.monotonic()
    for _ in range(4):
        with limiter.slot("h"):
            pass
    assert time.monotonic() - started >= 0.15


def test_crawl_delay_is_read_from_robots(tmp_path):
    from webli.demo.server import SiteServer

    (tmp_path / "robots.txt").write_text("User-agent: webli-builder\nCrawl-delay: 2\nDisallow: /x/\n")
    (tmp_path / "index.html").write_text("<html></html>")
    with SiteServer(tmp_path, bad_routes=False) as server:
        fetcher = Fetcher(crawl_config())
        assert fetcher.refusal(server.url + "/x/a.html") == "robots_disallowed"
        assert fetcher.robots.crawl_delay(server.url + "/index.html") == 2.0


class SlowBodyHandler(BaseHTTPRequestHandler):
    """/big.bin: a non-HTML body whose second part arrives late; anything else: a small HTML page."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
        if self.path == "/big.bin":
            body, content_type = b"x" * 200_000, "application/octet-stream"
        else:
            body, content_type = b"<html><body>page</body></html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:1000])
        self.wfile.flush()
        if content_type != "text/html":
            time.sleep(0.3)  # the rest is still in flight when the client moves on
        self.wfile.write(body[1000:])


def test_a_page_after_an_unread_body_is_not_read_from_the_same_connection():
    """A refused response (here not HTML) leaves its body unread; the next request to the host must not
    read that body's tail as its own response (it did: a spurious "truncated")."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowBodyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        fetcher = Fetcher(crawl_config(max_concurrent_per_host=1, obey_robots=False))
        assert fetcher.get(url + "/big.bin").reason == "not_html"
        page = fetcher.get(url + "/page.html")
        assert page.reason is None and page.body == b"<html><body>page</body></html>"
    finally:
        server.shutdown()
        server.server_close()
