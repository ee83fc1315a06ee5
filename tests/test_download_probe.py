import io
import struct
import zlib

import pytest
from PIL import Image

from webli.stages.download import drop_reason, probe_image

LIMIT = 50_000_000


def encoded(fmt: str, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, fmt)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with a tiny compressed body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (width + 1) * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_real_images_pass(fmt):
    assert probe_image(encoded(fmt), LIMIT) is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_images_are_refused(fmt):
    data = encoded(fmt, (300, 200))
    assert "truncated" in probe_image(data[: len(data) // 2], LIMIT)


def test_decompression_bomb_refused_from_header():
    assert probe_image(png_bomb(30000, 30000), LIMIT).startswith("decompression bomb")


def test_html_is_not_an_image():
    assert probe_image(b"<!doctype html><html><body>404</body></html>", LIMIT).startswith("not an image")


def test_svg_is_unsupported():
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    assert probe_image(svg, LIMIT).startswith("unsupported image format")


@pytest.mark.parametrize("status, message, reason", [
    ("success", None, None),
    ("failed_to_download", "HTTP Error 404: Not Found", "http_error"),
    ("failed_to_download", "<urlopen error timed out>", "timeout"),
    ("failed_to_download", "Use of image disallowed by X-Robots-Tag directive", "noai"),
    ("failed_to_download", "<urlopen error refused to connect to non-public address 10.0.0.1 (...)>",
     "private_address"),
    ("failed_to_download", "<urlopen error [Errno 111] Connection refused>", "failed_to_download"),
    ("failed_to_resize", "decompression bomb: 30000x30000 pixels declared", "decompression_bomb"),
    ("failed_to_resize", "not an image (starts with b'<html>')", "not_an_image"),
    ("failed_to_resize", "unsupported image format: svg", "unsupported_format"),
    ("failed_to_resize", "truncated JPEG file", "decode_error"),
    ("failed_to_resize", "Image decoding error", "decode_error"),
    ("failed_to_resize", "image too small", "too_small"),
    ("failed_to_resize", "aspect ratio too large", "aspect_ratio"),
])
def test_drop_reason(status, message, reason):
    assert drop_reason(status, message) == reason


def _worker_settings():
    import os

    import dask

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), dask.config.get("distributed.admin.tick.interval")


@pytest.mark.slow
def test_download_workers_get_glibc_allocator_defaults(tmp_path, monkeypatch):
    """Dask's MALLOC_TRIM_THRESHOLD_ (which freezes glibc's mmap threshold at 128 KiB and made a shard
    cost 1.5x the page faults and system time) is not given to download workers, even when an earlier
    stage's nannies left it in the driver's environment; other stages keep Dask's setting."""
    from webli.pipeline import cluster
    from webli.pipeline.config import validate_config

    if cluster._USER_MALLOC_TRIM is not None:
        pytest.skip("MALLOC_TRIM_THRESHOLD_ was exported before the tests started: it is kept")
    config = validate_config({"output": str(tmp_path), "cluster": {"workers": 1}}).cluster
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as an earlier stage's in-process nannies leave it
    with cluster.dask_client(config, 1, glibc_defaults=True) as client:
        assert list(client.run(_worker_settings).values()) == [(None, "1s")]
    with cluster.dask_client(config, 1) as client:
        assert list(client.run(_worker_settings).values()) == [("65536", "1s")]
