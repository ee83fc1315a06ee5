"""Loopback HTTP server for the demo site, with deliberately misbehaving routes.

    with SiteServer(site_dir) as server:
        urllib.request.urlopen(server.url + "/index.html")
        assert "/private/secret.html" not in server.access_log

Static files come from a directory (directory listings disabled). Files and
folders whose name starts with "_" or "." are never served; `_headers.json`
in the directory maps URL paths to extra response headers (the demo site
uses it to declare one page's charset only in Content-Type).

The routes in ROUTES exist in addition to the files, for testing how a
crawler copes with slow, broken, hostile or mislabelled responses.
`python -m webli.demo.server DIR` serves a directory from the shell.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import signal
import socket
import struct
import threading
import zlib
from functools import cache, partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
HEADERS_FILE_NAME = "_headers.json"
DEFAULT_SLOW_SECONDS = 5.0
DEFAULT_HUGE_PAGE_BYTES = 3 * 1024 * 1024
BOMB_SIDE = 30_000  # declared width and height of /img/bad/bomb.png

ROUTES: dict[str, str] = {
    "/bad/index.html": "HTML page linking every bad page route and embedding every bad image route",
    "/bad/404": "404 Not Found (HTML error body)",
    "/bad/500": "500 Internal Server Error",
    "/bad/slow": "sleeps slow_seconds (default 5) before sending anything; interrupted on stop()",
    "/img/bad/slow.jpg": "sends headers and half a JPEG, then stalls for slow_seconds",
    "/img/bad/control.jpg": "a valid 320px JPEG photo served correctly (positive control)",
    "/img/bad/404.jpg": "404 Not Found for an image URL",
    "/img/bad/not-an-image.jpg": "an HTML body served as Content-Type image/jpeg",
    "/img/bad/truncated.jpg": "a real JPEG cut in half (no end-of-image marker)",
    "/img/bad/bomb.png": (f"decompression bomb: valid 1-bit PNG declaring {BOMB_SIDE}x{BOMB_SIDE} "
                          "pixels, ~110 KB (IDAT = zlib of zeros)"),
    "/bad/loop": "redirect loop: 302 to /bad/loop2",
    "/bad/loop2": "redirect loop: 302 back to /bad/loop",
    "/bad/to-private": "302 redirect to robots-disallowed /private/secret.html",
    "/img/bad/to-private.jpg": "302 redirect to robots-disallowed /private/img/en-confidential-sign.png",
    "/img/bad/noai.jpg": "valid JPEG with header X-Robots-Tag: noai",
    "/img/bad/otherbot-noimageai.jpg": ("valid JPEG with header X-Robots-Tag: otherbot: noimageai "
                                        "(a rule for another bot only)"),
    "/bad/invalid-utf8.html": "declares UTF-8 but has invalid UTF-8 bytes in the body and an alt",
    "/bad/huge.html": "HTML bigger than huge_page_bytes (default 3 MB), with Content-Length, "
                      "generated on the fly",
    "/bad/huge-no-length.html": "same as /bad/huge.html without Content-Length (ends on close)",
    "/bad/text-plain.html": "an HTML document served as Content-Type text/plain",
    "/bad/short-body.html": "Content-Length says 10000 bytes, 1000 are sent, then the connection closes",
    "/img/bad/short-body.jpg": "Content-Length of the full JPEG, half of it is sent, then close",
}

# Alt texts used for the image routes on /bad/index.html.
BAD_IMAGE_ALTS: dict[str, str] = {
    "/img/bad/slow.jpg": "A cat photo that loads very slowly",
    "/img/bad/control.jpg": "Chelsea the tabby cat looking to the side",
    "/img/bad/404.jpg": "A photo that no longer exists",
    "/img/bad/not-an-image.jpg": "A photo of a sunset over the sea",
    "/img/bad/truncated.jpg": "An astronaut in front of the US flag (damaged file)",
    "/img/bad/bomb.png": "A very large black square",
    "/img/bad/to-private.jpg": "A sign moved to the staff area",
    "/img/bad/noai.jpg": "A cup of espresso whose owner opts out of AI training",
    "/img/bad/otherbot-noimageai.jpg": "A rocket on the launch pad, opted out for another bot",
    "/img/bad/short-body.jpg": "A motorcycle in a garage (connection drops)",
}

CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                     socket.timeout)


# --------------------------------------------------------------------------
# Bodies of the bad routes (generated on demand, cached)


@cache
def photo_jpeg(name: str, width: int = 320) -> bytes:
    """A real photo from skimage.data as JPEG bytes."""
    from PIL import Image
    from skimage import data as skdata

    loaders = {"chelsea": skdata.chelsea, "astronaut": skdata.astronaut,
               "coffee": skdata.coffee, "rocket": skdata.rocket,
               "motorcycle": lambda: skdata.stereo_motorcycle()[0]}
    image = Image.fromarray(loaders[name]())
    image = image.resize((width, round(image.height * width / image.width)),
                         Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    """The first half of a real JPEG."""
    whole = photo_jpeg("astronaut")
    return whole[: len(whole) // 2]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


@cache
def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid, all-black 1-bit PNG of side x side pixels; tiny on disk.

    Decoded it needs side² bytes in Pillow (900 MB for 30000), which is what
    decompression-bomb guards must refuse.
    """
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed 1-bit pixels, all zero
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    parts = []
    for first_row in range(0, side, rows_per_block):
        parts.append(compressor.compress(row * min(rows_per_block, side - first_row)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", b"".join(parts)) + png_chunk(b"IEND", b""))


NOT_AN_IMAGE_BODY = (b"<!DOCTYPE html>\n<html><head><title>Login required</title></head>"
                     b"<body><p>Please log in to view this image.</p></body></html>\n")

INVALID_UTF8_BODY = (
    b'<!DOCTYPE html>\n<html lang="fr">\n<head><meta charset="utf-8">'
    b"<title>Caf\xe9 cr\xe8me</title></head>\n<body>\n"
    b"<p>Texte mal encod\xe9 : octets invalides \xff\xfe et une suite isol\xe9e \x80.</p>\n"
    b'<img src="/img/bad/control.jpg" alt="Un caf\xe9 cr\xe8me \xff sur une table">\n'
    b"</body>\n</html>\n"
)

TEXT_PLAIN_BODY = (
    b"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    b"<title>Served as text</title></head>\n<body>\n"
    b'<img src="/img/bad/control.jpg" alt="This img tag is plain text, not HTML">\n'
    b"</body></html>\n"
)

SHORT_BODY_PROMISED = 10_000
SHORT_BODY_SENT = (b"<!DOCTYPE html>\n<html><head><title>Cut short</title></head><body>\n"
                   + b"<p>This page is cut off.</p>\n" * 40)[:1000]


def huge_page_parts(total_bytes: int) -> tuple[bytes, bytes, int]:
    """(prefix, suffix, filler byte count) of an HTML page of exactly `total_bytes`."""
    prefix = (b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
              b"<title>Huge page</title></head>\n<body>\n"
              b'<img src="/img/bad/control.jpg" alt="A cat at the top of a huge page">\n')
    suffix = (b'<img src="/img/bad/control.jpg" alt="A cat after more than three megabytes">\n'
              b"</body></html>\n")
    return prefix, suffix, max(0, total_bytes - len(prefix) - len(suffix))


FILLER_LINE = b"<p>All work and no play makes Jack a dull boy. " * 4 + b"</p>\n"


def bad_site_page() -> bytes:
    """HTML of /bad/index.html: links every bad page route, embeds every bad image route."""
    from html import escape

    links = [path for path in ROUTES if not path.startswith("/img/") and path != "/bad/index.html"]
    images = [path for path in ROUTES if path.startswith("/img/")]
    link_items = "\n".join(f'  <li><a href="{path}">{escape(ROUTES[path])}</a></li>'
                           for path in links)
    image_items = "\n".join(f'<figure><img src="{path}" alt="{escape(BAD_IMAGE_ALTS[path])}">'
                            "</figure>" for path in images)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        "<title>Misbehaving routes</title></head>\n<body>\n<h1>Misbehaving routes</h1>\n"
        f"<ul>\n{link_items}\n</ul>\n{image_items}\n</body>\n</html>\n"
    ).encode()


# --------------------------------------------------------------------------
# Request handling


class DemoRequestHandler(SimpleHTTPRequestHandler):
    """Static files plus the bad routes; no directory listings."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # sets TCP_NODELAY on every connection
    timeout = 30  # drop idle keep-alive connections
    server: DemoHTTPServer

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".webp": "image/webp",
        ".svg": "image/svg+xml",
        ".json": "application/json",
        ".txt": "text/plain; charset=utf-8",
        ".html": "text/html",
    }

    # -- entry points

    def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
        """Record the request, then serve a bad route or a file."""
        self.server.record_request(self.path)
        if not self.handle_bad_route():
            super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        """Same as GET without a body."""
        self.server.record_request(self.path)
        if not self.handle_bad_route():
            super().do_HEAD()

    def handle_bad_route(self) -> bool:
        """Serve a route from ROUTES if the path is one; True if handled."""
        if not self.server.bad_routes:
            return False
        method_name = ROUTE_HANDLERS.get(self.url_path())
        if method_name is None:
            return False
        try:
            getattr(self, method_name)()
        except CONNECTION_ERRORS:
            self.close_connection = True  # the client gave up; nothing left to do
        return True

    # -- static files

    def url_path(self) -> str:
        """Path part of the request target ("" before the request line is parsed)."""
        return urlsplit(getattr(self, "path", "")).path

    def send_head(self):
        """Refuse hidden files ("_" or "." prefix), then serve normally."""
        if any(part.startswith(("_", ".")) for part in self.url_path().split("/") if part):
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()

    def list_directory(self, path):
        """Directory listings are disabled."""
        self.send_error(HTTPStatus.NOT_FOUND, "File not found")
        return None

    # -- per-path header overrides from _headers.json

    def send_response(self, code, message=None) -> None:
        """Start a response; queue configured extra headers for 200 responses."""
        overrides = self.server.path_headers.get(self.url_path(), {}) if code == 200 else {}
        self.pending_headers = dict(overrides)
        super().send_response(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        """Send a header, replacing its value when _headers.json overrides it."""
        for name in list(getattr(self, "pending_headers", {})):
            if name.lower() == keyword.lower():
                value = self.pending_headers.pop(name)
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        """Add configured headers the response did not already send."""
        for name, value in getattr(self, "pending_headers", {}).items():
            super().send_header(name, value)
        self.pending_headers = {}
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (base-class name)
        """Log through `logging` unless the server is quiet."""
        if not self.server.quiet:
            log.info("%s %s", self.address_string(), format % args)

    # -- response helpers

    def send_bytes(self, body: bytes, content_type: str, status: int = 200,
                   headers: dict[str, str] | None = None) -> None:
        """A complete response with Content-Length (body skipped for HEAD)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def redirect(self, location: str) -> None:
        """302 Found to `location`."""
        self.send_bytes(b"", "text/html", HTTPStatus.FOUND, {"Location": location})

    def stall(self) -> bool:
        """Sleep slow_seconds unless the server stops first; True if it is stopping."""
        return self.server.stopping.wait(self.server.slow_seconds)

    # -- the bad routes (see ROUTES for what each one does)

    def serve_bad_index(self) -> None:
        self.send_bytes(bad_site_page(), "text/html; charset=utf-8")

    def serve_not_found(self) -> None:
        self.send_error(HTTPStatus.NOT_FOUND, "File not found")

    def serve_server_error(self) -> None:
        self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "Something broke")

    def serve_slow_page(self) -> None:
        if self.stall():
            self.close_connection = True
            return
        self.send_bytes(b"<!DOCTYPE html><title>Finally</title><p>Sorry for the wait.</p>\n",
                        "text/html; charset=utf-8")

    def serve_slow_image(self) -> None:
        body = photo_jpeg("chelsea")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if self.stall():
            self.close_connection = True
            return
        self.wfile.write(body[len(body) // 2:])

    def serve_control_image(self) -> None:
        self.send_bytes(photo_jpeg("chelsea"), "image/jpeg")

    def serve_not_an_image(self) -> None:
        self.send_bytes(NOT_AN_IMAGE_BODY, "image/jpeg")

    def serve_truncated_image(self) -> None:
        self.send_bytes(truncated_jpeg(), "image/jpeg")

    def serve_bomb(self) -> None:
        self.send_bytes(bomb_png(), "image/png")

    def serve_loop(self) -> None:
        self.redirect("/bad/loop2")

    def serve_loop2(self) -> None:
        self.redirect("/bad/loop")

    def serve_redirect_to_private_page(self) -> None:
        self.redirect("/private/secret.html")

    def serve_redirect_to_private_image(self) -> None:
        self.redirect("/private/img/en-confidential-sign.png")

    def serve_noai_image(self) -> None:
        self.send_bytes(photo_jpeg("coffee"), "image/jpeg", headers={"X-Robots-Tag": "noai"})

    def serve_otherbot_image(self) -> None:
        self.send_bytes(photo_jpeg("rocket"), "image/jpeg",
                        headers={"X-Robots-Tag": "otherbot: noimageai"})

    def serve_invalid_utf8(self) -> None:
        self.send_bytes(INVALID_UTF8_BODY, "text/html; charset=utf-8")

    def serve_huge_page(self, with_length: bool = True) -> None:
        prefix, suffix, filler_bytes = huge_page_parts(self.server.huge_page_bytes)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        if with_length:
            self.send_header("Content-Length", str(len(prefix) + filler_bytes + len(suffix)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(prefix)
        block = FILLER_LINE * (65536 // len(FILLER_LINE))
        remaining = filler_bytes
        while remaining > 0 and not self.server.stopping.is_set():
            piece = block[:remaining]
            self.wfile.write(piece)
            remaining -= len(piece)
        self.wfile.write(suffix)

    def serve_huge_page_without_length(self) -> None:
        self.serve_huge_page(with_length=False)

    def serve_text_plain(self) -> None:
        self.send_bytes(TEXT_PLAIN_BODY, "text/plain; charset=utf-8")

    def serve_short_page(self) -> None:
        self.send_lying_length(SHORT_BODY_SENT, SHORT_BODY_PROMISED, "text/html; charset=utf-8")

    def serve_short_image(self) -> None:
        body = photo_jpeg("motorcycle")
        self.send_lying_length(body[: len(body) // 2], len(body), "image/jpeg")

    def send_lying_length(self, sent: bytes, promised: int, content_type: str) -> None:
        """Announce `promised` bytes, send `sent`, then close the connection."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(promised))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(sent)
        self.close_connection = True


ROUTE_HANDLERS: dict[str, str] = {
    "/bad/index.html": "serve_bad_index",
    "/bad/404": "serve_not_found",
    "/bad/500": "serve_server_error",
    "/bad/slow": "serve_slow_page",
    "/img/bad/slow.jpg": "serve_slow_image",
    "/img/bad/control.jpg": "serve_control_image",
    "/img/bad/404.jpg": "serve_not_found",
    "/img/bad/not-an-image.jpg": "serve_not_an_image",
    "/img/bad/truncated.jpg": "serve_truncated_image",
    "/img/bad/bomb.png": "serve_bomb",
    "/bad/loop": "serve_loop",
    "/bad/loop2": "serve_loop2",
    "/bad/to-private": "serve_redirect_to_private_page",
    "/img/bad/to-private.jpg": "serve_redirect_to_private_image",
    "/img/bad/noai.jpg": "serve_noai_image",
    "/img/bad/otherbot-noimageai.jpg": "serve_otherbot_image",
    "/bad/invalid-utf8.html": "serve_invalid_utf8",
    "/bad/huge.html": "serve_huge_page",
    "/bad/huge-no-length.html": "serve_huge_page_without_length",
    "/bad/text-plain.html": "serve_text_plain",
    "/bad/short-body.html": "serve_short_page",
    "/img/bad/short-body.jpg": "serve_short_image",
}
assert ROUTE_HANDLERS.keys() == ROUTES.keys(), "every documented route needs a handler"
assert BAD_IMAGE_ALTS.keys() == {path for path in ROUTES if path.startswith("/img/")}


class DemoHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server holding the shared state of the handlers."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, handler, *, port: int, bad_routes: bool, slow_seconds: float,
                 huge_page_bytes: int, quiet: bool, path_headers: dict[str, dict[str, str]],
                 access_log: list[str], log_lock: threading.Lock):
        self.bad_routes = bad_routes
        self.slow_seconds = slow_seconds
        self.huge_page_bytes = huge_page_bytes
        self.quiet = quiet
        self.path_headers = path_headers
        self.stopping = threading.Event()
        self.access_log = access_log
        self.log_lock = log_lock
        self.open_connections: set[socket.socket] = set()
        super().__init__((LOOPBACK, port), handler)

    def record_request(self, path: str) -> None:
        """Append a requested path to the in-memory access log."""
        with self.log_lock:
            self.access_log.append(path)

    def process_request(self, request, client_address) -> None:
        """Track the connection so stop() can cut it."""
        with self.log_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        """Forget a finished connection."""
        with self.log_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down live connections so their handler threads finish now."""
        with self.log_lock:
            connections = list(self.open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        """Clients hanging up are normal here; log other errors."""
        log.debug("error while serving %s", client_address, exc_info=True)


def load_path_headers(directory: Path) -> dict[str, dict[str, str]]:
    """Per-path extra headers from DIR/_headers.json, if present."""
    headers_file = directory / HEADERS_FILE_NAME
    if not headers_file.is_file():
        return {}
    return json.loads(headers_file.read_text(encoding="utf-8"))


class SiteServer:
    """Serve a directory on 127.0.0.1 from a background thread.

    Use as a context manager or call start()/stop(). `port=0` lets the OS
    choose a free port; `url` tells which one. The access log (request
    targets, in arrival order) is kept in memory for assertions.
    """

    def __init__(self, directory: Path | str, *, port: int = 0, bad_routes: bool = True,
                 slow_seconds: float = DEFAULT_SLOW_SECONDS,
                 huge_page_bytes: int = DEFAULT_HUGE_PAGE_BYTES, quiet: bool = True):
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise FileNotFoundError(f"not a directory: {self.directory}")
        self.port = port
        self.bad_routes = bad_routes
        self.slow_seconds = slow_seconds
        self.huge_page_bytes = huge_page_bytes
        self.quiet = quiet
        self.httpd: DemoHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self._access_log: list[str] = []
        self._log_lock = threading.Lock()

    def start(self) -> SiteServer:
        """Bind and start serving; returns self."""
        if self.httpd is not None:
            return self
        handler = partial(DemoRequestHandler, directory=str(self.directory))
        self.httpd = DemoHTTPServer(
            handler, port=self.port, bad_routes=self.bad_routes, slow_seconds=self.slow_seconds,
            huge_page_bytes=self.huge_page_bytes, quiet=self.quiet,
            path_headers=load_path_headers(self.directory),
            access_log=self._access_log, log_lock=self._log_lock)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       name=f"SiteServer:{self.port}", daemon=True)
        self.thread.start()
        log.debug("serving %s at %s", self.directory, self.url)
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close connections (idempotent)."""
        if self.httpd is None:
            return
        self.httpd.stopping.set()
        self.httpd.shutdown()
        self.httpd.close_open_connections()
        self.httpd.server_close()
        self.thread.join(timeout=5)
        self.httpd = None

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. http://127.0.0.1:40123."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def access_log(self) -> list[str]:
        """Request targets (path + query) received so far, oldest first (a copy)."""
        with self._log_lock:
            return list(self._access_log)

    def clear_access_log(self) -> None:
        """Forget the requests recorded so far."""
        with self._log_lock:
            self._access_log.clear()

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def raise_keyboard_interrupt(signum, frame) -> None:
    """SIGTERM handler: take the same clean shutdown path as Ctrl-C."""
    raise KeyboardInterrupt


def main() -> None:
    """`python -m webli.demo.server DIR [--port N]`: serve DIR on 127.0.0.1 until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve a directory on 127.0.0.1.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    parser.add_argument("--slow-seconds", type=float, default=DEFAULT_SLOW_SECONDS)
    parser.add_argument("--no-bad-routes", action="store_true", help="serve files only")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = SiteServer(arguments.directory, port=arguments.port,
                        bad_routes=not arguments.no_bad_routes,
                        slow_seconds=arguments.slow_seconds, quiet=arguments.quiet)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    with server:
        print(server.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)


if __name__ == "__main__":
    main()
