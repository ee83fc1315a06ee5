"""Download stage on Dask: plan shards from the crawl output up front, then one task per shard.

The plan fixes shard ids and keys before anything is fetched: pairs are
deduplicated by uid across crawl shards, ordered by uid (which also spreads
each host's images over all shards) and cut into `download.shard_size` rows.
Same pairs, same plan, same ids; so one task writes exactly one shard and a
re-run maps to the same files.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from webli import schemas
from webli.pipeline.cluster import dask_client, run_shards
from webli.pipeline.config import Config, ConfigError
from webli.pipeline.storage import StageDir, shard_name, sum_stats
from webli.stages.download import download_shard, install_download_opener
from webli.stages.robots import user_agent_token

log = logging.getLogger(__name__)
STAGE = "download"
PLAN_DIR = "_plan"
PLAN_FILE = f"{PLAN_DIR}/plan.json"


def planned_keys(shard_id: int, rows: int, shard_size: int) -> list[str]:
    """img2dataset's key format: shard id then row number, zero-padded, no dots."""
    sample_digits = max(1, math.ceil(math.log10(shard_size)))
    width = 5 + sample_digits
    return [f"{shard_id * 10 ** sample_digits + row:0{width}d}" for row in range(rows)]


def unique_pairs(crawl: StageDir) -> tuple[pa.Table, list[str], int]:
    """Every crawled pair once (first occurrence by crawl shard), ordered by uid.

    Returns the table, the crawl shard files read, and how many duplicates
    across crawl shards were dropped.
    """
    files = [f"{shard_name(i)}.parquet" for i in sorted(crawl.done_shards())]
    if not files:
        raise ConfigError(f"no finished crawl shards under {crawl.path}: run `webli crawl` first")
    columns = ["uid", "url", "alt", "page_url", "language", "language_score"]
    pairs = pa.concat_tables([crawl.read_table(f, columns) for f in files])
    _, first = np.unique(pairs.column("uid").to_numpy(zero_copy_only=False), return_index=True)
    unique = pairs.take(pa.array(np.sort(first))).sort_by("uid")
    return unique.rename_columns(["caption" if c == "alt" else c for c in columns]), files, \
        pairs.num_rows - unique.num_rows


def plan_download(config: Config) -> dict:
    """Write (once) the download plan under download/_plan/; returns its summary."""
    store = StageDir(config.output, STAGE)
    if store.fs.exists(store.file(PLAN_FILE)):
        return store.read_json(PLAN_FILE)
    pairs, crawl_files, duplicates = unique_pairs(StageDir(config.output, "crawl"))
    size = config.download.shard_size
    shards = max(1, math.ceil(pairs.num_rows / size))
    for shard_id in range(shards):
        chunk = pairs.slice(shard_id * size, size)
        chunk = chunk.append_column("key", pa.array(planned_keys(shard_id, chunk.num_rows, size)))
        store.write_table(f"{PLAN_DIR}/{shard_name(shard_id)}.parquet", chunk, schemas.DOWNLOAD_PLAN)
    summary = {"shards": shards, "rows": pairs.num_rows, "shard_size": size, "crawl_shards": crawl_files,
               "duplicates_across_crawl_shards": duplicates}
    store.write_json(PLAN_FILE, summary)  # written last: the plan is complete
    log.info("download plan: %d pairs in %d shard(s) (%d duplicates across crawl shards dropped)",
             pairs.num_rows, shards, duplicates)
    return summary


def check_plan_current(config: Config, plan: dict) -> None:
    """Refuse to download from a plan made before the crawl output changed."""
    crawl = StageDir(config.output, "crawl")
    current = [f"{shard_name(i)}.parquet" for i in sorted(crawl.done_shards())]
    if current != plan["crawl_shards"]:
        raise ConfigError(
            f"the crawl output changed after the download was planned ({len(plan['crawl_shards'])} crawl shards "
            f"then, {len(current)} now). Delete {StageDir(config.output, STAGE).path} to plan again.")


def download_task(shard_id: int, config: Config) -> dict:
    """Download one planned shard: tar and Parquet renamed into place, then the stats JSON."""
    store = StageDir(config.output, STAGE)
    if store.is_done(shard_id):
        return store.read_json(f"{shard_name(shard_id)}_stats.json")
    agent = user_agent_token(config.crawl.user_agent)
    robots = install_download_opener(config.crawl.allow_private_networks, config.download.max_redirects,
                                     config.download.obey_robots, config.crawl.user_agent, agent,
                                     config.download.timeout)
    plan = store.read_table(f"{PLAN_DIR}/{shard_name(shard_id)}.parquet")
    with tempfile.TemporaryDirectory(prefix=f"webli-download-{shard_name(shard_id)}-") as work:
        table, tar_path, stats = download_shard(plan, shard_id, Path(work), config.download, agent,
                                                config.crawl.allow_private_networks, robots)
        with store.atomic_path(f"{shard_name(shard_id)}.tar") as tmp:
            store.fs.put_file(str(tar_path), tmp)
    store.write_table(f"{shard_name(shard_id)}.parquet", table, schemas.DOWNLOAD)
    store.write_stats(shard_id, {**stats, "shard": shard_id})
    return stats


def run_download(config: Config) -> dict:
    """Run the download stage; returns the summed stats of every shard."""
    plan = plan_download(config)
    check_plan_current(config, plan)
    store = StageDir(config.output, STAGE)
    store.remove_stale_temporaries()
    todo = [i for i in range(plan["shards"]) if not store.is_done(i)]
    log.info("download: %d shard(s), %d to do", plan["shards"], len(todo))
    if todo:
        workers = min(len(todo), config.download.processes or config.cluster.workers)
        with dask_client(config.cluster, workers, glibc_defaults=True) as client:
            run_shards(client, download_task, todo, description="download",
                       retries=config.cluster.task_retries, args=(config,))
    return sum_stats(list(store.read_all_stats().values()))

