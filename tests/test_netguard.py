"""The SSRF guard, tested against loopback addresses only."""

import http.server
import threading
import urllib.error

import pytest

from webli.stages import netguard
from webli.stages.netguard import (
    build_guarded_opener,
    guarded_pool_manager,
    is_blocked_error,
    is_public_address,
    literal_host_drop_reason,
    scheme_drop_reason,
)


class RedirectingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        targets = {"/to-file": "file:///etc/passwd", "/to-other-loopback": f"http://127.0.0.2:{self.server.server_port}/ok"}
        if self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RedirectingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.mark.parametrize("address, public", [
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("224.0.0.1", False), ("0.0.0.0", False), ("240.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
    ("100.64.0.1", False), ("8.8.8.8", True), ("2001:4860:4860::8888", True),
])
def test_is_public_address(address, public):
    # pure classification of address literals: nothing is contacted
    assert is_public_address(address) is public


def test_scheme_and_literal_checks():
    assert scheme_drop_reason("file:///etc/passwd") == "scheme"
    assert scheme_drop_reason("data:image/png;base64,x") == "data_uri"
    assert scheme_drop_reason("http:///nohost") == "bad_url"
    assert scheme_drop_reason("https://example.org/a.jpg") is None
    assert literal_host_drop_reason("http://127.0.0.1:1/a", allow_private=False) == "private_address"
    assert literal_host_drop_reason("http://127.0.0.1:1/a", allow_private=True) is None
    assert literal_host_drop_reason("http://example.org/a", allow_private=False) is None  # vetted at connect


def test_urllib_opener_refuses_loopback(server):
    with pytest.raises(urllib.error.URLError) as err:
        build_guarded_opener(allow_private=False).open(server + "/ok", timeout=5)
    assert is_blocked_error(err.value)


def test_urllib_opener_refuses_localhost_name(server):
    port = server.rsplit(":", 1)[1]
    with pytest.raises(urllib.error.URLError) as err:
        build_guarded_opener(allow_private=False).open(f"http://localhost:{port}/ok", timeout=5)
    assert is_blocked_error(err.value)


def test_urllib_opener_allows_when_configured(server):
    with build_guarded_opener(allow_private=True).open(server + "/ok", timeout=5) as response:
        assert response.read() == b"ok"


def test_urllib_opener_has_no_file_handler(server):
    with pytest.raises(urllib.error.URLError):
        build_guarded_opener(allow_private=True).open("file:///etc/hostname", timeout=5)
    with pytest.raises(urllib.error.HTTPError, match="not allowed|refused URL"):
        build_guarded_opener(allow_private=True).open(server + "/to-file", timeout=5)


def test_redirect_target_is_checked_again(server, monkeypatch):
    # Treat 127.0.0.1 as public so the first hop passes; the redirect goes to
    # 127.0.0.2 (also loopback), which must be refused before connecting.
    monkeypatch.setattr(netguard, "is_public_address", lambda a: a == "127.0.0.1")
    opener = build_guarded_opener(allow_private=False)
    with opener.open(server + "/ok", timeout=5) as response:
        assert response.read() == b"ok"
    with pytest.raises(urllib.error.URLError) as err:
        opener.open(server + "/to-other-loopback", timeout=5)
    assert is_blocked_error(err.value)


def test_urllib3_pool_refuses_and_allows(server):
    with pytest.raises(Exception) as err:  # urllib3 wraps it in ProtocolError
        guarded_pool_manager(allow_private=False, retries=False).request("GET", server + "/ok")
    assert is_blocked_error(err.value)
    response = guarded_pool_manager(allow_private=True, retries=False).request("GET", server + "/ok")
    assert response.data == b"ok"
