"""OCR stage on Dask: one task per finished download shard, writing `ocr/NNNNN.parquet` + stats.

Metadata only: each sidecar has one row per successfully downloaded image of
its shard, keyed by `key`. Tesseract runs as one single-threaded process at
a time per worker (`OMP_THREAD_LIMIT=1`), so the cluster's one worker per
core keeps every core busy without oversubscribing it.
"""

from __future__ import annotations

import io
import logging

from webli.pipeline.cluster import dask_client, run_shards
from webli.pipeline.config import Config, ConfigError
from webli.pipeline.storage import StageDir, shard_name, sum_counts, sum_stats
from webli.schemas import ocr as schema
from webli.stages.ocr.shard import explicit_packs, ocr_shard
from webli.stages.ocr.tesseract import TesseractMissing, installed_packs, require_single_thread

log = logging.getLogger(__name__)
STAGE = "ocr"


def ocr_task(shard_id: int, config: Config) -> dict:
    """OCR one download shard: the sidecar renamed into place, then the stats JSON."""
    store, download = StageDir(config.output, STAGE), StageDir(config.output, "download")
    name = shard_name(shard_id)
    if store.is_done(shard_id):
        return store.read_json(f"{name}_stats.json")
    require_single_thread()
    installed = installed_packs()
    table = download.read_table(f"{name}.parquet")
    tar_path = download.file(f"{name}.tar")
    # A missing tar reads as an empty stream: every image is then counted as missing, not a failed task.
    with download.fs.open(tar_path, "rb") if download.fs.exists(tar_path) else io.BytesIO() as tar:
        sidecar, stats = ocr_shard(table, tar, download.url(f"{name}.tar"), config.ocr, installed)
    store.write_table(f"{name}.parquet", sidecar, schema.OCR)
    store.write_stats(shard_id, {**stats, "shard": shard_id})
    return stats


def check_tesseract(config: Config) -> None:
    """Fail before starting workers if tesseract or a configured pack is missing here."""
    try:
        explicit_packs(config.ocr, installed_packs())
    except TesseractMissing as err:
        raise ConfigError(str(err)) from None


def run_ocr(config: Config) -> dict:
    """Run the OCR stage over every finished download shard; returns the summed stats."""
    download, store = StageDir(config.output, "download"), StageDir(config.output, STAGE)
    shards = sorted(download.done_shards())
    if not shards:
        raise ConfigError(f"no finished download shards under {download.path}: run `webli download` first")
    if not config.cluster.scheduler:
        check_tesseract(config)
    store.remove_stale_temporaries()
    todo = [i for i in shards if not store.is_done(i)]
    log.info("ocr: %d download shard(s), %d to do", len(shards), len(todo))
    if todo:
        workers = min(len(todo), config.ocr.processes or config.cluster.workers)
        with dask_client(config.cluster, workers) as client:
            run_shards(client, ocr_task, todo, description="ocr", retries=config.cluster.task_retries,
                       args=(config,))
    return sum_ocr_stats(list(store.read_all_stats().values()))


def sum_ocr_stats(stats: list[dict]) -> dict:
    """sum_stats plus the OCR extras (problems, statuses, packs, scripts, words) summed."""
    total = sum_stats(stats)
    total["stage"] = STAGE
    for field in ("problems_by_reason", "status_counts", "packs", "scripts"):
        total[field] = dict(sorted(sum_counts(stats, field).items(), key=lambda kv: (-kv[1], kv[0])))
    for field in ("images_with_words", "read_again_with_margin", "words"):
        total[field] = sum(record.get(field, 0) for record in stats)
    total["ocr_seconds"] = round(sum(record.get("ocr_seconds", 0.0) for record in stats), 3)
    return total
