"""Why the score stage calls `mallopt` in its Dask workers: the same shards scored in a worker with and without it.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_score_dask.py --shards /tmp/webli-bench-score/realweb

Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536. Setting
it at all also freezes glibc's mmap threshold at 128 KiB, so each activation
tensor larger than that is mapped and unmapped again on every forward pass.
Three runs of the same `score_shard` calls (tiny model, every download shard,
one torch thread), interleaved `--reps` times:

  - worker, allocator as Dask leaves it: a fresh one-worker LocalCluster
    (the project's `dask_client`), the model loaded with `load_clip`;
  - worker, after `reuse_freed_memory()` (what `webli score` does): the same,
    in another fresh cluster;
  - this process, no Dask (glibc's default, dynamic thresholds).

The Markdown report goes to stdout and benchmarks/results/score_dask.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import alternating, fmt_range, log, md_table  # noqa: E402

# glibc reads it once, at start; Dask's nanny later writes it into this process's environment too.
TRIM_AT_START = os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")
MODES = ("worker, Dask's allocator setting", "worker, after reuse_freed_memory()", "this process, no Dask")


def score_shards(model_folder: str, download: str, shard_ids: list[int], tune: bool) -> tuple[int, float, str]:
    """Score the shards in the calling process: (samples, seconds, MALLOC_TRIM_THRESHOLD_ seen)."""
    import pyarrow.parquet as pq
    import torch

    from webli.pipeline.score import reuse_freed_memory
    from webli.stages.score import ClipScorer, iter_tar_images, score_shard
    from webli.stages.train.models import load_clip

    torch.set_num_threads(1)
    if tune:
        reuse_freed_memory()
    model, preprocess, tokenizer = load_clip(model_folder, None, "cpu")
    scorer = ClipScorer(model, preprocess, tokenizer, torch.device("cpu"), "bench")
    samples, started = 0, time.perf_counter()
    for shard_id in shard_ids:
        rows = pq.read_table(f"{download}/{shard_id:05d}.parquet")
        with open(f"{download}/{shard_id:05d}.tar", "rb") as tar:
            samples += score_shard(rows, iter_tar_images(tar), scorer, 64)[1]["scored"]
    return samples, time.perf_counter() - started, os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")


def in_worker(model_folder: str, download: str, shard_ids: list[int], tune: bool) -> tuple[int, float, str]:
    """The same, in a fresh one-worker LocalCluster started the way every stage starts it."""
    from webli.pipeline.cluster import dask_client
    from webli.pipeline.config import ClusterConfig

    with dask_client(ClusterConfig(workers=1), 1) as client:
        return client.submit(score_shards, model_folder, download, shard_ids, tune, pure=False).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, default=Path("/tmp/webli-bench-score/realweb"))
    parser.add_argument("--model", type=Path, default=Path("/tmp/webli-bench-score/models/webli-tiny"),
                        help="a model folder (model_config.json + model.pt); bench_score.py makes this one")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    download = str(args.shards / "download")
    shard_ids = sorted(int(p.name[:5]) for p in (args.shards / "download").glob("*_stats.json"))
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    env_seen = {}
    for rep in range(args.reps):
        for mode in alternating(MODES, rep):
            if mode == MODES[2]:
                samples, seconds, _ = score_shards(str(args.model), download, shard_ids, tune=False)
                env = TRIM_AT_START
            else:
                samples, seconds, env = in_worker(str(args.model), download, shard_ids, tune=mode == MODES[1])
            rates[mode].append(samples / seconds)
            env_seen[mode] = env
            log(f"rep {rep} {mode}: {samples} samples in {seconds:.1f} s")
    baseline = rates[MODES[2]]
    rows = [[mode, env_seen[mode], fmt_range(values), fmt_range([v / b for v, b in zip(values, baseline)], 2)]
            for mode, values in rates.items()]
    text = "\n".join([
        "# Score stage: the allocator in Dask workers", "",
        common.machine_note(("torch", "distributed")), "",
        f"Command: `{common.command_line()}`", "",
        f"Tiny model (webli-tiny, 64 px), {len(shard_ids)} realweb download shards, batch 64, one torch thread; "
        f"median (min-max) of {args.reps} interleaved repetitions; model loading not timed.", "",
        md_table(["where", "MALLOC_TRIM_THRESHOLD_", "samples/s/core", "vs this process"], rows), "",
        "`webli score` runs its workers in the second configuration.",
    ])
    print(text)
    (common.RESULTS_DIR / "score_dask.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
