"""Dedup stage on Dask: build (or reuse) each eval set's index, broadcast it, then one task per download shard.

The index step comes first and is cached under `<output>/dedup/index/<name>/`
with a fingerprint of everything it depends on (the eval set's files: path,
size and modification stamp; the text settings; the descriptor's views; the
learned embedding's weights; the index format). A changed eval set gets a new
index, and the shards that were checked against the old one are checked again; so are shards checked with
other settings, another version of the check or other verifier weights (`check_fingerprint`, in each
shard's stats). Eval images are read and
described by parallel tasks, `dedup.index_part_size` images each, each part
written as it finishes, so a killed build resumes.

The search part of every index is scattered to all workers once
(`broadcast=True`); the verification arrays are memory-mapped by each worker
from the index folder (read fully when the output root is not local).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import pickle
import time

import numpy as np
import pyarrow as pa

from webli.pipeline.cluster import dask_client, run_shards
from webli.pipeline.config import Config, ConfigError, EvalSetConfig
from webli.pipeline.storage import StageDir, shard_name, sum_counts, sum_stats
from webli.schemas import dedup as dedup_schema
from webli.stages.dedup import descriptor, embedding, verifier
from webli.stages.dedup.evalsets import EvalSetError, ImagePart, fingerprint_entries, image_parts, read_captions
from webli.stages.dedup.index import (
    INDEX_VERSION,
    LEARNED,
    SEARCH_ARRAYS,
    ImageIndex,
    ImagePartFeatures,
    VerificationStore,
    assemble_image_index,
    build_image_part,
)
from webli.stages.dedup.match import MatchSettings
from webli.stages.dedup.shard import EvalSetIndex, dedup_shard, read_tar_images
from webli.stages.dedup.text import CaptionIndex
from webli.stages.dedup.verify import CHECK_VERSION

log = logging.getLogger(__name__)
STAGE = "dedup"
INDEX_ROOT = f"{STAGE}/index"
META = "meta.json"
VERIFICATION_ARRAYS = ("keypoint_offsets", "keypoints", "descriptors", "thumbs", "details", "sizes", "embeddings")
IMAGE_ITEMS = pa.schema([pa.field("item", pa.string(), nullable=False)])  # item id per image row of an index
_STORES: dict[tuple[str, str], VerificationStore] = {}  # per worker process: memory-mapped stores in use


def index_dir(config: Config, name: str) -> StageDir:
    return StageDir(config.output, f"{INDEX_ROOT}/{name}")


def index_fingerprint(config: Config, eval_set: EvalSetConfig) -> str:
    """A digest of everything an eval set's index depends on."""
    try:
        files = {"images": fingerprint_entries(eval_set.images), "captions": fingerprint_entries(eval_set.captions)}
    except EvalSetError as err:
        raise ConfigError(f"dedup.eval_sets[{eval_set.name}]: {err}") from None
    settings = {"version": INDEX_VERSION, "eval_set": eval_set.model_dump(), "files": files,
                "text": [config.dedup.text_threshold, config.dedup.text_shingle_size, config.dedup.text_num_perm],
                "views": [descriptor.EVAL_BOXES, descriptor.THUMB, descriptor.DIM],
                "embedding": embedding.weights_digest()}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


# --- index building ----------------------------------------------------------------------------------------


def save_arrays(store: StageDir, arrays: dict[str, np.ndarray]) -> None:
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        store.write_bytes(f"{name}.npy", buffer.getvalue())


def load_arrays(store: StageDir, names: tuple[str, ...], memory_map: bool) -> dict[str, np.ndarray]:
    """The named .npy arrays of an index folder; memory-mapped when the file system is local."""
    local = store.fs.protocol in ("file", "local") or "file" in store.fs.protocol
    if memory_map and local:
        return {name: np.load(store.file(f"{name}.npy"), mmap_mode="r") for name in names}
    out = {}
    for name in names:
        with store.fs.open(store.file(f"{name}.npy"), "rb") as f:
            out[name] = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return out


def index_part_task(part_id: int, part: ImagePart, root: str, folder: str) -> dict:
    """Describe one part of an eval set's images and write it (arrays + item rows) under `folder`."""
    store = StageDir(root, folder)
    if store.is_done(part_id):
        return store.read_json(f"{shard_name(part_id)}_stats.json")
    features = build_image_part(part)
    buffer = io.BytesIO()
    np.savez(buffer, **features.arrays())
    store.write_bytes(f"{shard_name(part_id)}.npz", buffer.getvalue())
    store.write_table(f"{shard_name(part_id)}_items.parquet", pa.Table.from_pylist(
        features.rows, schema=dedup_schema.EVAL_ITEMS), dedup_schema.EVAL_ITEMS)
    items = pa.table({"item": pa.array(features.items, pa.string())})
    store.write_table(f"{shard_name(part_id)}_images.parquet", items, IMAGE_ITEMS)
    stats = {"stage": "dedup-index", "total": len(features.rows), "forwarded": len(features.items),
             "dropped_by_reason": dict(sorted(_problem_counts(features.rows).items()))}
    store.write_stats(part_id, stats)
    return stats


def _problem_counts(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        if row["problem"]:
            counts[row["problem"]] = counts.get(row["problem"], 0) + 1
    return counts


def load_part(store: StageDir, part_id: int) -> tuple[ImagePartFeatures, list[dict]]:
    with store.fs.open(store.file(f"{shard_name(part_id)}.npz"), "rb") as f, np.load(io.BytesIO(f.read())) as arrays:
        loaded = {name: arrays[name] for name in arrays.files}
    items = store.read_table(f"{shard_name(part_id)}_images.parquet").column("item").to_pylist()
    rows = store.read_table(f"{shard_name(part_id)}_items.parquet").to_pylist()
    return ImagePartFeatures(items=items, rows=rows, **loaded), rows


def build_image_index(config: Config, eval_set: EvalSetConfig, fingerprint: str, client) -> tuple[list[dict], bool]:
    """Describe every eval image (Dask tasks, resumable), join the parts and save the index arrays.

    Returns the eval item rows and whether the set has images at all.
    """
    store = index_dir(config, eval_set.name)
    if not eval_set.images:
        index, verification = assemble_image_index([])
        save_arrays(store, {**index.arrays(), **verification})
        store.write_table("images.parquet", pa.table({"item": pa.array([], pa.string())}), IMAGE_ITEMS)
        return [], False
    try:
        parts = image_parts(eval_set.images, config.dedup.index_part_size)
    except EvalSetError as err:
        raise ConfigError(f"dedup.eval_sets[{eval_set.name}].images: {err}") from None
    folder = f"{INDEX_ROOT}/{eval_set.name}/parts-{fingerprint[:16]}"
    parts_store = StageDir(config.output, folder)
    todo = [i for i in range(len(parts)) if not parts_store.is_done(i)]
    if todo:
        shared_parts = client().scatter([parts])[0]  # one copy of the (possibly long) file list per worker
        run_shards(client(), index_part_task_by_id, todo, description=f"dedup-index-{eval_set.name}",
                   retries=config.cluster.task_retries, args=(shared_parts, config.output, folder))
    loaded = [load_part(parts_store, i) for i in range(len(parts))]
    index, verification = assemble_image_index([features for features, _ in loaded])
    save_arrays(store, {**index.arrays(), **verification})
    store.write_table("images.parquet", pa.table({"item": index.items}), IMAGE_ITEMS)
    return [row for _, rows in loaded for row in rows], True


def index_part_task_by_id(part_id: int, parts: list[ImagePart], root: str, folder: str) -> dict:
    return index_part_task(part_id, parts[part_id], root, folder)


def build_caption_index(config: Config, eval_set: EvalSetConfig) -> tuple[list[dict], CaptionIndex | None]:
    """Read every caption and build the MinHash LSH over them; empty captions become problem rows."""
    if not eval_set.captions:
        return [], None
    try:
        read = list(read_captions(eval_set.captions))
    except EvalSetError as err:
        raise ConfigError(f"dedup.eval_sets[{eval_set.name}].captions: {err}") from None
    rows = [{"item": item, "source": eval_set.captions, "kind": "caption",
             "problem": None if text else "empty_caption"} for item, text in read]
    usable = [(item, text) for item, text in read if text]
    captions = CaptionIndex([i for i, _ in usable], [t for _, t in usable], config.dedup.text_threshold,
                            config.dedup.text_shingle_size, config.dedup.text_num_perm)
    return rows, captions


def build_index(config: Config, eval_set: EvalSetConfig, fingerprint: str, client) -> dict:
    """Build one eval set's index into its folder; meta.json (with the fingerprint) is written last."""
    started = time.time()
    store = index_dir(config, eval_set.name)
    if store.fs.exists(store.file(META)):
        store.fs.rm(store.file(META))  # the old index is no longer whole once rebuilding starts
    log.info("dedup: building the index of eval set %s", eval_set.name)
    image_rows, _ = build_image_index(config, eval_set, fingerprint, client)
    caption_rows, captions = build_caption_index(config, eval_set)
    store.write_bytes("captions.pkl", pickle.dumps(captions, protocol=pickle.HIGHEST_PROTOCOL))
    rows = image_rows + caption_rows
    store.write_table("items.parquet", pa.Table.from_pylist(rows, schema=dedup_schema.EVAL_ITEMS),
                      dedup_schema.EVAL_ITEMS)
    meta = index_meta(eval_set, fingerprint, rows, time.time() - started)
    store.write_json(META, meta)
    parts = [p for p in store.fs.ls(store.path, detail=False) if p.rsplit("/", 1)[-1].startswith("parts-")]
    for folder in parts:
        store.fs.rm(folder, recursive=True)
    return meta


def index_meta(eval_set: EvalSetConfig, fingerprint: str, rows: list[dict], seconds: float) -> dict:
    """What an index holds: counts by kind, problems by reason, and an `empty` flag."""
    images = [r for r in rows if r["kind"] == "image"]
    captions = [r for r in rows if r["kind"] == "caption"]
    problems = _problem_counts(rows)
    indexed_images = sum(1 for r in images if not r["problem"])
    indexed_captions = sum(1 for r in captions if not r["problem"])
    empty = indexed_images == 0 and indexed_captions == 0
    if empty:
        problems["empty_eval_set"] = 1
        log.warning("dedup: eval set %s has no usable image or caption; it cannot flag anything", eval_set.name)
    return {"name": eval_set.name, "fingerprint": fingerprint, "version": INDEX_VERSION,
            "images_read": len(images), "images_indexed": indexed_images, "captions_read": len(captions),
            "captions_indexed": indexed_captions, "problems_by_reason": dict(sorted(problems.items())),
            "empty": empty, "build_seconds": round(seconds, 3)}


def ensure_index(config: Config, eval_set: EvalSetConfig, client) -> dict:
    """The eval set's index metadata, building the index first if it is missing or out of date."""
    fingerprint = index_fingerprint(config, eval_set)
    store = index_dir(config, eval_set.name)
    if store.fs.exists(store.file(META)):
        meta = store.read_json(META)
        if meta.get("fingerprint") == fingerprint:
            return meta
        log.info("dedup: eval set %s changed since its index was built; rebuilding", eval_set.name)
    return build_index(config, eval_set, fingerprint, client)


def load_search_index(config: Config, meta: dict) -> EvalSetIndex:
    """The broadcast part of an index: descriptors, inverted lists, item ids and the caption LSH."""
    store = index_dir(config, meta["name"])
    arrays = load_arrays(store, SEARCH_ARRAYS + tuple(LEARNED + name for name in SEARCH_ARRAYS), memory_map=False)
    items = store.read_table("images.parquet").column("item").combine_chunks()
    with store.fs.open(store.file("captions.pkl"), "rb") as f:
        captions = pickle.load(f)  # written by build_index above, under the same output root
    images = ImageIndex.from_arrays(items, arrays) if meta["images_indexed"] else None
    return EvalSetIndex(meta["name"], meta["fingerprint"], images, captions)


def verification_store(root: str, name: str, fingerprint: str) -> VerificationStore:
    """This process's (memory-mapped) verification arrays of an index, opened once per fingerprint."""
    key = (f"{root}/{name}", fingerprint)
    if key not in _STORES:
        store = StageDir(root, f"{INDEX_ROOT}/{name}")
        _STORES[key] = VerificationStore(**load_arrays(store, VERIFICATION_ARRAYS, memory_map=True))
    return _STORES[key]


# --- shards ---------------------------------------------------------------------------------------------


def match_settings(config: Config) -> MatchSettings:
    d = config.dedup
    return MatchSettings(neighbours=d.image_neighbours, learned_neighbours=d.image_learned_neighbours,
                         min_similarity=d.image_min_similarity,
                         min_inliers=d.image_min_inliers, min_agreement=d.image_min_agreement,
                         max_local_change=d.image_max_local_change, probe=d.index_probe,
                         learned_probe=d.index_learned_probe,
                         min_verifier_score=d.image_min_verifier_score)


def check_fingerprint(config: Config) -> str:
    """A digest of everything a shard's verdicts depend on besides the indexes: the check's settings and its
    version (`verify.CHECK_VERSION`), the verifier's weights when it runs, and how the download stored the
    images."""
    settings = match_settings(config)
    checked = {"settings": dataclasses.asdict(settings), "version": CHECK_VERSION,
               "resize_mode": config.download.resize_mode,
               "verifier": verifier.weights_digest() if settings.min_verifier_score is not None else None}
    return hashlib.sha256(json.dumps(checked, sort_keys=True).encode()).hexdigest()


def dedup_task(shard_id: int, config: Config, indexes: list[EvalSetIndex], check: str) -> dict:
    """Check one download shard: sidecar Parquet renamed into place, then the stats JSON (with `check`, the
    run's `check_fingerprint`)."""
    store = StageDir(config.output, STAGE)
    if store.is_done(shard_id):
        return store.read_json(f"{shard_name(shard_id)}_stats.json")
    download = StageDir(config.output, "download")
    rows = download.read_table(f"{shard_name(shard_id)}.parquet")
    with download.fs.open(download.file(f"{shard_name(shard_id)}.tar"), "rb") as f:
        images, unreadable = read_tar_images(f)
    pairs = [(index, verification_store(config.output, index.name, index.fingerprint) if index.images else None)
             for index in indexes]
    table, stats = dedup_shard(rows, images, pairs, match_settings(config), config.download.resize_mode)
    if unreadable:
        stats["problems_by_reason"]["unreadable_tar_member"] = unreadable
    store.write_table(f"{shard_name(shard_id)}.parquet", table, dedup_schema.DEDUP)
    store.write_stats(shard_id, {**stats, "shard": shard_id, "check_fingerprint": check})
    return stats


def stale_shards(store: StageDir, fingerprints: dict[str, str], check: str) -> list[int]:
    """Finished shards that were checked against other indexes (an eval set changed, was added or removed) or
    by another check (`check_fingerprint`: other settings, other verifier weights)."""
    return [shard for shard, stats in store.read_all_stats().items()
            if stats.get("index_fingerprints") != fingerprints or stats.get("check_fingerprint") != check]


def merged_stats(shard_stats: list[dict], metas: list[dict]) -> dict:
    """sum_stats plus duplicates, per eval set counts and problems summed over shards, and the indexes' facts."""
    total = sum_stats(shard_stats)
    for field in ("duplicates", "image_duplicates", "text_duplicates"):
        total[field] = sum(s.get(field, 0) for s in shard_stats)
    problems = sum_counts(shard_stats, "problems_by_reason")
    by_set: dict[str, dict[str, int]] = {m["name"]: {"image": 0, "text": 0, "removed": 0} for m in metas}
    for stats in shard_stats:
        for name, counts in stats.get("by_eval_set", {}).items():
            for field, count in counts.items():
                by_set.setdefault(name, {})[field] = by_set.get(name, {}).get(field, 0) + count
    total["problems_by_reason"] = dict(sorted(problems.items()))
    total["by_eval_set"] = by_set
    total["eval_sets"] = {m["name"]: {k: m[k] for k in ("images_indexed", "captions_indexed", "problems_by_reason",
                                                         "empty")} for m in metas}
    return total


def run_dedup(config: Config) -> dict:
    """Run the dedup stage; returns the summed stats of every shard (plus per eval set counts)."""
    download = StageDir(config.output, "download")
    shards = sorted(download.done_shards())
    if not shards:
        raise ConfigError(f"no finished download shards under {download.path}: run `webli download` first")
    store = StageDir(config.output, STAGE)
    store.makedirs()
    store.remove_stale_temporaries()
    if not config.dedup.eval_sets:
        log.warning("dedup: no eval sets configured (dedup.eval_sets); every sample is written as not a duplicate")
    workers = config.dedup.processes or config.cluster.workers
    with LazyClient(config, workers) as client:
        metas = [ensure_index(config, eval_set, client) for eval_set in config.dedup.eval_sets]
        fingerprints, check = {m["name"]: m["fingerprint"] for m in metas}, check_fingerprint(config)
        for shard in stale_shards(store, fingerprints, check):
            log.info("dedup: shard %d was checked against other eval-set indexes or with other check settings; "
                     "checking it again", shard)
            store.fs.rm(store.stats_path(shard))
        todo = [s for s in shards if not store.is_done(s)]
        log.info("dedup: %d shard(s), %d to do, %d eval set(s)", len(shards), len(todo), len(metas))
        if todo:
            indexes = [load_search_index(config, meta) for meta in metas]
            broadcast = client().scatter(indexes, broadcast=True) if indexes else []
            run_shards(client(), dedup_task, todo, description="dedup", retries=config.cluster.task_retries,
                       args=(config, broadcast, check))
    shard_stats = [s for shard, s in store.read_all_stats().items() if shard in set(shards)]
    return merged_stats(shard_stats, metas)


class LazyClient:
    """A Dask client started on first use (a re-run with nothing to do starts no cluster)."""

    def __init__(self, config: Config, workers: int):
        self.config, self.workers = config, workers
        self._context = self._client = None

    def __call__(self):
        if self._client is None:
            self._context = dask_client(self.config.cluster, self.workers)
            self._client = self._context.__enter__()
        return self._client

    def __enter__(self) -> LazyClient:
        return self

    def __exit__(self, *exc) -> None:
        if self._context is not None:
            self._context.__exit__(*exc)
