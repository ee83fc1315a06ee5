"""Pure helpers of the crawl and download pipelines: plans, keys, seeds, scope, charsets."""

import gzip

import pyarrow as pa
import pytest

from webli import schemas
from webli.pipeline.config import ConfigError, validate_config
from webli.pipeline.crawl import expand_warcs, load_or_save_plan, plan_crawl, read_seeds
from webli.pipeline.download import check_plan_current, plan_download, planned_keys
from webli.pipeline.storage import StageDir
from webli.stages.crawl.fetch import fetch_error_reason
from webli.stages.crawl.shard import Frontier, decode_html, in_scope


def test_planned_keys_have_no_dots_and_encode_shard_and_row():
    assert planned_keys(3, 2, 10_000) == ["000030000", "000030001"]
    assert planned_keys(0, 1, 10) == ["000000"]


def test_seeds_from_file_are_merged_sorted_and_checked(tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# comment\nhttp://127.0.0.1:9/b\n\nhttp://127.0.0.1:9/a  # inline\n")
    config = validate_config({"output": "x", "crawl": {"seeds": ["http://127.0.0.1:9/a"], "seeds_file": str(seeds)}})
    assert read_seeds(config) == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    seeds.write_text("ftp://nope\n")
    with pytest.raises(ConfigError, match="not http"):
        read_seeds(config)


def test_crawl_plan_one_shard_per_warc_then_per_host(tmp_path):
    for name in ("b.warc.gz", "a.warc.gz"):
        (tmp_path / name).write_bytes(gzip.compress(b""))
    config = validate_config({"output": "x", "crawl": {
        "warc": [str(tmp_path / "*.warc.gz")],
        "seeds": ["http://127.0.0.2:9/", "http://127.0.0.1:9/x", "http://127.0.0.1:9/y"]}})
    assert plan_crawl(config) == [
        {"warc": str(tmp_path / "a.warc.gz")}, {"warc": str(tmp_path / "b.warc.gz")},
        {"seeds": ["http://127.0.0.1:9/x", "http://127.0.0.1:9/y"]}, {"seeds": ["http://127.0.0.2:9/"]}]


def test_missing_warc_and_empty_crawl_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="nothing matches"):
        expand_warcs([str(tmp_path / "none-*.warc.gz")])
    with pytest.raises(ConfigError, match="nothing to crawl"):
        plan_crawl(validate_config({"output": "x"}))


def test_crawl_plan_cannot_change_under_an_existing_output(tmp_path):
    store = StageDir(str(tmp_path), "crawl")
    assert load_or_save_plan(store, [{"seeds": ["http://127.0.0.1:9/"]}])
    with pytest.raises(ConfigError, match="crawled with other seeds"):
        load_or_save_plan(store, [{"seeds": ["http://127.0.0.1:8/"]}])


def write_crawl_shard(store: StageDir, shard_id: int, pairs: list[tuple[str, str]]) -> None:
    rows = {"uid": [u for u, _ in pairs], "url": [f"http://h/{u}.jpg" for u, _ in pairs], "alt": [a for _, a in pairs],
            "page_url": ["http://h/"] * len(pairs), "page_title": [None] * len(pairs),
            "html_lang": [None] * len(pairs), "language": ["en"] * len(pairs),
            "language_score": [1.0] * len(pairs), "fetch_time": [None] * len(pairs)}
    store.write_table(f"{shard_id:05d}.parquet", pa.table(rows), schemas.CRAWL_PAIRS)
    store.write_stats(shard_id, {"total": len(pairs), "forwarded": len(pairs), "dropped_by_reason": {}})


def test_download_plan_dedups_across_crawl_shards_and_orders_by_uid(tmp_path):
    crawl = StageDir(str(tmp_path), "crawl")
    write_crawl_shard(crawl, 0, [("c", "x"), ("a", "y")])
    write_crawl_shard(crawl, 1, [("b", "z"), ("a", "y")])
    config = validate_config({"output": str(tmp_path), "download": {"shard_size": 2}})
    summary = plan_download(config)
    assert summary["shards"] == 2 and summary["rows"] == 3 and summary["duplicates_across_crawl_shards"] == 1
    store = StageDir(str(tmp_path), "download")
    first = store.read_table("_plan/00000.parquet").to_pylist()
    assert [(r["key"], r["uid"], r["caption"]) for r in first] == [("000000", "a", "y"), ("000001", "b", "z")]
    plan = store.read_table("_plan/00001.parquet").to_pylist()
    assert [(r["key"], r["uid"]) for r in plan] == [("00001" + "0", "c")]
    assert plan_download(config) == summary  # planned once, reused
    write_crawl_shard(crawl, 2, [("d", "w")])
    with pytest.raises(ConfigError, match="crawl output changed"):
        check_plan_current(config, summary)


def test_download_plan_needs_a_crawl(tmp_path):
    with pytest.raises(ConfigError, match="run `webli crawl` first"):
        plan_download(validate_config({"output": str(tmp_path)}))


@pytest.mark.parametrize("url, scope, inside", [
    ("http://127.0.0.1:9/docs/a.html", "host", True), ("http://127.0.0.2:9/docs/a.html", "host", False),
    ("http://127.0.0.1:9/docs/b/c.html", "prefix", True), ("http://127.0.0.1:9/other.html", "prefix", False)])
def test_scope(url, scope, inside):
    assert in_scope(url, ["http://127.0.0.1:9/docs/index.html"], scope) is inside


def test_frontier_admits_each_page_once_within_budget():
    frontier = Frontier(max_pages=3)
    assert frontier.admit(["http://h/a?y=1&x=2", "http://h/a?x=2&y=1", "http://h/b#frag"]) == \
        ["http://h/a?y=1&x=2", "http://h/b#frag"]
    assert frontier.admit(["http://h/b", "http://h/c", "http://h/d"]) == ["http://h/c"]


@pytest.mark.parametrize("body, content_type, charset", [
    (b"<meta charset='windows-1251'><p>\xcf\xf0\xe8\xe2\xe5\xf2</p>", None, "cp1251"),
    ("<p>café</p>".encode("latin-1"), "text/html; charset=ISO-8859-1", "cp1252"),
    ("<p>café</p>".encode(), "text/html", "utf-8"),
    (b"\xef\xbb\xbf<p>bom</p>", "text/html; charset=latin-1", "utf-8"),
])
def test_decode_html_charset_sources(body, content_type, charset):
    found, document = decode_html(body, content_type)
    assert found == charset
    if charset == "cp1251":
        assert "Привет" in document


@pytest.mark.parametrize("message, reason", [
    ("Read timed out", "timeout"), ("IncompleteRead(10 bytes read)", "truncated"),
    ("Connection refused", "connection_error")])
def test_fetch_error_reason(message, reason):
    assert fetch_error_reason(OSError(message)) == reason


def test_run_trains_the_bootstrap_filter_before_score_only_when_score_uses_it(tmp_path):
    from webli.pipeline.cli import pipeline_steps

    default = pipeline_steps(validate_config({"output": str(tmp_path)}))
    assert default == ["crawl", "download", "ocr", "dedup", "bootstrap-filter", "score", "select", "train", "card"]
    other = pipeline_steps(validate_config({"output": str(tmp_path), "score": {"model": "/models/clip"}}))
    assert "bootstrap-filter" not in other and other.index("score") == default.index("score") - 1


def test_run_until_a_step_that_this_run_does_not_have_says_so(tmp_path):
    from helpers import webli

    result = webli("run", "--output", str(tmp_path / "o"), "--set", "score.model=/models/clip",
                   "--until", "bootstrap-filter")
    assert result.returncode == 2 and "not a step of this run" in result.stderr
    assert not (tmp_path / "o" / "crawl").exists()


def test_bucketed_plan_equals_the_in_memory_plan(tmp_path):
    """Many small buckets (bounded memory) give the same shards, keys and duplicate count as one bucket."""
    import hashlib
    import random

    uids = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(300)]
    plans = {}
    for bucket_rows in (10_000, 17):
        root = tmp_path / f"rows{bucket_rows}"
        crawl = StageDir(str(root), "crawl")
        for shard_id in range(4):  # overlapping shards: duplicates across them
            picked = random.Random(shard_id).sample(uids, 120)
            write_crawl_shard(crawl, shard_id, [(uid, f"alt {shard_id}") for uid in picked])
        summary = plan_download(validate_config({"output": str(root), "download": {"shard_size": 25}}),
                                bucket_rows=bucket_rows)
        store = StageDir(str(root), "download")
        rows = [row for i in range(summary["shards"])
                for row in store.read_table(f"_plan/{i:05d}.parquet").to_pylist()]
        plans[bucket_rows] = (summary["rows"], summary["duplicates_across_crawl_shards"], rows)
        assert not store.fs.exists(store.file("_plan/_buckets"))
    assert plans[17] == plans[10_000]
    unique_rows, duplicates, rows = plans[17]
    assert unique_rows + duplicates == 480 and [r["uid"] for r in rows] == sorted({r["uid"] for r in rows})
    assert all(r["caption"] == f"alt {min(s for s in range(4) if r['uid'] in random.Random(s).sample(uids, 120))}"
               for r in rows[:20])  # first occurrence: the earliest crawl shard's alt text
