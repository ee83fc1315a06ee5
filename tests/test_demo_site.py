"""Tests for the demo site generator and the loopback demo server."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import struct
import threading
import time
import unicodedata
import urllib.error
import urllib.request
import urllib.robotparser
from collections import deque
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from PIL import Image

from webli.demo import server as demo_server
from webli.demo.server import ROUTES, SiteServer
from webli.demo.site import build_demo_site

MAX_SITE_BYTES = 10 * 1024 * 1024


# --------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> tuple[Path, dict]:
    """The demo site built once (seed 0) for the whole module."""
    root = tmp_path_factory.mktemp("site")
    return root, build_demo_site(root, seed=0)


@pytest.fixture(scope="module")
def site_root(built_site) -> Path:
    return built_site[0]


@pytest.fixture(scope="module")
def manifest(built_site) -> dict:
    return built_site[1]


@pytest.fixture(scope="module")
def server(site_root):
    """The demo site served on loopback with a short slow-route delay."""
    with SiteServer(site_root, slow_seconds=3.0) as running:
        yield running


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def script_of(text: str) -> set[str]:
    """Unicode script families used by the letters of `text`."""
    families = {"LATIN", "CYRILLIC", "GREEK", "ARABIC", "DEVANAGARI", "CJK", "HIRAGANA",
                "KATAKANA"}
    found = set()
    for char in text:
        if char.isalpha():
            first_word = unicodedata.name(char, "?").split()[0]
            if first_word in families:
                found.add(first_word)
    return found


class PageParser(HTMLParser):
    """Collects what matters for images and links from one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.html_attrs: dict[str, str | None] = {}
        self.base_href: str | None = None
        self.imgs: list[dict[str, str | None]] = []
        self.sources: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []
        self.meta: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "html":
            self.html_attrs = attributes
        elif tag == "base":
            self.base_href = attributes.get("href")
        elif tag == "img":
            self.imgs.append(attributes)
        elif tag == "source":
            self.sources.append(attributes)
        elif tag == "a" and attributes.get("href") is not None:
            self.hrefs.append(attributes["href"])
        elif tag == "meta":
            self.meta.append(attributes)


def parse_page(site_root: Path, page: dict) -> PageParser:
    """Parse a generated page, decoding it with its true charset."""
    raw = (site_root / page["path"].lstrip("/")).read_bytes()
    parser = PageParser()
    parser.feed(raw.decode(page["charset"]))
    return parser


def page_urls(parser: PageParser) -> list[str]:
    """Every URL-valued attribute on the page (links, src, srcset, data-*)."""
    urls = list(parser.hrefs)
    for element in parser.imgs + parser.sources:
        for name, value in element.items():
            if value is None:
                continue
            if name in ("src", "data-src", "data-lazy-src"):
                urls.append(value)
            elif name in ("srcset", "data-srcset"):
                urls += [item.split()[0] for item in value.split(",") if item.strip()]
    return urls


def fetch(url: str, timeout: float = 5.0) -> tuple[int, http.client.HTTPMessage, bytes]:
    """GET `url`; (status, headers, body), HTTP errors included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Surface redirects as HTTPError instead of following them."""

    def redirect_request(self, *args, **kwargs):
        return None


def first_hop(url: str) -> tuple[int, str | None]:
    """Status and Location of a single request, redirects not followed."""
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.headers.get("Location")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location")


# --------------------------------------------------------------------------
# The generated site


def test_build_is_deterministic(site_root, tmp_path):
    second = tmp_path / "again"
    build_demo_site(second, seed=0)
    assert file_hashes(second) == file_hashes(site_root)


def test_other_seed_keeps_structure_but_changes_bytes(site_root, manifest, tmp_path):
    other = build_demo_site(tmp_path / "seed1", seed=1)
    assert [page["path"] for page in other["pages"]] == [p["path"] for p in manifest["pages"]]
    assert other["files"] == manifest["files"]
    assert file_hashes(tmp_path / "seed1") != file_hashes(site_root)


def test_site_is_small(site_root):
    total = sum(path.stat().st_size for path in site_root.rglob("*") if path.is_file())
    assert total < MAX_SITE_BYTES


def test_manifest_file_matches_return_value(site_root, manifest):
    on_disk = json.loads((site_root / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(manifest))


def test_every_listed_file_exists(site_root, manifest):
    for path in manifest["files"]:
        assert (site_root / path.lstrip("/")).is_file(), path


def test_alt_texts_cover_six_languages_and_four_scripts(manifest):
    described = [p for p in manifest["placements"] if p["alt"] and p["alt_lang"]]
    languages = {p["alt_lang"] for p in described}
    assert {"en", "de", "fr", "ru", "el", "ar", "hi"} <= languages
    scripts = set().union(*(script_of(p["alt"]) for p in described))
    assert {"LATIN", "CYRILLIC", "GREEK", "ARABIC", "DEVANAGARI"} <= scripts
    assert len(manifest["languages"]) >= 6 and len(manifest["scripts"]) >= 4


def test_text_images_record_text_in_four_scripts(manifest):
    text_images = [image for image in manifest["images"] if image["kind"] == "text"]
    assert all(image["text"] for image in text_images)
    scripts = set().union(*(script_of(image["text"]) for image in text_images))
    assert {"LATIN", "CYRILLIC", "GREEK", "ARABIC", "DEVANAGARI"} <= scripts
    assert {image["style"] for image in text_images} >= {"sign", "banner", "screenshot"}


def test_images_match_manifest(site_root, manifest):
    kinds = set()
    for image in manifest["images"]:
        kinds.add(image["kind"])
        data = (site_root / image["path"].lstrip("/")).read_bytes()
        assert len(data) == image["bytes"], image["path"]
        if image["format"] == "SVG":
            assert b"<svg" in data
            continue
        with Image.open(io.BytesIO(data)) as decoded:
            assert decoded.format == image["format"], image["path"]
            assert decoded.size == (image["width"], image["height"]), image["path"]
    assert {"photo", "text", "icon", "pixel", "placeholder", "vector"} <= kinds
    formats = {image["format"] for image in manifest["images"]}
    assert {"JPEG", "PNG", "WEBP", "GIF", "SVG"} <= formats


def test_icons_are_16px_with_junk_alts(manifest):
    icons = {image["path"] for image in manifest["images"] if image["kind"] == "icon"}
    assert all(image["width"] == image["height"] == 16
               for image in manifest["images"] if image["kind"] == "icon")
    icon_alts = {p["alt"] for p in manifest["placements"] if p["url"] in icons}
    assert {"icon", "logo", "prev", "next", "note"} <= icon_alts


def test_same_photo_has_many_translations_and_sizes(manifest):
    by_photo: dict[str, set] = {}
    sizes: dict[str, set] = {}
    for placement in manifest["placements"]:
        url = placement["url"] or ""
        if url.startswith("/img/photos/") and placement["alt_lang"]:
            name, width = url.rsplit("/", 1)[1].rsplit(".", 1)[0].rsplit("-", 1)
            by_photo.setdefault(name, set()).add((placement["alt_lang"], placement["alt"]))
            sizes.setdefault(name, set()).add(width)
    assert max(len({lang for lang, _ in alts}) for alts in by_photo.values()) >= 6
    assert any(len(widths) >= 2 for widths in sizes.values())


def test_manifest_alts_match_the_html(site_root, manifest):
    for page in manifest["pages"]:
        parsed = parse_page(site_root, page)
        expected = [(p["src"], p["alt"]) for p in manifest["placements"]
                    if p["page"] == page["path"]]
        assert [(img.get("src"), img.get("alt")) for img in parsed.imgs] == expected, page["path"]


def test_html_features_are_present(site_root, manifest):
    pages = {page["path"]: page for page in manifest["pages"]}
    srcset = parse_page(site_root, pages["/features/srcset.html"])
    descriptors = " ".join(img.get("srcset") or "" for img in srcset.imgs)
    assert "320w" in descriptors and "640w" in descriptors
    assert "1x" in descriptors and "2x" in descriptors
    assert any(source.get("type") == "image/webp" for source in srcset.sources)

    lazy = parse_page(site_root, pages["/features/lazy.html"])
    assert any(img.get("data-src") and img["src"] == "/img/placeholder.gif" for img in lazy.imgs)

    base = parse_page(site_root, pages["/features/base.html"])
    assert base.base_href == "/sub/"
    resolved = {urljoin(base.base_href, img["src"]) for img in base.imgs}
    assert "/sub/photos/moon-320.jpg" in resolved

    raw_entities = (site_root / "features/entities.html").read_text(encoding="utf-8")
    for entity in ("&amp;", "&eacute;", "&#233;"):
        assert entity in raw_entities
    tags = {tag for placement in manifest["placements"] for tag in placement["tags"]}
    assert {"nfd", "whitespace", "pixel", "data-uri", "svg",
            "empty-alt", "no-alt", "long-alt", "filename-alt", "url-alt", "404",
            "duplicate", "robots-disallowed", "picture", "srcset-only"} <= tags
    nfd = next(p["alt"] for p in manifest["placements"] if "nfd" in p["tags"])
    assert nfd != unicodedata.normalize("NFC", nfd)
    assert any(len(p["alt"] or "") > 300 for p in manifest["placements"])
    pixel = next(img for img in parse_page(site_root, pages["/features/junk.html"]).imgs
                 if (img.get("src") or "").startswith("/img/px.gif"))
    assert pixel["width"] == "1" and pixel["height"] == "1"


def test_duplicate_image_and_alt_on_several_pages(manifest):
    pages_by_pair: dict[tuple, set] = {}
    for placement in manifest["placements"]:
        if "photo" in placement["tags"]:
            pages_by_pair.setdefault((placement["url"], placement["alt"]), set()).add(
                placement["page"])
    assert max(len(pages) for pages in pages_by_pair.values()) >= 3


def test_only_relative_or_loopback_urls(site_root, manifest):
    for page in manifest["pages"]:
        for url in page_urls(parse_page(site_root, page)):
            parts = urlsplit(url.strip())
            assert parts.scheme in ("", "data", "javascript", "mailto"), (page["path"], url)
            assert parts.netloc in ("", "127.0.0.1"), (page["path"], url)
    for page in manifest["pages"]:
        text = (site_root / page["path"].lstrip("/")).read_bytes().decode(page["charset"])
        assert ".invalid" not in text and "example.com" not in text


def test_link_graph_reaches_every_page_within_depth_three(site_root, manifest):
    pages = {page["path"]: page for page in manifest["pages"]}
    depths = {"/index.html": 0}
    queue = deque(["/index.html"])
    while queue:
        current = queue.popleft()
        parsed = parse_page(site_root, pages[current])
        base = parsed.base_href or current
        for href in parsed.hrefs:
            target = urlsplit(urljoin(base, href)).path
            target = target + "index.html" if target.endswith("/") else target
            if target in pages and target not in depths:
                depths[target] = depths[current] + 1
                queue.append(target)
    assert set(depths) == set(pages)
    assert max(depths.values()) == 3
    assert all(pages[path]["depth"] == depth for path, depth in depths.items())


def test_html_lang_present_on_some_pages_and_missing_on_others(site_root, manifest):
    declared = [p for p in manifest["pages"] if p["html_lang"]]
    missing = [p for p in manifest["pages"] if not p["html_lang"]]
    assert declared and missing
    for page in manifest["pages"]:
        html_attrs = parse_page(site_root, page).html_attrs
        assert html_attrs.get("lang") == page["html_lang"]
        if page["lang"] == "ar":
            assert html_attrs.get("dir") == "rtl"


def test_legacy_charsets(site_root, manifest):
    pages = {page["path"]: page for page in manifest["pages"]}
    cp1251 = (site_root / "legacy/ru-cp1251.html").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        cp1251.decode("utf-8")
    assert b'<meta charset="windows-1251">' in cp1251
    assert "Астронавт" in cp1251.decode("cp1251")

    latin1 = (site_root / "legacy/latin1.html").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        latin1.decode("utf-8")
    assert b"charset" not in latin1 and b"<html>" in latin1
    assert pages["/legacy/latin1.html"]["charset_declared_by"] == "http-header"
    assert manifest["http_headers"]["/legacy/latin1.html"]["Content-Type"].endswith(
        "charset=iso-8859-1")


def test_robots_txt_disallows_private(site_root, manifest):
    robots = (site_root / "robots.txt").read_text()
    assert "User-agent: *" in robots and "Disallow: /private/" in robots
    hub_links = next(p["links"] for p in manifest["pages"] if p["path"] == "/index.html")
    assert "/private/index.html" in hub_links
    private = [p for p in manifest["pages"] if p["robots_disallowed"]]
    assert private and all(p["path"].startswith("/private/") for p in private)


# --------------------------------------------------------------------------
# The server: static files


def test_server_serves_site_on_loopback(server):
    assert server.url.startswith("http://127.0.0.1:")
    status, headers, body = fetch(server.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"WebLI demo site" in body


@pytest.mark.parametrize("path, content_type", [
    ("/img/photos/coffee-600.webp", "image/webp"),
    ("/img/diagram.svg", "image/svg+xml"),
    ("/img/photos/astronaut-320.jpg", "image/jpeg"),
    ("/img/icons/logo.png", "image/png"),
    ("/img/px.gif", "image/gif"),
])
def test_server_mime_types(server, path, content_type):
    status, headers, _ = fetch(server.url + path)
    assert status == 200 and headers["Content-Type"] == content_type


def test_server_sends_charset_header_for_latin1_page(server):
    status, headers, body = fetch(server.url + "/legacy/latin1.html")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=iso-8859-1"
    assert "Grüße" in body.decode(headers.get_content_charset())
    _, utf8_headers, _ = fetch(server.url + "/en/index.html")
    assert utf8_headers["Content-Type"] == "text/html"


@pytest.mark.parametrize("path", ["/img/", "/img/photos/", "/_headers.json", "/en/missing.html"])
def test_server_hides_listings_and_private_files(server, path):
    assert fetch(server.url + path)[0] == 404


def test_server_access_log_records_paths(server):
    fetch(server.url + "/robots.txt?probe=1")
    assert "/robots.txt?probe=1" in server.access_log
    assert "/private/secret.html" not in server.access_log


def test_server_keeps_connections_alive(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for path in ("/robots.txt", "/index.html"):
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            assert response.status == 200 and response.version == 11
    finally:
        connection.close()


def test_robots_parser_blocks_private(server):
    robots = urllib.robotparser.RobotFileParser(server.url + "/robots.txt")
    robots.read()
    assert not robots.can_fetch("webli-bot", server.url + "/private/secret.html")
    assert robots.can_fetch("webli-bot", server.url + "/en/index.html")


# --------------------------------------------------------------------------
# The server: bad routes


def test_bad_index_links_every_route(server):
    status, _, body = fetch(server.url + "/bad/index.html")
    assert status == 200
    parsed = PageParser()
    parsed.feed(body.decode("utf-8"))
    referenced = set(parsed.hrefs) | {img["src"] for img in parsed.imgs}
    assert set(ROUTES) - {"/bad/index.html"} <= referenced
    assert all(img.get("alt") for img in parsed.imgs)


def test_every_route_is_documented():
    assert all(description for description in ROUTES.values())
    assert set(demo_server.ROUTE_HANDLERS) == set(ROUTES)


@pytest.mark.parametrize("path, status", [
    ("/bad/404", 404), ("/img/bad/404.jpg", 404), ("/bad/500", 500)])
def test_error_statuses(server, path, status):
    assert fetch(server.url + path)[0] == status


def test_slow_page_exceeds_client_timeout(server):
    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(server.url + "/bad/slow", timeout=0.3)
    assert time.monotonic() - started < 2


def test_slow_image_stalls_mid_body(server):
    with urllib.request.urlopen(server.url + "/img/bad/slow.jpg", timeout=0.3) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        with pytest.raises(TimeoutError):
            response.read()


def test_stop_interrupts_slow_route(site_root):
    slow_server = SiteServer(site_root, slow_seconds=60).start()
    outcome = {}

    def client():
        try:
            urllib.request.urlopen(slow_server.url + "/bad/slow", timeout=30).read()
            outcome["result"] = "answered"
        except Exception as error:  # any failure is fine: the server went away
            outcome["result"] = type(error).__name__

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 5
    while "/bad/slow" not in slow_server.access_log and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    slow_server.stop()
    thread.join(timeout=5)
    assert time.monotonic() - started < 2
    assert not thread.is_alive() and outcome["result"] != "answered"


def test_not_an_image(server):
    status, headers, body = fetch(server.url + "/img/bad/not-an-image.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert body.lstrip().startswith(b"<!DOCTYPE html>")
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(body))


def test_truncated_jpeg(server):
    _, _, body = fetch(server.url + "/img/bad/truncated.jpg")
    assert body.startswith(b"\xff\xd8") and not body.endswith(b"\xff\xd9")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(body)).load()


def test_control_jpeg_decodes(server):
    _, headers, body = fetch(server.url + "/img/bad/control.jpg")
    with Image.open(io.BytesIO(body)) as image:
        image.load()
        assert image.width == 320


def test_decompression_bomb(server):
    status, headers, body = fetch(server.url + "/img/bad/bomb.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert len(body) < 1_000_000
    assert body[:8] == b"\x89PNG\r\n\x1a\n" and body[12:16] == b"IHDR"
    assert struct.unpack(">II", body[16:24]) == (30_000, 30_000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(body))


def test_redirect_loop(server):
    assert first_hop(server.url + "/bad/loop") == (302, "/bad/loop2")
    assert first_hop(server.url + "/bad/loop2") == (302, "/bad/loop")
    with pytest.raises(urllib.error.HTTPError, match="infinite loop"):
        urllib.request.urlopen(server.url + "/bad/loop", timeout=5)


@pytest.mark.parametrize("path", ["/bad/to-private", "/img/bad/to-private.jpg"])
def test_redirect_into_private(server, path):
    status, location = first_hop(server.url + path)
    assert status == 302 and location.startswith("/private/")


@pytest.mark.parametrize("path, header", [
    ("/img/bad/noai.jpg", "noai"),
    ("/img/bad/otherbot-noimageai.jpg", "otherbot: noimageai"),
])
def test_x_robots_tag_images(server, path, header):
    status, headers, body = fetch(server.url + path)
    assert status == 200 and headers["X-Robots-Tag"] == header
    Image.open(io.BytesIO(body)).load()


def test_invalid_utf8_page(server):
    status, headers, body = fetch(server.url + "/bad/invalid-utf8.html")
    assert status == 200 and headers.get_content_charset() == "utf-8"
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")
    assert b'alt="Un caf\xe9' in body


@pytest.mark.parametrize("path, has_length", [
    ("/bad/huge.html", True), ("/bad/huge-no-length.html", False)])
def test_huge_page(server, path, has_length):
    status, headers, body = fetch(server.url + path, timeout=10)
    assert status == 200
    assert len(body) >= 3 * 1024 * 1024
    assert (headers.get("Content-Length") is not None) == has_length
    if has_length:
        assert int(headers["Content-Length"]) == len(body)
    assert body.rstrip().endswith(b"</html>")


def test_text_plain_page(server):
    status, headers, body = fetch(server.url + "/bad/text-plain.html")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"<img" in body


@pytest.mark.parametrize("path", ["/bad/short-body.html", "/img/bad/short-body.jpg"])
def test_content_length_lies(server, path):
    with urllib.request.urlopen(server.url + path, timeout=5) as response:
        with pytest.raises(http.client.IncompleteRead):
            response.read()


def test_bad_routes_can_be_disabled(site_root):
    with SiteServer(site_root, bad_routes=False) as plain:
        assert fetch(plain.url + "/bad/loop")[0] == 404
        assert fetch(plain.url + "/index.html")[0] == 200
