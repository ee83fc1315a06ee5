"""Score stage on Dask: the CLIP model is resolved once by the driver, then one task per download shard.

The driver fails fast, before any cluster starts: an unknown model, missing
weights (a pretrained tag that is not cached while the hub is offline, a
missing bootstrap filter), a checkpoint that does not fit its config. Each
worker process loads the model once and keeps it for every shard it scores.
A shard's sidecar `score/NNNNN.parquet` is written, then its stats JSON.

`score.model: bootstrap` is the set of K cross-fitted filters that `webli
bootstrap-filter` trains (`bootstrap_filter/fold_k/`): every worker loads all
K once, and each pair is scored by the filter of its fold, which never trained
on it. Its model id names the set: `NAME@bootstrap-Kfold:sha256:DIGEST`, the
digest of the K checkpoints' digests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from webli.pipeline.cluster import dask_client, run_shards
from webli.pipeline.config import Config, ConfigError
from webli.pipeline.sections.score import BOOTSTRAP_MODEL
from webli.pipeline.storage import StageDir, shard_name, sum_counts, sum_stats
from webli.pipeline.train import STATS_FILE, fold_stage
from webli.schemas.score import SCORE_SIDECAR
from webli.stages.score import ClipScorer, FoldScorers, iter_tar_images, score_shard
from webli.stages.train.models import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    SCHEMA_PREFIXES,
    load_clip,
    resolve_device,
    resolve_model,
    resolve_pretrained,
)

log = logging.getLogger(__name__)
STAGE = "score"
BOOTSTRAP_DIR = "bootstrap_filter"
SCORED_COLUMNS = ["key", "uid", "caption", "status"]
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class ScoringModel:
    """What every worker loads: `load_clip(model, pretrained, device)`, and the id written beside each score.

    `folds`: the folders of cross-fitted models (the bootstrap filters), one per fold; every worker then loads
    them all and scores each pair with its fold's (`model` is the first of them).
    """

    model: str
    pretrained: str | None
    device: str
    model_id: str
    folds: tuple[str, ...] = ()


def missing_filter(path: str, missing: list[str]) -> ConfigError:
    """The fail-fast error for a bootstrap filter that is not (completely) trained."""
    return ConfigError(
        f"score.model is 'bootstrap' but {path} lacks {missing}: run `make bootstrap-filter` "
        "(webli bootstrap-filter) first, or set score.model and score.pretrained to another CLIP model "
        "(an open_clip name and tag, or a local checkpoint)")


def bootstrap_folders(output: str) -> list[str]:
    """The local folders of the K cross-fitted bootstrap filters, in fold order, each checked to hold its files."""
    store = StageDir(output, BOOTSTRAP_DIR)
    if not store.fs.exists(store.file(STATS_FILE)):
        raise missing_filter(store.path, [STATS_FILE])
    folds = store.read_json(STATS_FILE).get("folds")
    if not folds:
        raise ConfigError(f"{store.path} holds one bootstrap filter trained on the pairs it would score (made by "
                          f"an older version): delete {store.path} and run `make bootstrap-filter` to train the "
                          "cross-fitted filters")
    folders = [StageDir(output, fold_stage(fold)) for fold in range(folds)]
    for folder in folders:
        missing = [name for name in (CONFIG_FILE, CHECKPOINT_FILE) if not folder.fs.exists(folder.file(name))]
        if missing:
            raise missing_filter(folder.path, missing)
    protocols = {store.fs.protocol} if isinstance(store.fs.protocol, str) else set(store.fs.protocol)
    if not protocols & {"file", "local"}:
        raise ConfigError(f"the bootstrap filters must be on a local disk to load; copy {store.path} locally "
                          "and set score.model to a local copy")
    return [folder.path for folder in folders]


def file_digest(path: str) -> str:
    """Short sha256 of a checkpoint file: identifies the weights that made a score."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def describe_model(name: str, model: str, pretrained: str | None, weights: str | None) -> str:
    """The model id: `name/tag` for a pretrained tag, `name@sha256:…` for a checkpoint file."""
    if model.startswith(SCHEMA_PREFIXES):
        return model
    if pretrained and not Path(pretrained).is_file():
        return f"{name}/{pretrained}"
    return f"{name}@sha256:{file_digest(weights)}"


def resolve_bootstrap_model(config: Config) -> ScoringModel:
    """The cross-fitted bootstrap filters, identified as a set by the digests of their K checkpoints."""
    folders = bootstrap_folders(config.output)
    names, digests = [], []
    for folder in folders:
        name, beside = resolve_model(folder)
        weights, _ = resolve_pretrained(name, beside)
        names.append(name)
        digests.append(file_digest(weights))
    digest = hashlib.sha256(" ".join(digests).encode("ascii")).hexdigest()[:16]
    model_id = f"{'+'.join(dict.fromkeys(names))}@bootstrap-{len(folders)}fold:sha256:{digest}"
    return ScoringModel(folders[0], None, config.score.device, model_id, folds=tuple(folders))


def resolve_scoring_model(config: Config) -> ScoringModel:
    """Check the configured model can be loaded, without the network if offline; fail fast otherwise."""
    if config.score.model == BOOTSTRAP_MODEL:
        return resolve_bootstrap_model(config)
    model, pretrained = config.score.model, config.score.pretrained
    name, beside = resolve_model(model)
    weights, _ = resolve_pretrained(name, pretrained or beside)
    if weights is None and not model.startswith(SCHEMA_PREFIXES):
        raise ConfigError(
            f"score.model {model!r} comes without weights: set score.pretrained to an open_clip tag "
            "(e.g. laion2b_s34b_b79k for ViT-B-32) or a checkpoint file, or use score.model: bootstrap "
            "(`make bootstrap-filter`). Scores from random weights mean nothing.")
    return ScoringModel(model, pretrained, config.score.device, describe_model(name, model, pretrained, weights))


def reuse_freed_memory() -> None:
    """Let glibc keep freed tensor memory for reuse instead of unmapping it at once.

    Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also
    freezes glibc's mmap threshold at 128 KiB: every activation tensor is then
    mapped and unmapped again (page faults, zeroing) and CPU inference runs
    about twice as slow (measured in benchmarks/results/score.md). No effect
    where the C library has no `mallopt`.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    except (OSError, AttributeError) as err:
        log.debug("mallopt unavailable (%s): allocator left as is", err)


def load_scorer(model: str, pretrained: str | None, device, model_id: str) -> ClipScorer:
    """One model, loaded for scoring."""
    clip, preprocess, tokenizer = load_clip(model, pretrained, device)
    return ClipScorer(clip, preprocess, tokenizer, device, model_id)


@functools.lru_cache(maxsize=1)
def worker_scorer(spec: ScoringModel) -> ClipScorer | FoldScorers:
    """The model (or the K fold models) of this worker process, loaded on first use and kept."""
    reuse_freed_memory()
    device = resolve_device(spec.device)
    if spec.folds:
        scorer = FoldScorers(tuple(load_scorer(folder, None, device, spec.model_id) for folder in spec.folds),
                             spec.model_id)
    else:
        scorer = load_scorer(spec.model, spec.pretrained, device, spec.model_id)
    log.info("loaded %s on %s", spec.model_id, device)
    return scorer


def check_loads(spec: ScoringModel) -> None:
    """Load the model(s) once in the driver: a broken checkpoint fails here, not in every task."""
    for model in spec.folds or (spec.model,):
        load_clip(model, None if spec.folds else spec.pretrained, "cpu")


def score_task(shard_id: int, config: Config, spec: ScoringModel) -> dict:
    """Score one download shard: sidecar Parquet, then the stats JSON."""
    store = StageDir(config.output, STAGE)
    if store.is_done(shard_id):
        return store.read_json(f"{shard_name(shard_id)}_stats.json")
    download = StageDir(config.output, "download")
    rows = download.read_table(f"{shard_name(shard_id)}.parquet", SCORED_COLUMNS)
    scorer = worker_scorer(spec)
    with download.fs.open(download.file(f"{shard_name(shard_id)}.tar"), "rb") as tar:
        table, stats = score_shard(rows, iter_tar_images(tar), scorer, config.score.batch_size)
    store.write_table(f"{shard_name(shard_id)}.parquet", table, SCORE_SIDECAR)
    store.write_stats(shard_id, {**stats, "shard": shard_id})
    return stats


def check_same_model(store: StageDir, model_id: str) -> None:
    """Refuse to mix scores of two models in one run: they are not comparable."""
    others = Counter(s.get("model_id") for s in store.read_all_stats().values() if s.get("model_id") != model_id)
    if others:
        found = ", ".join(f"{n} shard(s) by {m}" for m, n in others.items())
        raise ConfigError(f"{store.path} holds scores of another model ({found}) but {model_id} is configured: "
                          f"delete {store.path} to score again with it")


def run_score(config: Config) -> dict:
    """Run the score stage; returns the summed stats of every shard."""
    shards = sorted(StageDir(config.output, "download").done_shards())
    if not shards:
        raise ConfigError(f"no finished download shards under {config.output}: run `webli download` first")
    spec = resolve_scoring_model(config)
    store = StageDir(config.output, STAGE)
    store.remove_stale_temporaries()
    check_same_model(store, spec.model_id)
    todo = [i for i in shards if not store.is_done(i)]
    log.info("score: %d shard(s), %d to do, model %s", len(shards), len(todo), spec.model_id)
    if todo:
        check_loads(spec)
        with dask_client(config.cluster, min(len(todo), config.cluster.workers)) as client:
            run_shards(client, score_task, todo, description="score", retries=config.cluster.task_retries,
                       args=(config, spec))
    stats = list(store.read_all_stats().values())
    problems, by_fold = sum_counts(stats, "problems_by_reason"), sum_counts(stats, "scored_by_fold")
    folds = {"scored_by_fold": dict(sorted(by_fold.items(), key=lambda kv: int(kv[0])))} if spec.folds else {}
    return {**sum_stats(stats), "model_id": spec.model_id, "problems_by_reason": dict(sorted(problems.items())),
            **folds}
