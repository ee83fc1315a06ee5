"""SSRF guard: refuse connections to loopback, private, link-local, multicast
and reserved addresses, checked on the address actually connected to.

The check runs inside the socket factory of every HTTP connection the project
opens (urllib for img2dataset, urllib3 for the crawler), so it also covers
redirects and DNS answers that change between look-ups: the host is resolved
once, every resolved address is vetted, and the socket connects to a vetted
address only. Refusals raise :class:`BlockedAddressError`.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection as Urllib3HTTPConnection
from urllib3.connection import HTTPSConnection as Urllib3HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

ALLOWED_SCHEMES = ("http", "https")


class BlockedAddressError(OSError):
    """A connection was refused because the host is not a public address."""


def is_public_address(address: str) -> bool:
    """True when `address` (an IPv4 or IPv6 literal) is globally routable unicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_address(address: str, allow_private: bool) -> None:
    """Raise BlockedAddressError unless `address` may be contacted."""
    if not allow_private and not is_public_address(address):
        raise BlockedAddressError(
            f"refused to connect to non-public address {address} "
            "(set crawl.allow_private_networks: true to allow it)"
        )


def scheme_drop_reason(url: str) -> str | None:
    """Why `url` cannot be fetched at all ('scheme', 'data_uri', 'bad_url'), or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "bad_url"
    if parts.scheme == "data":
        return "data_uri"
    if parts.scheme not in ALLOWED_SCHEMES:
        return "scheme"
    if not parts.hostname:
        return "bad_url"
    return None


def literal_host_drop_reason(url: str, allow_private: bool) -> str | None:
    """'private_address' when the URL's host is an IP literal that may not be contacted.

    Host names are vetted later, when they are resolved at connect time.
    """
    host = urlsplit(url).hostname or ""
    try:
        check_address(host, allow_private)
    except ValueError:
        return None
    except BlockedAddressError:
        return "private_address"
    return None


def guarded_create_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None,
                              *, allow_private: bool = False, socket_options=None):
    """socket.create_connection that connects only to vetted addresses."""
    host, port = address
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    last_error: OSError | None = None
    for family, socktype, proto, _, sockaddr in infos:
        try:
            check_address(sockaddr[0], allow_private)
        except BlockedAddressError as err:
            last_error = err
            continue
        sock = socket.socket(family, socktype, proto)
        try:
            for level, option, value in socket_options or ():
                sock.setsockopt(level, option, value)
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as err:
            sock.close()
            last_error = err
    raise last_error or OSError(f"getaddrinfo returned nothing for {host}")


# --- urllib (used by img2dataset) -------------------------------------------

def _guarded_http_client_class(base: type, allow_private: bool) -> type:
    class GuardedConnection(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._create_connection = lambda addr, timeout, source: guarded_create_connection(
                addr, timeout, source, allow_private=allow_private)

    return GuardedConnection


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, allow_private: bool):
        super().__init__()
        self._connection_class = _guarded_http_client_class(http.client.HTTPConnection, allow_private)

    def http_open(self, req):
        return self.do_open(self._connection_class, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, allow_private: bool):
        super().__init__()
        self._connection_class = _guarded_http_client_class(http.client.HTTPSConnection, allow_private)

    def https_open(self, req):
        return self.do_open(self._connection_class, req, context=self._context)


class _BoundedRedirectHandler(urllib.request.HTTPRedirectHandler):
    def __init__(self, max_redirects: int, target_allowed: Callable[[str], bool] | None):
        super().__init__()
        self.max_redirections = max_redirects
        self.max_repeats = min(self.max_repeats, max_redirects)
        self.target_allowed = target_allowed

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        reason = scheme_drop_reason(newurl)
        if reason:
            raise urllib.error.HTTPError(newurl, code, f"redirect to a refused URL ({reason})", headers, fp)
        if self.target_allowed is not None and not self.target_allowed(newurl):
            raise urllib.error.HTTPError(newurl, code, "redirect to a URL disallowed by robots.txt", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def build_guarded_opener(allow_private: bool, max_redirects: int = 5,
                         redirect_allowed: Callable[[str], bool] | None = None) -> urllib.request.OpenerDirector:
    """An urllib opener with only http(s), vetted addresses and bounded redirects.

    It has no file:, ftp: or data: handler, so such URLs fail with
    'unknown url type' even if one slips through. `redirect_allowed` (e.g. a
    robots.txt check) is asked about every redirect target.
    """
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.UnknownHandler(),
        _GuardedHTTPHandler(allow_private),
        _GuardedHTTPSHandler(allow_private),
        urllib.request.HTTPDefaultErrorHandler(),
        _BoundedRedirectHandler(max_redirects, redirect_allowed),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


# --- urllib3 (used by the crawler) -------------------------------------------

def _guarded_urllib3_class(base: type, allow_private: bool) -> type:
    class GuardedConnection(base):
        def _new_conn(self):
            try:
                return guarded_create_connection(
                    (self._dns_host, self.port), self.timeout, self.source_address,
                    allow_private=allow_private, socket_options=self.socket_options)
            except BlockedAddressError:
                raise
            except TimeoutError as err:
                raise urllib3.exceptions.ConnectTimeoutError(self, f"connect timed out ({err})") from err
            except OSError as err:
                raise urllib3.exceptions.NewConnectionError(self, f"failed to connect: {err}") from err

    return GuardedConnection


def guarded_pool_manager(allow_private: bool, **kwargs) -> urllib3.PoolManager:
    """A urllib3 PoolManager whose connections go to vetted addresses only."""
    manager = urllib3.PoolManager(**kwargs)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = _guarded_urllib3_class(Urllib3HTTPConnection, allow_private)

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _guarded_urllib3_class(Urllib3HTTPSConnection, allow_private)

    manager.pool_classes_by_scheme = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}
    return manager


def is_blocked_error(error: BaseException | None) -> bool:
    """True when `error`, its `reason` or its cause chain is an SSRF refusal."""
    for _ in range(10):  # exception chains are short; bound the walk anyway
        if error is None:
            return False
        if isinstance(error, BlockedAddressError):
            return True
        reason = getattr(error, "reason", None)
        error = reason if isinstance(reason, BaseException) else (error.__cause__ or error.__context__)
    return False
