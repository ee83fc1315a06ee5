"""Dask set-up and the one way stages run: one task per shard.

A LocalCluster (one single-threaded worker process per core) unless the
config or `--scheduler` names an existing scheduler. Tasks are retried by
Dask; a shard that still fails is reported and the others finish, so a
re-run only has the failed shards left to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import dask
from dask.distributed import Client, LocalCluster, as_completed
from tqdm import tqdm

from webli.pipeline.config import ClusterConfig

log = logging.getLogger(__name__)

# Set in every worker process so that BLAS / OpenMP / tesseract do not
# oversubscribe the cores the cluster already uses one process each.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OMP_THREAD_LIMIT": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",
}


# Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536
# (`distributed.nanny.pre-spawn-environ`) and, being in-process in a
# LocalCluster, also leaves it in this process's environment for every later
# child. Set before glibc starts, it also freezes glibc's mmap threshold at
# 128 KiB, so every buffer above that (each downloaded file, decoded image,
# resized copy) is mmap'd and unmapped again: 5-8x the page faults and about
# 1.5-2x the system time of the same shard in a plain process
# (benchmarks/results/download.md). A value the user exported before any
# cluster started is theirs and is kept.
MALLOC_TRIM_ENV = "MALLOC_TRIM_THRESHOLD_"
_USER_MALLOC_TRIM = os.environ.get(MALLOC_TRIM_ENV)

# Monitoring cadence of the LocalCluster's servers (scheduler, nannies,
# workers). Dask's defaults wake every event loop 50 times a second to time
# itself (`tick`, only used for "event loop unresponsive" warnings, whose 3 s
# limit this keeps) and sample host CPU, network and disk counters twice a
# second for the dashboard: 1.6-2 % of a core per idle worker and 4 % in the
# driver, and in a busy worker each wake-up also waits for the GIL that 32
# download threads hold. The memory monitor (pause, spill, restart on the
# memory limit) keeps its default.
QUIET_MONITORING = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


class ShardFailures(RuntimeError):
    """Some shards failed after their retries; the message lists them."""


@contextmanager
def dask_client(config: ClusterConfig, workers: int | None = None, *,
                glibc_defaults: bool = False) -> Iterator[Client]:
    """A Dask client for one stage: the configured scheduler, or a fresh LocalCluster.

    With `glibc_defaults`, the LocalCluster's workers start with the C
    library's own allocator settings instead of Dask's MALLOC_TRIM_THRESHOLD_
    (see MALLOC_TRIM_ENV): for stages that allocate and free many large
    buffers per second in many threads, like the download. Workers of an
    existing scheduler are left as they were started.
    """
    if config.scheduler:
        log.info("joining Dask scheduler %s", config.scheduler)
        with Client(config.scheduler) as client:
            yield client
        return
    os.environ.update(WORKER_ENV)  # inherited by the worker processes
    # The worker's statistical profiler samples every thread each 10 ms; next
    # to img2dataset's 32 download threads it cost 1.3-1.5x the CPU of the same
    # shard in a plain process (benchmarks/results/download.md).
    dask.config.set({"distributed.worker.profile.enabled": False})
    n_workers = workers or config.workers
    settings = {} if config.dashboard else dict(QUIET_MONITORING)
    if glibc_defaults and _USER_MALLOC_TRIM is None:
        # None: the nannies (which keep their environment for restarts) do not set it at all; and
        # drop the copy an earlier stage's nannies left here (theirs set it again when they spawn).
        settings[f"distributed.nanny.pre-spawn-environ.{MALLOC_TRIM_ENV}"] = None
        os.environ.pop(MALLOC_TRIM_ENV, None)
    with dask.config.set(settings):  # read when the servers start; nannies keep a copy for restarts
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=config.memory_limit,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:8787" if config.dashboard else None,
        )
    log.info("started LocalCluster with %d single-threaded workers%s", n_workers,
             " (glibc allocator defaults)" if glibc_defaults and _USER_MALLOC_TRIM is None else "")
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def run_shards(client: Client, task: Callable[..., dict], shard_ids: Sequence[int], *,
               description: str, retries: int, args: Iterable = ()) -> dict[int, dict]:
    """Run `task(shard_id, *args)` once per shard on the cluster, with a progress bar.

    Returns the stats of every shard that succeeded; raises ShardFailures
    after all tasks ended if any failed, naming them and the first errors.
    """
    if not shard_ids:
        return {}
    args = tuple(args)
    futures = [client.submit(task, shard_id, *args, key=f"{description}-{shard_id}-{client.id}",
                             retries=retries, pure=False) for shard_id in shard_ids]
    shard_of = {f.key: s for f, s in zip(futures, shard_ids)}
    results: dict[int, dict] = {}
    failures: dict[int, str] = {}
    with tqdm(total=len(futures), desc=description, unit="shard", dynamic_ncols=True) as progress:
        for future in as_completed(futures):
            shard_id = shard_of[future.key]
            try:
                results[shard_id] = future.result()
            except Exception as err:  # noqa: BLE001 - reported below with the shard id
                failures[shard_id] = f"{type(err).__name__}: {err}"
                log.error("%s shard %d failed after %d retries: %s", description, shard_id, retries, err)
            progress.update()
    if failures:
        first = "; ".join(f"{s}: {e}" for s, e in sorted(failures.items())[:3])
        raise ShardFailures(f"{len(failures)} {description} shard(s) failed ({first}). "
                            "Finished shards are kept: fix the cause and run the stage again.")
    return results
