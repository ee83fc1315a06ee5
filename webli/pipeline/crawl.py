"""Crawl stage on Dask: plan shards (one per WARC file or per seed host), run, record."""

from __future__ import annotations

import glob
import logging
from urllib.parse import urlsplit

import fsspec

from webli import schemas
from webli.pipeline.cluster import dask_client, run_shards
from webli.pipeline.config import Config, ConfigError
from webli.pipeline.storage import StageDir, shard_name, sum_stats
from webli.stages.crawl.shard import crawl_seeds, crawl_warc

log = logging.getLogger(__name__)
STAGE = "crawl"
PLAN_FILE = "_plan.json"


def read_seeds(config: Config) -> list[str]:
    """Seeds from `crawl.seeds` and `crawl.seeds_file` (one URL per line, '#' comments)."""
    seeds = list(config.crawl.seeds)
    if config.crawl.seeds_file:
        with fsspec.open(config.crawl.seeds_file, "rt", encoding="utf-8") as f:
            lines = [line.split("#", 1)[0].strip() for line in f]
        bad = [line for line in lines if line and not line.startswith(("http://", "https://"))]
        if bad:
            raise ConfigError(f"crawl.seeds_file {config.crawl.seeds_file}: not http(s) URLs: {bad[:3]}")
        seeds += [line for line in lines if line]
    return sorted(set(seeds))


def expand_warcs(patterns: list[str]) -> list[str]:
    """Every WARC file matching the configured paths or globs, sorted, as fsspec URLs."""
    files = []
    for pattern in patterns:
        fs, path = fsspec.core.url_to_fs(pattern)
        matches = fs.glob(path) if glob.has_magic(path) else [path] * fs.exists(path)
        if not matches:
            raise ConfigError(f"crawl.warc: nothing matches {pattern!r}")
        has_protocol = fsspec.core.split_protocol(pattern)[0] is not None
        files += [fs.unstrip_protocol(m) if has_protocol else m for m in matches]
    return sorted(set(files))


def plan_crawl(config: Config) -> list[dict]:
    """The crawl shards: one per WARC file, then one per seed host, in a stable order."""
    shards = [{"warc": path} for path in expand_warcs(config.crawl.warc)]
    by_host: dict[str, list[str]] = {}
    for seed in read_seeds(config):
        by_host.setdefault(urlsplit(seed).netloc, []).append(seed)
    shards += [{"seeds": by_host[host]} for host in sorted(by_host)]
    if not shards:
        raise ConfigError("crawl: nothing to crawl; set crawl.seeds, crawl.seeds_file or crawl.warc")
    return shards


def load_or_save_plan(store: StageDir, shards: list[dict]) -> list[dict]:
    """Keep shard ids stable across re-runs: refuse a different plan over an existing one."""
    if store.fs.exists(store.file(PLAN_FILE)):
        existing = store.read_json(PLAN_FILE)
        if existing != shards:
            raise ConfigError(
                f"{store.path} was crawled with other seeds or WARC files. "
                "Use a new output root, or delete that folder to crawl again.")
        return existing
    store.write_json(PLAN_FILE, shards)
    return shards


def crawl_task(shard_id: int, shard: dict, config: Config) -> dict:
    """Crawl one shard and write its pairs, pages and stats (last)."""
    store = StageDir(config.output, STAGE)
    if store.is_done(shard_id):
        return store.read_json(f"{shard_name(shard_id)}_stats.json")
    if "warc" in shard:
        with fsspec.open(shard["warc"], "rb") as stream:
            pairs, pages, stats = crawl_warc(stream, config.crawl)
    else:
        pairs, pages, stats = crawl_seeds(shard["seeds"], config.crawl)
    store.write_table(f"{shard_name(shard_id)}.parquet", pairs, schemas.CRAWL_PAIRS)
    store.write_table(f"{shard_name(shard_id)}_pages.parquet", pages, schemas.CRAWL_PAGES)
    store.write_stats(shard_id, {**stats, "shard": shard_id, "source": shard})
    return stats


def run_crawl(config: Config) -> dict:
    """Run the crawl stage; returns the summed stats of every shard."""
    store = StageDir(config.output, STAGE)
    store.makedirs()
    store.remove_stale_temporaries()
    shards = load_or_save_plan(store, plan_crawl(config))
    todo = [i for i in range(len(shards)) if not store.is_done(i)]
    log.info("crawl: %d shard(s), %d to do", len(shards), len(todo))
    if todo:
        with dask_client(config.cluster, min(len(todo), config.cluster.workers)) as client:
            run_shards(client, _crawl_one, todo, description="crawl",
                       retries=config.cluster.task_retries, args=(shards, config))
    return sum_stats(list(store.read_all_stats().values()))


def _crawl_one(shard_id: int, shards: list[dict], config: Config) -> dict:
    return crawl_task(shard_id, shards[shard_id], config)
