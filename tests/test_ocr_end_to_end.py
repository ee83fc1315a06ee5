"""`webli run --until ocr` on the demo site served on 127.0.0.1: crawl, download, then the OCR stage."""

from __future__ import annotations

import difflib

import pytest
from helpers import copy_run, read_parquets, stats, webli
from test_ocr_render import comparable

from webli.schemas import ocr as schema

pytestmark = pytest.mark.timeout(1200)  # crawl + download + OCR of the demo site on 2 shared cores


@pytest.fixture(scope="module")
def run(demo_download, demo_site, tmp_path_factory):
    """A copy of the session's demo download, then `webli ocr`."""
    copied = copy_run(demo_download, tmp_path_factory.mktemp("ocr-e2e"))
    result = webli("ocr", "-c", str(copied.config_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return copied.output, copied.config_path, demo_site[1]


@pytest.mark.slow
def test_one_sidecar_row_per_downloaded_image_per_shard(run):
    output, _, _ = run
    download_stats, ocr_stats = stats(output / "download"), stats(output / "ocr")
    assert sorted(ocr_stats) == sorted(download_stats)
    for shard in download_stats:
        name = f"{shard:05d}.parquet"
        successes = [r["key"] for r in read_parquets(output / "download", name) if r["status"] == "success"]
        rows = read_parquets(output / "ocr", name)
        assert [r["key"] for r in rows] == sorted(successes)
        assert ocr_stats[shard]["total"] == ocr_stats[shard]["forwarded"] == len(successes)
        assert ocr_stats[shard]["dropped_by_reason"] == {}
        assert sum(ocr_stats[shard]["status_counts"].values()) == len(successes)


@pytest.mark.slow
def test_demo_signs_are_read_in_their_script(run):
    output, _, manifest = run
    texts = {image["path"]: image for image in manifest["images"] if image.get("text") and image.get("text_lang")}
    downloads = {r["key"]: r for r in read_parquets(output / "download")}
    read = {}
    for row in read_parquets(output / "ocr"):
        path = "/" + downloads[row["key"]]["url"].split("/", 3)[3]
        if path in texts:  # signs, banners and screenshots in every script the demo could draw
            expected = comparable(texts[path]["text"])
            read[path] = difflib.SequenceMatcher(None, comparable(row["ocr_text"]), expected).ratio()
            assert row["ocr_status"] == schema.STATUS_READ and row["ocr_source"] == "large"
    assert len(read) >= 4, sorted(texts)
    good = [path for path, ratio in read.items() if ratio >= 0.8]
    # Tesseract 5.3 reads the bold framed Japanese sign in no page segmentation mode, and only the first word
    # of the Arabic one with the margin retry: two misses allowed, every other sign must be read.
    assert len(good) >= len(read) - 2, read


@pytest.mark.slow
def test_text_check_skips_images_without_text_but_no_text_image(run):
    output, _, manifest = run
    has_text = {image["path"]: bool(image.get("text")) for image in manifest["images"]}
    downloads = {r["key"]: r for r in read_parquets(output / "download")}
    skipped = {True: [], False: []}
    for row in read_parquets(output / "ocr"):
        path = "/" + downloads[row["key"]]["url"].split("/", 3)[3]
        if row["ocr_status"] == schema.STATUS_NO_TEXT and path in has_text:
            skipped[has_text[path]].append(path)
    assert skipped[True] == []
    assert skipped[False], "the check skipped no image at all"


@pytest.mark.slow
def test_ocr_rerun_is_a_no_op(run):
    output, config, _ = run
    before = {p: p.stat().st_mtime_ns for p in (output / "ocr").rglob("*")}
    again = webli("ocr", "-c", str(config))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ocr:" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (output / "ocr").rglob("*")} == before
