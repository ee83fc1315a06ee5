"""Crawl from WARC files the test writes itself with warcio (gzip and plain)."""

import io

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from webli.pipeline.config import CrawlConfig
from webli.stages.crawl.shard import crawl_warc

PAGE_DE = """<html lang="de"><head><title>Katzen</title></head><body>
<img src="/img/katze.jpg" alt="Eine schwarze Katze schläft auf dem Sofa">
<img src="/img/logo.png" alt="Logo"></body></html>"""
PAGE_JA = """<html><head><meta charset="shift_jis"><title>猫</title></head><body>
<img src="neko.jpg" alt="ソファの上で眠る黒い猫"></body></html>"""


def write_warc(gzip: bool) -> bytes:
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=gzip)
    records = [
        ("http://127.0.0.1:1/de.html", "200 OK", "text/html; charset=utf-8", PAGE_DE.encode("utf-8")),
        ("http://127.0.0.1:1/ja/index.html", "200 OK", "text/html", PAGE_JA.encode("shift_jis")),
        ("http://127.0.0.1:1/missing.html", "404 Not Found", "text/html", b"<img src=x.jpg alt='not kept'>"),
        ("http://127.0.0.1:1/img/katze.jpg", "200 OK", "image/jpeg", b"\xff\xd8\xff\xe0 not really"),
    ]
    for url, status, content_type, body in records:
        headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                      http_headers=headers))
    writer.write_record(writer.create_warc_record("http://127.0.0.1:1/de.html", "request",
                                                  payload=io.BytesIO(b"GET /de.html HTTP/1.1\r\n\r\n")))
    return buffer.getvalue()


@pytest.mark.parametrize("gzip", [True, False])
def test_crawl_warc_extracts_pairs_and_counts_pages(gzip):
    pairs, pages, stats = crawl_warc(io.BytesIO(write_warc(gzip)), CrawlConfig())
    rows = pairs.to_pylist()
    assert [(r["url"], r["alt"]) for r in rows] == [
        ("http://127.0.0.1:1/img/katze.jpg", "Eine schwarze Katze schläft auf dem Sofa"),
        ("http://127.0.0.1:1/ja/neko.jpg", "ソファの上で眠る黒い猫"),  # decoded from Shift_JIS via <meta>
    ]
    assert [r["language"] for r in rows] == ["de", "ja"]
    assert rows[0]["html_lang"] == "de" and rows[0]["page_title"] == "Katzen"
    assert rows[0]["fetch_time"].utcoffset().total_seconds() == 0
    assert stats["total"] == 3 and stats["forwarded"] == 2
    assert stats["dropped_by_reason"] == {"alt_boilerplate": 1}
    assert stats["pages"] == {"total": 4, "parsed": 2, "refused_by_reason": {"http_404": 1, "not_html": 1}}
    assert pages.num_rows == 4


def test_truncated_warc_keeps_what_was_read():
    data = write_warc(gzip=False)
    cut = data.index(b"WARC-Target-URI: <http://127.0.0.1:1/missing.html>") if b"<http" in data else \
        data.index(b"WARC-Target-URI: http://127.0.0.1:1/missing.html")
    pairs, _, stats = crawl_warc(io.BytesIO(data[: cut + 40]), CrawlConfig())
    assert pairs.num_rows == 2
