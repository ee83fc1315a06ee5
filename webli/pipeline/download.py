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
import pyarrow.parquet as pq

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


PLAN_COLUMNS = ["uid", "url", "alt", "page_url", "language", "language_score"]
PLAN_BUCKET_ROWS = 500_000  # crawl pairs the planner holds in memory at once
BUCKET_DIR = f"{PLAN_DIR}/_buckets"
UID_SAMPLE_PER_BUCKET = 64  # uids sampled per bucket to place the bucket boundaries


def crawl_files(crawl: StageDir) -> list[str]:
    """The finished crawl shards' pair files, in shard order; a clear error when there are none."""
    files = [f"{shard_name(i)}.parquet" for i in sorted(crawl.done_shards())]
    if not files:
        raise ConfigError(f"no finished crawl shards under {crawl.path}: run `webli crawl` first")
    return files


def first_occurrences_by_uid(pairs: pa.Table) -> pa.Table:
    """Each uid once (its first row), ordered by uid; `alt` renamed `caption` as the plan calls it."""
    _, first = np.unique(pairs.column("uid").to_numpy(zero_copy_only=False), return_index=True)
    unique = pairs.take(pa.array(np.sort(first))).sort_by("uid")
    return unique.rename_columns(["caption" if c == "alt" else c for c in unique.column_names])


def bucket_boundaries(crawl: StageDir, files: list[str], buckets: int) -> np.ndarray:
    """buckets - 1 sorted uids that cut the uid range into buckets of about equal size, from a sample of
    every crawl shard's uids (one shard's uid column in memory at a time)."""
    if buckets == 1:
        return np.array([], dtype=str)
    sample = []
    for name in files:
        uids = crawl.read_table(name, ["uid"]).column("uid").to_numpy(zero_copy_only=False)
        stride = max(1, len(uids) * len(files) // (buckets * UID_SAMPLE_PER_BUCKET))
        sample.append(uids[::stride])
    ordered = np.sort(np.concatenate(sample).astype(str))
    cuts = np.linspace(0, len(ordered), buckets + 1)[1:-1].astype(int)
    return np.unique(ordered[cuts])


def split_by_bucket(pairs: pa.Table, boundaries: np.ndarray) -> list[tuple[int, pa.Table]]:
    """(bucket, rows) for every non-empty bucket of `pairs`, rows in their original order; bucket b holds
    the uids between boundaries b-1 (inclusive) and b (exclusive), so buckets in order are uids in order."""
    if len(boundaries) == 0:
        return [(0, pairs)]
    buckets = np.searchsorted(boundaries, pairs.column("uid").to_numpy(zero_copy_only=False).astype(str),
                              side="right")
    return [(int(b), pairs.filter(pa.array(buckets == b))) for b in np.unique(buckets)]


class PlanWriter:
    """Cuts a uid-ordered stream of unique pairs into plan shards of `shard_size` rows, writing each as it
    fills: memory holds one bucket plus at most one partial shard."""

    def __init__(self, store: StageDir, shard_size: int):
        self.store, self.shard_size, self.shards, self.rows = store, shard_size, 0, 0
        self.pending: pa.Table | None = None

    def add(self, pairs: pa.Table) -> None:
        table = pairs if self.pending is None else pa.concat_tables([self.pending, pairs])
        full = table.num_rows // self.shard_size
        for i in range(full):
            self.write(table.slice(i * self.shard_size, self.shard_size))
        self.pending = table.slice(full * self.shard_size)

    def finish(self) -> int:
        """Write the last, partial shard (or an empty one if there were no pairs); returns the shard count."""
        if self.shards == 0 or (self.pending is not None and self.pending.num_rows):
            self.write(self.pending if self.pending is not None else
                       schemas.DOWNLOAD_PLAN.empty_table().drop_columns(["key"]))
        return self.shards

    def write(self, chunk: pa.Table) -> None:
        keys = pa.array(planned_keys(self.shards, chunk.num_rows, self.shard_size), pa.string())
        self.store.write_table(f"{PLAN_DIR}/{shard_name(self.shards)}.parquet", chunk.append_column("key", keys),
                               schemas.DOWNLOAD_PLAN)
        self.shards, self.rows = self.shards + 1, self.rows + chunk.num_rows


def parquet_rows(store: StageDir, name: str) -> int:
    """Rows of a Parquet file, from its footer."""
    with store.fs.open(store.file(name), "rb") as f:
        return pq.ParquetFile(f).metadata.num_rows


def plan_download(config: Config, bucket_rows: int = PLAN_BUCKET_ROWS) -> dict:
    """Write (once) the download plan under download/_plan/; returns its summary.

    Bounded memory at any crawl size: the crawl pairs are first split by uid
    range into buckets of about `bucket_rows` pairs (one crawl shard read at a
    time), then each bucket in uid order is deduplicated, sorted and cut into
    plan shards. The same uid always lands in the same bucket, so dropping
    duplicates per bucket drops them across the whole crawl.
    """
    store = StageDir(config.output, STAGE)
    if store.fs.exists(store.file(PLAN_FILE)):
        return store.read_json(PLAN_FILE)
    crawl = StageDir(config.output, "crawl")
    files = crawl_files(crawl)
    if store.fs.exists(store.file(PLAN_DIR)):  # a plan killed before plan.json: start it again
        store.fs.rm(store.file(PLAN_DIR), recursive=True)
    total = sum(parquet_rows(crawl, name) for name in files)
    buckets = max(1, math.ceil(total / bucket_rows))
    boundaries = bucket_boundaries(crawl, files, buckets)
    for index, name in enumerate(files):
        for bucket, rows in split_by_bucket(crawl.read_table(name, PLAN_COLUMNS), boundaries):
            with store.atomic_path(f"{BUCKET_DIR}/{bucket:05d}/{shard_name(index)}.parquet") as tmp, \
                    store.fs.open(tmp, "wb") as out:
                pq.write_table(rows, out)
    writer, unique_rows = PlanWriter(store, config.download.shard_size), 0
    for bucket in range(buckets):
        folder = store.file(f"{BUCKET_DIR}/{bucket:05d}")
        names = sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)) \
            if store.fs.exists(folder) else []
        if names:  # crawl-shard order, so the first occurrence of a uid is the earliest shard's
            unique = first_occurrences_by_uid(pa.concat_tables(
                [store.read_table(f"{BUCKET_DIR}/{bucket:05d}/{n}") for n in names]))
            unique_rows += unique.num_rows
            writer.add(unique)
    shards = writer.finish()
    if store.fs.exists(store.file(BUCKET_DIR)):
        store.fs.rm(store.file(BUCKET_DIR), recursive=True)
    summary = {"shards": shards, "rows": unique_rows, "shard_size": config.download.shard_size,
               "crawl_shards": files, "duplicates_across_crawl_shards": total - unique_rows}
    store.write_json(PLAN_FILE, summary)  # written last: the plan is complete
    log.info("download plan: %d pairs in %d shard(s) (%d duplicates across crawl shards dropped, %d bucket(s))",
             unique_rows, shards, total - unique_rows, buckets)
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

