"""Train stage and bootstrap filter: the reference CLIP trainer run on the pipeline's shards.

`run_train` trains `train.model` on `train.data` ('select', 'download' or a
glob) and writes `<output>/train/`; `run_bootstrap_filter` trains
`train.bootstrap.model` on a bootstrap split of the downloaded pairs,
cross-fitted (K filters, `<output>/bootstrap_filter/fold_k/`, filter k trained
on the pairs outside fold k), the offline filters the score stage uses. Each
training run writes, in this order: `model_config.json`, `checkpoints/epoch_NNNN.pt`
after each epoch (resumed from on the next run), `model.pt` (weights only),
`metrics.json`, and `stats.json` last, the done marker: a finished run is
skipped. Training is one process, not a Dask job (it is not a map over
shards): `train.workers` loader processes, and torch threads for the model
(`train.threads`, by default the cores left: cluster.workers - train.workers).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import Counter
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import torch

from webli import schemas
from webli.pipeline.config import Config, ConfigError, TrainConfig
from webli.pipeline.storage import StageDir, check_stats, shard_name
from webli.schemas.train import BOOTSTRAP_SPLITS, FOLD, SPLIT, TRAINED_BY
from webli.stages.train.data import (
    EVAL,
    SCORED,
    TRAIN,
    UNUSED,
    StreamCounts,
    StreamSpec,
    count_tar_samples,
    epoch_loader,
    fold_of,
    fold_split_of,
)
from webli.stages.train.evaluate import embed_pairs, heldout_metrics, read_image_folder, zero_shot_accuracy
from webli.stages.train.loop import (
    EpochResult,
    TrainState,
    build_optimizer,
    checkpoint_payload,
    fit,
    lr_schedule,
    restore,
)
from webli.stages.train.models import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    create_clip,
    load_clip,
    model_config_record,
    resolve_device,
)

log = logging.getLogger(__name__)
STAGE = "train"
BOOTSTRAP_STAGE = "bootstrap_filter"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = re.compile(r"^epoch_(\d+)\.pt$")
METRICS_FILE = "metrics.json"
STATS_FILE = "stats.json"  # written last: the done marker
SPLITS_FILE = "splits.parquet"
COMPARISON_FILE = "comparison.json"
RANDOM_BASELINE_STAGE = "train/random_baseline"
OUTSIDE_SUBSET = "outside_bootstrap_split"
OWN_FOLD = "scored_fold"  # a fold filter's own fold, not held out for its AUC: neither trained nor evaluated on
# Splits a training run skips entirely (not trained, not evaluated on): the drop reason they are counted under.
SKIPPED_SPLITS = {UNUSED: OUTSIDE_SUBSET, SCORED: OWN_FOLD}
FOLD_DIR = "fold_{fold}"
# Left out of metrics.json by_fold (in each fold_k/metrics.json): by_fold keeps the held-out metrics.
CROSSFIT_NOT_PER_FOLD = ("model", "history", "settings", "zero_shot", "fold", "folds", "before_training", "splits",
                         "epochs", "steps")
FOLD_STATS_LISTED = ("total", "forwarded", "dropped_by_reason", "train_samples", "eval_samples", "steps", "seconds")
# Settings that change what training computes: a checkpoint made with others is not resumed.
FINGERPRINT_FIELDS = ("pretrained", "eval_fraction", "epochs", "batch_size", "lr", "weight_decay", "warmup_steps",
                      "seed", "shuffle_buffer", "workers")


@dataclass(frozen=True)
class ShardSet:
    """Tar shard URLs to train on and how many samples they hold."""

    urls: tuple[str, ...]
    samples: int


@dataclass(frozen=True)
class TrainJob:
    """One training run: its settings, shards and output folder."""

    stage: str
    store: StageDir
    settings: TrainConfig
    shards: ShardSet
    threads: int
    subset_fraction: float = 1.0
    fold: int | None = None  # cross-fitting: train on the pairs outside this fold, evaluate on its held-out ones
    folds: int = 1

    @property
    def train_share(self) -> float:
        """Expected share of the shards' pairs this run trains on."""
        if self.fold is None:
            return self.subset_fraction * (1 - self.settings.eval_fraction)
        return self.subset_fraction * (self.folds - 1) / self.folds

    def fold_fields(self) -> dict:
        """{'fold', 'folds'} of a cross-fitting run, else nothing (a plain run's records are unchanged)."""
        return {} if self.fold is None else {"fold": self.fold, "folds": self.folds}


# --- where the shards are -----------------------------------------------------------

def download_shards(output: str) -> ShardSet:
    """The tars of every finished download shard; sizes from their Parquet (successes)."""
    store = StageDir(output, "download")
    ids = sorted(store.done_shards())
    if not ids:
        raise ConfigError(f"no finished download shards under {store.path}: run `webli download` first")
    successes = 0
    for shard_id in ids:
        status = store.read_table(f"{shard_name(shard_id)}.parquet", [schemas.STATUS]).column(schemas.STATUS)
        successes += pc.sum(pc.equal(status, "success")).as_py() or 0
    return ShardSet(tuple(store.url(f"{shard_name(i)}.tar") for i in ids), successes)


def select_shards(output: str) -> ShardSet:
    """The select stage's final shards, listed and sized by its `shards/sizes.json` (open_clip's convention)."""
    store = StageDir(output, "select")
    if not store.fs.exists(store.file("shards/sizes.json")):
        raise ConfigError(f"no {store.path}/shards/sizes.json: run `webli select` first, or set train.data to "
                          "'download' or a shard glob")
    sizes = store.read_json("shards/sizes.json")
    return ShardSet(tuple(store.url(f"shards/{name}") for name in sorted(sizes)), sum(sizes.values()))


def glob_shards(pattern: str) -> ShardSet:
    """Tars matching a glob (any fsspec URL); sized by a `sizes.json` beside them, else by reading them."""
    fs, path = fsspec.core.url_to_fs(pattern)
    paths = sorted(p for p in fs.glob(path) if p.endswith(".tar"))
    if not paths:
        raise ConfigError(f"train.data {pattern!r} matches no .tar file")
    protocol = fsspec.core.split_protocol(pattern)[0]
    urls = tuple(f"{protocol}://{p}" if protocol else p for p in paths)
    sizes_file = f"{paths[0].rsplit('/', 1)[0]}/sizes.json"
    if fs.exists(sizes_file):
        sizes = json.loads(fs.cat_file(sizes_file))
        names = [p.rsplit("/", 1)[-1] for p in paths]
        if all(n in sizes for n in names):
            return ShardSet(urls, sum(sizes[n] for n in names))
    return ShardSet(urls, sum(count_tar_samples(u) for u in urls))


def resolve_shards(output: str, data: str) -> ShardSet:
    """train.data: 'select', 'download' or a glob."""
    if data == "select":
        return select_shards(output)
    if data == "download":
        return download_shards(output)
    return glob_shards(data)


# --- checkpoints -------------------------------------------------------------------

def checkpoint_epochs(store: StageDir) -> list[int]:
    """Epochs of the checkpoints present, ascending."""
    folder = store.file(CHECKPOINT_DIR)
    if not store.fs.exists(folder):
        return []
    names = (p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False))
    return sorted(int(m.group(1)) for n in names if (m := CHECKPOINT_NAME.match(n)))


def checkpoint_file(epoch: int) -> str:
    return f"{CHECKPOINT_DIR}/epoch_{epoch:04d}.pt"


def save_torch(store: StageDir, name: str, payload: dict) -> None:
    """torch.save, atomically, on any fsspec file system."""
    with store.atomic_path(name) as tmp, store.fs.open(tmp, "wb") as out:
        torch.save(payload, out)


def load_torch(store: StageDir, name: str) -> dict:
    with store.fs.open(store.file(name), "rb") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def fingerprint(job: TrainJob, name: str) -> dict:
    """What a checkpoint must have been made with to be resumed."""
    settings = job.settings.model_dump()
    return {"model": name, "model_config": model_config_record(name), "subset_fraction": job.subset_fraction,
            "shards": [u.rsplit("/", 1)[-1] for u in job.shards.urls],
            **{k: settings[k] for k in FINGERPRINT_FIELDS}, **job.fold_fields()}


def check_fingerprint(saved: dict, current: dict, store: StageDir) -> None:
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        raise ConfigError(f"the checkpoints in {store.file(CHECKPOINT_DIR)} were made with other settings "
                          f"({', '.join(changed)} differ): restore them, or delete {store.path} to start again")


def prune_checkpoints(store: StageDir, keep: int) -> None:
    for epoch in checkpoint_epochs(store)[:-keep]:
        store.fs.rm(store.file(checkpoint_file(epoch)))


# --- one training run ----------------------------------------------------------------

def planned_steps(job: TrainJob) -> int:
    """Optimizer steps the schedule plans for, from the shard sizes and the split fractions."""
    per_epoch = math.floor(job.shards.samples * job.train_share / job.settings.batch_size)
    return max(1, per_epoch * job.settings.epochs)


def stream(job: TrainJob, split: str, epoch: int = 0) -> StreamSpec:
    """The data stream of one split: training shuffles and drops partial batches, evaluation does neither."""
    training = split == TRAIN
    s = job.settings
    return StreamSpec(urls=job.shards.urls, split=split, eval_fraction=s.eval_fraction,
                      subset_fraction=job.subset_fraction, batch_size=s.batch_size, seed=s.seed, epoch=epoch,
                      shuffle=training, shuffle_buffer=s.shuffle_buffer, drop_partial=training, fold=job.fold,
                      folds=job.folds)


def evaluate_heldout(job: TrainJob, model, preprocess, tokenizer, device) -> tuple[dict, StreamCounts]:
    """Held-out metrics (recall@k, shuffled-pair AUC) and the eval stream's counts."""
    if job.settings.eval_fraction == 0:
        return {"pool": 0, "auc": None}, StreamCounts()
    batches = epoch_loader(stream(job, EVAL), preprocess, tokenizer, job.settings.workers)
    embeddings = embed_pairs(model, batches, device)
    return heldout_metrics(embeddings, seed=job.settings.seed), embeddings.counts


def check_zero_shot_sets(settings: TrainConfig) -> None:
    """Fail before training, not after it, on a zero-shot set that cannot be evaluated."""
    for zero_shot in settings.zero_shot:
        try:
            classes = read_image_folder(zero_shot.images).classnames
        except FileNotFoundError as err:
            raise ConfigError(f"train.zero_shot {zero_shot.name}: {err}") from None
        if len(classes) < 2:
            raise ConfigError(f"train.zero_shot {zero_shot.name}: {zero_shot.images} needs 2+ class sub-folders")


def evaluate_zero_shot(job: TrainJob, model, preprocess, tokenizer, device) -> dict:
    return {z.name: zero_shot_accuracy(model, tokenizer, preprocess, z.images, z.templates,
                                       job.settings.batch_size, device) for z in job.settings.zero_shot}


def job_stats(job: TrainJob, state: TrainState, eval_counts: StreamCounts, seconds: float) -> dict:
    """Stage stats: every sample of the shards is trained on, evaluated on, or dropped by reason."""
    first = state.first_epoch_counts
    skipped = {reason: first["skipped_by_split"].get(split, 0) for split, reason in SKIPPED_SPLITS.items()}
    skipped = {reason: count for reason, count in skipped.items() if count}
    dropped = dict(first["dropped_by_reason"])
    for reason, count in eval_counts.dropped.items():
        dropped[reason] = dropped.get(reason, 0) + count
    dropped.update(skipped)
    fold_extra = {} if job.fold is None else {**job.fold_fields(),
                                              "train_dropped_by_reason": dict(first["dropped_by_reason"])}
    problems = first["problems_by_reason"]  # the first epoch reads every shard; the eval pass sees the same
    trained = sum(h["samples"] for h in state.history)
    train_seconds = sum(h["seconds"] for h in state.history)
    return check_stats({
        "stage": job.stage, "total": first["read"] + sum(skipped.values()) + eval_counts.read,
        "forwarded": first["used"] + eval_counts.used, "dropped_by_reason": dropped,
        "problems_by_reason": dict(problems), "train_samples": first["used"], "eval_samples": eval_counts.used,
        "unbatched_per_epoch": first["unbatched"], "epochs": state.epochs_done, "steps": state.step,
        "samples_trained": trained, "train_seconds": round(train_seconds, 2), "torch_threads": job.threads,
        "loader_workers": job.settings.workers,
        "samples_per_second": round(trained / train_seconds, 2) if train_seconds else None,
        "seconds": round(seconds, 2), **fold_extra})


def job_metrics(name: str, job: TrainJob, state: TrainState, heldout: dict, zero_shot: dict,
                eval_counts: StreamCounts) -> dict:
    """metrics.json: held-out metrics at the top, then split sizes, zero-shot, baseline and history."""
    skipped = state.first_epoch_counts["skipped_by_split"]
    splits = {"train": state.first_epoch_counts["used"], "eval": eval_counts.used, "unused": skipped.get(UNUSED, 0)}
    if job.fold is not None:
        splits[SCORED] = skipped.get(SCORED, 0)
    return {"model": name, **heldout, **job.fold_fields(), "splits": splits,
            "zero_shot": zero_shot, "before_training": state.baseline, "epochs": state.epochs_done,
            "steps": state.step, "history": state.history,
            "settings": {**job.settings.model_dump(exclude={"bootstrap", "zero_shot"}),
                         "subset_fraction": job.subset_fraction, **job.fold_fields()}}


def run_job(job: TrainJob) -> dict:
    """Train (resuming from the newest checkpoint), evaluate, write the outputs; skipped when done."""
    store = job.store
    if store.fs.exists(store.file(STATS_FILE)):
        log.info("%s: already done (%s exists)", job.stage, store.file(STATS_FILE))
        return store.read_json(STATS_FILE)
    started = time.perf_counter()
    check_zero_shot_sets(job.settings)
    store.makedirs()
    store.remove_stale_temporaries()
    torch.set_num_threads(job.threads)
    device = resolve_device(job.settings.device)
    torch.manual_seed(job.settings.seed)
    name, model, preprocess_train, preprocess_eval, tokenizer = create_clip(
        job.settings.model, job.settings.pretrained, device)
    store.write_json(CONFIG_FILE, model_config_record(name))
    optimizer = build_optimizer(model, job.settings.lr, job.settings.weight_decay)
    schedule = lr_schedule(optimizer, job.settings.lr, job.settings.warmup_steps, planned_steps(job))
    run_fingerprint = fingerprint(job, name)
    state = resume(job, model, optimizer, run_fingerprint)
    if state.epochs_done == 0 and not state.baseline:
        state.baseline = evaluate_heldout(job, model, preprocess_eval, tokenizer, device)[0]

    def save(state: TrainState, result: EpochResult) -> None:
        if not state.first_epoch_counts.get("used"):
            raise ConfigError(f"{job.stage}: no usable training pair in {len(job.shards.urls)} shard(s) "
                              f"(counts: {state.first_epoch_counts})")
        save_torch(store, checkpoint_file(state.epochs_done), checkpoint_payload(name, model, optimizer, state,
                                                                               run_fingerprint))
        prune_checkpoints(store, job.settings.keep_checkpoints)

    log.info("%s: training %s on %d shard(s), ~%d samples, %d epoch(s) on %s", job.stage, name,
             len(job.shards.urls), job.shards.samples, job.settings.epochs, device)
    state = fit(model, optimizer, schedule,
                lambda epoch: epoch_loader(stream(job, TRAIN, epoch), preprocess_train, tokenizer,
                                           job.settings.workers),
                job.settings.epochs, state, job.settings.seed, device, save)
    heldout, eval_counts = evaluate_heldout(job, model, preprocess_eval, tokenizer, device)
    zero_shot = evaluate_zero_shot(job, model, preprocess_eval, tokenizer, device)
    save_torch(store, CHECKPOINT_FILE, {"name": name, "state_dict": model.state_dict()})
    store.write_json(METRICS_FILE, job_metrics(name, job, state, heldout, zero_shot, eval_counts))
    stats = job_stats(job, state, eval_counts, time.perf_counter() - started)
    store.write_json(STATS_FILE, stats)
    log.info("%s: held-out AUC %s, image->text R@1 %s", job.stage, heldout.get("auc"),
             heldout.get("image_to_text_recall", {}).get("1"))
    return stats


def resume(job: TrainJob, model, optimizer, run_fingerprint: dict) -> TrainState:
    """The saved progress of the newest checkpoint (weights and optimizer restored), or a fresh state."""
    epochs = checkpoint_epochs(job.store)
    if not epochs:
        return TrainState()
    payload = load_torch(job.store, checkpoint_file(epochs[-1]))
    check_fingerprint(payload["fingerprint"], run_fingerprint, job.store)
    log.info("%s: resuming after epoch %d", job.stage, epochs[-1])
    return restore(payload, model, optimizer)


def torch_threads(config: Config) -> int:
    """train.threads, else the cores (cluster.workers) not taken by loader processes, at least one."""
    return config.train.threads or max(1, config.cluster.workers - config.train.workers)


def run_train(config: Config) -> dict:
    """Train `train.model` on `train.data`; outputs under `<output>/train/`. Returns the stage stats.

    With `train.data: select` and `train.compare_random`, the same model is
    also trained on a random subset of the downloaded pairs of the same
    expected size (`train/random_baseline/`), and both are evaluated on the
    same held-out downloaded pairs (`train/comparison.json`): DataComp's way of
    judging a filter by what a fixed model learns from what it keeps.
    """
    store = StageDir(config.output, STAGE)
    comparing = config.train.compare_random and config.train.data == "select"
    if store.fs.exists(store.file(STATS_FILE)) and (not comparing or store.fs.exists(store.file(COMPARISON_FILE))):
        return with_comparison(store, store.read_json(STATS_FILE))
    shards = resolve_shards(config.output, config.train.data)
    stats = run_job(TrainJob(STAGE, store, config.train, shards, torch_threads(config)))
    if comparing:
        store.write_json(COMPARISON_FILE, compare_with_random(config, shards, stats))
    return with_comparison(store, stats)


def with_comparison(store: StageDir, stats: dict) -> dict:
    """The stage stats, with the selected-vs-random comparison when it was made."""
    if store.fs.exists(store.file(COMPARISON_FILE)):
        return {**stats, "comparison": store.read_json(COMPARISON_FILE)}
    return stats


def random_baseline_job(config: Config, selected: ShardSet) -> TrainJob:
    """The same training on a uid-hash subset of the downloaded pairs whose expected size is the selection's."""
    downloaded = download_shards(config.output)
    fraction = min(1.0, selected.samples / downloaded.samples) if downloaded.samples else 1.0
    return TrainJob(RANDOM_BASELINE_STAGE, StageDir(config.output, RANDOM_BASELINE_STAGE), config.train,
                    downloaded, torch_threads(config), subset_fraction=fraction)


def compare_with_random(config: Config, selected: ShardSet, selected_stats: dict) -> dict:
    """Train the random baseline, then evaluate it and the selected-data model on the same held-out pairs.

    The common held-out pairs are the downloaded pairs whose uid falls in the
    eval split (`train.eval_fraction`): neither model trained on any of them.
    """
    baseline = random_baseline_job(config, selected)
    runs = (("selected", STAGE, selected_stats), ("random", RANDOM_BASELINE_STAGE, run_job(baseline)))
    common = TrainJob(STAGE, StageDir(config.output, STAGE), config.train, baseline.shards, torch_threads(config))
    device = resolve_device(config.train.device)
    results = {}
    for label, job_stage, job_stats in runs:
        model, preprocess, tokenizer = load_clip(StageDir(config.output, job_stage).path, device=device)
        metrics, _ = evaluate_heldout(common, model, preprocess, tokenizer, device)
        results[label] = {"train_samples": job_stats["train_samples"], **metrics}
    log.info("train: selected vs random on %s held-out pairs: image->text R@1 %s vs %s",
             results["selected"].get("pool"), results["selected"].get("image_to_text_recall", {}).get("1"),
             results["random"].get("image_to_text_recall", {}).get("1"))
    return {"heldout": "downloaded pairs in the eval split", "eval_fraction": config.train.eval_fraction,
            "random_subset_fraction": baseline.subset_fraction, **results}


# --- the bootstrap filter: cross-fitted ----------------------------------------------

def fold_stage(fold: int) -> str:
    """The folder (stage path) of fold `fold`'s filter: bootstrap_filter/fold_<fold>."""
    return f"{BOOTSTRAP_STAGE}/{FOLD_DIR.format(fold=fold)}"


def bootstrap_filter_dirs(config: Config) -> list[str]:
    """Where the K filters are, in fold order (each a folder `load_clip` accepts as the model)."""
    return [StageDir(config.output, fold_stage(fold)).path for fold in range(config.train.bootstrap.folds)]


def bootstrap_filter_done(config: Config) -> bool:
    store = StageDir(config.output, BOOTSTRAP_STAGE)
    return store.fs.exists(store.file(STATS_FILE))


def bootstrap_settings(config: Config) -> TrainConfig:
    """The trainer's settings with the bootstrap filter's model, epochs and held-out share."""
    bootstrap = config.train.bootstrap
    return config.train.model_copy(update={"model": bootstrap.model, "pretrained": None, "epochs": bootstrap.epochs,
                                           "eval_fraction": bootstrap.eval_fraction, "zero_shot": []})


def pair_split(uid: str, eval_fraction: float, fraction: float, folds: int) -> tuple[int, str, list[int]]:
    """A pair's fold, what its fold's filter does with it (eval / scored / unused), the folds that train on it."""
    fold = fold_of(uid, folds)
    split = fold_split_of(uid, eval_fraction, fraction, fold, folds)
    trained_by = [] if split == UNUSED else [other for other in range(folds) if other != fold]
    return fold, split, trained_by


def bootstrap_splits(output: str, eval_fraction: float, fraction: float, folds: int = 2) -> pa.Table:
    """One row per successful download: key, uid, shard, fold, split (for its fold's filter) and trained_by."""
    store = StageDir(output, "download")
    tables = []
    for shard_id in sorted(store.done_shards()):
        rows = store.read_table(f"{shard_name(shard_id)}.parquet", [schemas.KEY, schemas.UID, schemas.STATUS])
        rows = rows.filter(pc.equal(rows.column(schemas.STATUS), "success")).drop_columns([schemas.STATUS])
        pairs = [pair_split(uid, eval_fraction, fraction, folds) for uid in rows.column(schemas.UID).to_pylist()]
        tables.append(rows.append_column("shard", pa.array([shard_id] * rows.num_rows, pa.int32()))
                      .append_column(FOLD, pa.array([p[0] for p in pairs], pa.int16()))
                      .append_column(SPLIT, pa.array([p[1] for p in pairs], pa.string()))
                      .append_column(TRAINED_BY, pa.array([p[2] for p in pairs], pa.list_(pa.int16()))))
    return pa.concat_tables(tables) if tables else BOOTSTRAP_SPLITS.empty_table()


def fold_job(config: Config, fold: int, shards: ShardSet) -> TrainJob:
    """Filter `fold`: trained on the bootstrap pairs of the other folds, evaluated on its own fold's held-out ones."""
    bootstrap = config.train.bootstrap
    return TrainJob(fold_stage(fold), StageDir(config.output, fold_stage(fold)), bootstrap_settings(config), shards,
                    torch_threads(config), subset_fraction=bootstrap.fraction, fold=fold, folds=bootstrap.folds)


def check_folds(config: Config) -> None:
    """Refuse finished filters made with another number of folds (or the single filter of older versions)."""
    folds = config.train.bootstrap.folds
    top = StageDir(config.output, BOOTSTRAP_STAGE)
    records = [top.file(STATS_FILE)] if top.fs.exists(top.file(STATS_FILE)) else []
    records += top.fs.glob(top.file(f"{FOLD_DIR.format(fold='*')}/{STATS_FILE}"))
    for path in records:
        made = json.loads(top.fs.cat_file(path)).get("folds")
        if made != folds:
            made_with = f"{made} folds" if made else "one filter trained on the pairs it scores (no cross-fitting)"
            raise ConfigError(f"{top.path} holds a bootstrap filter made with {made_with} ({path}) but "
                              f"train.bootstrap.folds is {folds}: delete {top.path} to train it again")


def weighted_mean(values: list[float | None], weights: list[int]) -> float | None:
    """Mean of the non-null values, weighted (by held-out pool size); None when there is none."""
    pairs = [(v, w) for v, w in zip(values, weights) if v is not None and w]
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None


def crossfit_metrics(fold_metrics: list[dict]) -> dict:
    """metrics.json of the filter set: AUC averaged over folds (weighted by pool), each fold's held-out metrics.

    `splits` counts pairs once each: `train` those trained on (by every filter but their fold's), `eval` and
    `scored` those their own fold's filter held out for its AUC or only scored, `unused` those outside the split.
    """
    folds = len(fold_metrics)
    pools = [m.get("pool") or 0 for m in fold_metrics]
    per_fold = {str(k): {key: value for key, value in m.items() if key not in CROSSFIT_NOT_PER_FOLD}
                for k, m in enumerate(fold_metrics)}
    splits = [m["splits"] for m in fold_metrics]
    return {"model": fold_metrics[0]["model"], "auc": weighted_mean([m.get("auc") for m in fold_metrics], pools),
            "pool": sum(pools), "by_fold": per_fold,
            "before_training": {"auc": weighted_mean([(m.get("before_training") or {}).get("auc")
                                                      for m in fold_metrics], pools)},
            "splits": {"folds": folds, "train": sum(s["train"] for s in splits) // (folds - 1),
                       "eval": sum(s["eval"] for s in splits), "scored": sum(s.get(SCORED, 0) for s in splits),
                       "unused": splits[0]["unused"]},
            "epochs": fold_metrics[0]["epochs"], "steps": sum(m["steps"] for m in fold_metrics),
            "settings": {k: v for k, v in fold_metrics[0]["settings"].items() if k != "fold"}}


def crossfit_stats(fold_stats: list[dict]) -> dict:
    """stats.json of the filter set: every downloaded pair counted once (the funnel's view); folds summed and listed.

    A pair of the bootstrap split is trained on by the filters of the other
    K-1 folds: it is forwarded unless it cannot be decoded (each of those K-1
    filters then drops it in training, so the drops by reason are their sum
    over K-1); a pair outside the split is dropped as outside_bootstrap_split.
    """
    folds = len(fold_stats)
    totals = sorted({s["total"] for s in fold_stats})
    if len(totals) != 1:
        raise ConfigError(f"the {folds} fold filters read different numbers of pairs ({totals}): the download "
                          f"changed between them; delete {BOOTSTRAP_STAGE}/ and train again")
    decode_drops = Counter()
    problems = Counter()
    for record in fold_stats:
        decode_drops.update(record["train_dropped_by_reason"])
        problems |= Counter(record.get("problems_by_reason", {}))  # every fold reads the same shards
    dropped = {reason: count // (folds - 1) for reason, count in sorted(decode_drops.items())}
    if outside := fold_stats[0]["dropped_by_reason"].get(OUTSIDE_SUBSET, 0):
        dropped[OUTSIDE_SUBSET] = outside
    trained = sum(s["samples_trained"] for s in fold_stats)
    train_seconds = sum(s["train_seconds"] for s in fold_stats)
    return check_stats({
        "stage": BOOTSTRAP_STAGE, "total": totals[0], "forwarded": totals[0] - sum(dropped.values()),
        "dropped_by_reason": dropped, "problems_by_reason": dict(sorted(problems.items())), "folds": folds,
        "train_samples": sum(s["train_samples"] for s in fold_stats),
        "eval_samples": sum(s["eval_samples"] for s in fold_stats), "epochs": fold_stats[0]["epochs"],
        "steps": sum(s["steps"] for s in fold_stats), "samples_trained": trained,
        "train_seconds": round(train_seconds, 2), "torch_threads": fold_stats[0]["torch_threads"],
        "loader_workers": fold_stats[0]["loader_workers"],
        "samples_per_second": round(trained / train_seconds, 2) if train_seconds else None,
        "seconds": round(sum(s["seconds"] for s in fold_stats), 2),
        "by_fold": [{"fold": k, "folder": fold_stage(k), **{key: s[key] for key in FOLD_STATS_LISTED}}
                    for k, s in enumerate(fold_stats)]})


def run_bootstrap_filter(config: Config) -> dict:
    """Train the K cross-fitted offline filters into `<output>/bootstrap_filter/fold_k/`; returns the set's stats.

    Filter k trains on the bootstrap pairs outside fold k (a salted uid hash)
    and is evaluated on fold k's held-out pairs; the score stage scores each
    pair with its fold's filter, which never saw it. Each fold resumes and is
    skipped on its own (its stats.json); `splits.parquet` records every pair's
    fold, what its filter did with it and which filters trained on it; the
    set's `metrics.json` and `stats.json` (the done marker) are written last.
    """
    store = StageDir(config.output, BOOTSTRAP_STAGE)
    check_folds(config)
    if store.fs.exists(store.file(STATS_FILE)):
        return store.read_json(STATS_FILE)
    bootstrap = config.train.bootstrap
    shards = download_shards(config.output)
    store.makedirs()
    store.write_table(SPLITS_FILE, bootstrap_splits(config.output, bootstrap.eval_fraction, bootstrap.fraction,
                                                    bootstrap.folds), BOOTSTRAP_SPLITS)
    fold_stats = []
    for fold in range(bootstrap.folds):
        log.info("%s: fold %d of %d", BOOTSTRAP_STAGE, fold + 1, bootstrap.folds)
        fold_stats.append(run_job(fold_job(config, fold, shards)))
    fold_metrics = [StageDir(config.output, fold_stage(k)).read_json(METRICS_FILE) for k in range(bootstrap.folds)]
    metrics = crossfit_metrics(fold_metrics)
    store.write_json(METRICS_FILE, metrics)
    stats = crossfit_stats(fold_stats)
    store.write_json(STATS_FILE, stats)
    log.info("%s: %d folds, held-out AUC by fold %s", BOOTSTRAP_STAGE, bootstrap.folds,
             [m.get("auc") for m in fold_metrics])
    return stats
