"""`webli run --until download` on the demo site served on 127.0.0.1: crawl then download, through the CLI and Dask."""

from __future__ import annotations

import json

import pytest
from helpers import read_parquets, stats, tar_samples, webli, write_config


@pytest.fixture(scope="module")
def run(demo_download):
    """The session's crawl + download of the demo site (conftest.demo_download)."""
    return demo_download.output, demo_download.config_path, demo_download.result, demo_download.access_log


@pytest.mark.slow
def test_every_planned_row_is_accounted_for(run):
    output, _, _, _ = run
    plan = read_parquets(output / "download" / "_plan")
    rows = read_parquets(output / "download")
    assert sorted(r["key"] for r in rows) == sorted(r["key"] for r in plan)
    assert all("." not in r["key"] for r in rows)
    total = {k: sum(s[k] for s in stats(output / "download").values()) for k in ("total", "forwarded", "dropped")}
    assert total["total"] == len(plan) == total["forwarded"] + total["dropped"]
    crawl_out = sum(s["forwarded"] for s in stats(output / "crawl").values())
    assert crawl_out == len(plan)  # one crawl shard: no cross-shard duplicates


@pytest.mark.slow
def test_bad_images_dropped_with_reasons(run):
    output, _, _, _ = run
    by_path = {r["url"].split("/", 3)[3]: r for r in read_parquets(output / "download")}
    expected = {
        "img/bad/404.jpg": "http_error", "img/bad/not-an-image.jpg": "not_an_image",
        "img/bad/truncated.jpg": "decode_error", "img/bad/bomb.png": "decompression_bomb",
        "img/bad/noai.jpg": "noai", "img/bad/slow.jpg": "timeout",
        "img/bad/to-private.jpg": "robots_disallowed", "img/bad/short-body.jpg": "truncated_download",
        "img/diagram.svg": "unsupported_format",
    }
    assert {path: by_path[path]["drop_reason"] for path in expected} == expected
    assert by_path["img/bad/control.jpg"]["status"] == "success"
    assert by_path["img/bad/otherbot-noimageai.jpg"]["status"] == "success"  # directive for another bot


@pytest.mark.slow
def test_robots_disallowed_images_never_requested(run):
    _, _, _, access_log = run
    assert not [path for path in access_log if path.startswith("/private/")]


@pytest.mark.slow
def test_tars_hold_exactly_the_successes_with_metadata(run):
    output, _, _, _ = run
    rows = {r["key"]: r for r in read_parquets(output / "download")}
    samples = {k: v for tar in sorted((output / "download").glob("*.tar")) for k, v in tar_samples(tar).items()}
    assert set(samples) == {k for k, r in rows.items() if r["status"] == "success"}
    for key, sample in samples.items():
        meta = json.loads(sample["json"])
        assert meta["key"] == key and meta["uid"] == rows[key]["uid"]
        assert sample["txt"].decode() == rows[key]["caption"]
        assert len(rows[key]["sha256"]) == 64
        if rows[key]["large_width"]:
            assert "large.jpg" in sample and max(rows[key]["large_width"], rows[key]["large_height"]) <= 512


@pytest.mark.slow
def test_rerun_is_a_no_op(run):
    output, config, _, _ = run
    before = {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file() and p.name != "config.yaml"}
    again = webli("run", "-c", str(config), "--until", "download")
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file() and p.name != "config.yaml"}
    assert after == before


@pytest.mark.slow
def test_resolved_config_is_saved(run):
    output, _, _, _ = run
    saved = (output / "config.yaml").read_text()
    assert "allow_private_networks: true" in saved and "image_size: 256" in saved


def test_unknown_config_key_fails_fast_with_its_name(tmp_path):
    config = write_config(tmp_path / "bad.yaml", {"output": str(tmp_path / "o"), "crawl": {"max_page": 3}})
    result = webli("crawl", "-c", str(config))
    assert result.returncode == 2
    assert "crawl.max_page: unknown key" in result.stderr


def test_stage_without_its_input_says_what_to_run(tmp_path):
    result = webli("download", "--output", str(tmp_path / "o"))
    assert result.returncode == 2 and "run `webli crawl` first" in result.stderr
