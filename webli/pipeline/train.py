"""Train stage and bootstrap filter: the reference CLIP trainer run on the pipeline's shards.

`run_train` trains `train.model` on `train.data` ('select', 'download' or a
glob) and writes `<output>/train/`; `run_bootstrap_filter` trains
`train.bootstrap.model` on a bootstrap split of the downloaded pairs and
writes `<output>/bootstrap_filter/`, the offline filter the score stage uses.
Both write, in this order: `model_config.json`, `checkpoints/epoch_NNNN.pt`
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
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import torch

from webli import schemas
from webli.pipeline.config import Config, ConfigError, TrainConfig
from webli.pipeline.storage import StageDir, check_stats, shard_name
from webli.schemas.train import BOOTSTRAP_SPLITS
from webli.stages.train.data import EVAL, TRAIN, StreamCounts, StreamSpec, count_tar_samples, epoch_loader, split_of
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
            **{k: settings[k] for k in FINGERPRINT_FIELDS}}


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
    train_share = job.subset_fraction * (1 - job.settings.eval_fraction)
    per_epoch = math.floor(job.shards.samples * train_share / job.settings.batch_size)
    return max(1, per_epoch * job.settings.epochs)


def stream(job: TrainJob, split: str, epoch: int = 0) -> StreamSpec:
    """The data stream of one split: training shuffles and drops partial batches, evaluation does neither."""
    training = split == TRAIN
    s = job.settings
    return StreamSpec(urls=job.shards.urls, split=split, eval_fraction=s.eval_fraction,
                      subset_fraction=job.subset_fraction, batch_size=s.batch_size, seed=s.seed, epoch=epoch,
                      shuffle=training, shuffle_buffer=s.shuffle_buffer, drop_partial=training)


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
    unused = first["skipped_by_split"].get("unused", 0)
    dropped = dict(first["dropped_by_reason"])
    for reason, count in eval_counts.dropped.items():
        dropped[reason] = dropped.get(reason, 0) + count
    if unused:
        dropped[OUTSIDE_SUBSET] = unused
    problems = first["problems_by_reason"]  # the first epoch reads every shard; the eval pass sees the same
    trained = sum(h["samples"] for h in state.history)
    train_seconds = sum(h["seconds"] for h in state.history)
    return check_stats({
        "stage": job.stage, "total": first["read"] + unused + eval_counts.read,
        "forwarded": first["used"] + eval_counts.used, "dropped_by_reason": dropped,
        "problems_by_reason": dict(problems), "train_samples": first["used"], "eval_samples": eval_counts.used,
        "unbatched_per_epoch": first["unbatched"], "epochs": state.epochs_done, "steps": state.step,
        "samples_trained": trained, "train_seconds": round(train_seconds, 2), "torch_threads": job.threads,
        "loader_workers": job.settings.workers,
        "samples_per_second": round(trained / train_seconds, 2) if train_seconds else None,
        "seconds": round(seconds, 2)})


def job_metrics(name: str, job: TrainJob, state: TrainState, heldout: dict, zero_shot: dict,
                eval_counts: StreamCounts) -> dict:
    """metrics.json: held-out metrics at the top, then split sizes, zero-shot, baseline and history."""
    return {"model": name, **heldout,
            "splits": {"train": state.first_epoch_counts["used"], "eval": eval_counts.used,
                       "unused": state.first_epoch_counts["skipped_by_split"].get("unused", 0)},
            "zero_shot": zero_shot, "before_training": state.baseline, "epochs": state.epochs_done,
            "steps": state.step, "history": state.history,
            "settings": {**job.settings.model_dump(exclude={"bootstrap", "zero_shot"}),
                         "subset_fraction": job.subset_fraction}}


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
        store.write_json(COMPARISON_FILE, compare_with_random(config, shards))
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


def compare_with_random(config: Config, selected: ShardSet) -> dict:
    """Train the random baseline, then evaluate it and the selected-data model on the same held-out pairs.

    The common held-out pairs are the downloaded pairs whose uid falls in the
    eval split (`train.eval_fraction`): neither model trained on any of them.
    """
    baseline = random_baseline_job(config, selected)
    baseline_stats = run_job(baseline)
    common = TrainJob(STAGE, StageDir(config.output, STAGE), config.train, baseline.shards, torch_threads(config))
    device = resolve_device(config.train.device)
    results = {}
    for label, job_stage in (("selected", STAGE), ("random", RANDOM_BASELINE_STAGE)):
        model, preprocess, tokenizer = load_clip(StageDir(config.output, job_stage).path, device=device)
        metrics, counts = evaluate_heldout(common, model, preprocess, tokenizer, device)
        train_samples = (baseline_stats if label == "random" else StageDir(config.output, STAGE)
                         .read_json(STATS_FILE))["train_samples"]
        results[label] = {"train_samples": train_samples, **metrics}
    log.info("train: selected vs random on %s held-out pairs: image->text R@1 %s vs %s",
             results["selected"].get("pool"), results["selected"].get("image_to_text_recall", {}).get("1"),
             results["random"].get("image_to_text_recall", {}).get("1"))
    return {"heldout": "downloaded pairs in the eval split", "eval_fraction": config.train.eval_fraction,
            "random_subset_fraction": baseline.subset_fraction, **results}


# --- the bootstrap filter ----------------------------------------------------------

def bootstrap_filter_dir(config: Config) -> str:
    """Where the bootstrap filter is (a folder `load_clip` accepts as the model)."""
    return StageDir(config.output, BOOTSTRAP_STAGE).path


def bootstrap_filter_done(config: Config) -> bool:
    store = StageDir(config.output, BOOTSTRAP_STAGE)
    return store.fs.exists(store.file(STATS_FILE))


def bootstrap_settings(config: Config) -> TrainConfig:
    """The trainer's settings with the bootstrap filter's model, epochs and held-out share."""
    bootstrap = config.train.bootstrap
    return config.train.model_copy(update={"model": bootstrap.model, "pretrained": None, "epochs": bootstrap.epochs,
                                           "eval_fraction": bootstrap.eval_fraction, "zero_shot": []})


def bootstrap_splits(output: str, eval_fraction: float, fraction: float) -> pa.Table:
    """One row per successful download: key, uid, shard and its split (train / eval / unused)."""
    store = StageDir(output, "download")
    tables = []
    for shard_id in sorted(store.done_shards()):
        rows = store.read_table(f"{shard_name(shard_id)}.parquet", [schemas.KEY, schemas.UID, schemas.STATUS])
        rows = rows.filter(pc.equal(rows.column(schemas.STATUS), "success")).drop_columns([schemas.STATUS])
        splits = [split_of(uid, eval_fraction, fraction) for uid in rows.column(schemas.UID).to_pylist()]
        tables.append(rows.append_column("shard", pa.array([shard_id] * rows.num_rows, pa.int32()))
                      .append_column("split", pa.array(splits, pa.string())))
    return pa.concat_tables(tables) if tables else BOOTSTRAP_SPLITS.empty_table()


def run_bootstrap_filter(config: Config) -> dict:
    """Train the offline filter on a bootstrap split of the downloaded pairs, into `<output>/bootstrap_filter/`.

    Besides the trainer's outputs it writes `splits.parquet` (which pairs the
    filter trained on), so later stages can tell scores of seen pairs apart.
    """
    store = StageDir(config.output, BOOTSTRAP_STAGE)
    if store.fs.exists(store.file(STATS_FILE)):
        return store.read_json(STATS_FILE)
    bootstrap = config.train.bootstrap
    shards = download_shards(config.output)
    store.makedirs()
    store.write_table(SPLITS_FILE, bootstrap_splits(config.output, bootstrap.eval_fraction, bootstrap.fraction),
                      BOOTSTRAP_SPLITS)
    job = TrainJob(BOOTSTRAP_STAGE, store, bootstrap_settings(config), shards, torch_threads(config),
                   subset_fraction=bootstrap.fraction)
    return run_job(job)
