"""Select stage on Dask: eligibility per shard, the exact global threshold, then the final shards.

1. candidates (one task per download shard): the download table joined with
   the score, OCR and dedup sidecars; failed downloads, eval-set duplicates
   and unscored samples dropped with their reason; the eligible samples'
   (key, score, language) written to `select/_candidates/NNNNN.parquet`.
2. threshold: the exact k-th sample by (score descending, key ascending),
   globally or per language, by radix selection on per-shard counts summed as
   they arrive (see `webli.stages.select.threshold`); written with the inputs
   and settings to `select/_selection_plan.json`.
3. counts (one task per download shard): how many of its samples are kept;
   `select/NNNNN_stats.json` (total = download rows, forwarded = selected).
4. shards (one task per output shard, planned from the counts): the tar, its
   Parquet index, then `shards/sizes.json` and `selection.json`, written last.

Every step skips finished work; a run with other inputs or settings than the
plan records is refused (delete `select/` to select again).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from dask.distributed import Client, as_completed
from tqdm import tqdm

from webli import schemas
from webli.pipeline.cluster import ShardFailures, dask_client, run_shards
from webli.pipeline.config import Config, ConfigError
from webli.pipeline.storage import StageDir, shard_name, sum_stats
from webli.schemas.score import MODEL_ID, PROBLEM, SCORE
from webli.schemas.select import DEDUP_COLUMNS, DEDUP_VERDICTS, OCR_COLUMNS, SELECT_CANDIDATES, SELECT_INDEX, SHARD
from webli.stages.select.join import eligibility, eligible_mask, join_shard
from webli.stages.select.shards import Piece, plan_output_shards, read_images, tar_sample, write_tar
from webli.stages.select.threshold import (
    ALL,
    ShardCandidates,
    Threshold,
    search_thresholds,
    selection_mask,
    shard_counts,
    start_searches,
)

log = logging.getLogger(__name__)
STAGE = "select"
CANDIDATES = f"{STAGE}/_candidates"
SHARDS = f"{STAGE}/shards"
PLAN_FILE = "_selection_plan.json"
SELECTION_FILE = "selection.json"
SIZES_FILE = "sizes.json"
BELOW_THRESHOLD = "below_threshold"
SIDECAR_STAGES = ("ocr", "dedup")


@dataclass(frozen=True)
class SelectInputs:
    """The download shards selected from, and which optional sidecars join them."""

    shards: tuple[int, ...]
    ocr: bool
    dedup: bool


# --- inputs -------------------------------------------------------------------------------------------------

def read_columns(store: StageDir, name: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A Parquet file's columns among `columns` that it has (all columns when None)."""
    with store.fs.open(store.file(name), "rb") as f:
        parquet = pq.ParquetFile(f)
        present = parquet.schema_arrow.names
        return parquet.read(columns=None if columns is None else [c for c in columns if c in present])


def sidecar_present(config: Config, stage: str, shards: set[int]) -> bool:
    """Whether an optional sidecar stage ran; if it did, it must cover every input shard."""
    done = StageDir(config.output, stage).done_shards()
    if not done:
        log.warning("select: no %s sidecars under %s; selecting without them", stage, config.output)
        return False
    missing = sorted(shards - done)
    if missing:
        raise ConfigError(f"the {stage} stage has not finished shards {missing[:10]} "
                          f"({len(missing)} of {len(shards)}): run `webli {stage}` first")
    return True


def check_dedup_verdicts(config: Config, shard_id: int) -> None:
    """Refuse dedup sidecars that hold none of the verdict columns select knows (eval duplicates would leak)."""
    store = StageDir(config.output, "dedup")
    with store.fs.open(store.file(f"{shard_name(shard_id)}.parquet"), "rb") as f:
        names = pq.read_schema(f).names
    if not set(DEDUP_VERDICTS) & set(names):
        raise ConfigError(f"dedup sidecars have columns {names} but none of the verdicts select drops on "
                          f"({list(DEDUP_VERDICTS)}): see webli/schemas/select.py")


def gather_inputs(config: Config) -> SelectInputs:
    """The finished download shards, checked to be scored (and OCR'd / deduplicated if those stages ran)."""
    shards = StageDir(config.output, "download").done_shards()
    if not shards:
        raise ConfigError(f"no finished download shards under {config.output}: run `webli download` first")
    unscored = sorted(shards - StageDir(config.output, "score").done_shards())
    if unscored:
        raise ConfigError(f"download shards {unscored[:10]} ({len(unscored)} of {len(shards)}) are not scored: "
                          "run `webli score` first")
    present = {stage: sidecar_present(config, stage, shards) for stage in SIDECAR_STAGES}
    if present["dedup"]:
        check_dedup_verdicts(config, min(shards))
    return SelectInputs(tuple(sorted(shards)), present["ocr"], present["dedup"])


def joined_shard(config: Config, inputs: SelectInputs, shard_id: int) -> pa.Table:
    """One download shard joined with its sidecars, every row, in key order."""
    name = f"{shard_name(shard_id)}.parquet"

    def sidecar(stage: str, columns: list[str]) -> pa.Table:
        return read_columns(StageDir(config.output, stage), name, [schemas.KEY, *columns])

    download = read_columns(StageDir(config.output, "download"), name)
    score = sidecar("score", [SCORE, MODEL_ID, PROBLEM])
    ocr = sidecar("ocr", list(OCR_COLUMNS)) if inputs.ocr else None
    dedup = sidecar("dedup", list(DEDUP_COLUMNS)) if inputs.dedup else None
    return join_shard(download, score, ocr, dedup)


# --- Dask: results streamed and reduced as they arrive ------------------------------------------------------

def stream_shards(client: Client, task: Callable, shard_ids: Sequence[int], *, description: str, retries: int,
                  args: tuple = ()) -> Iterator[tuple[int, object]]:
    """Like `run_shards`, but yields (shard id, result) as tasks finish and keeps no result.

    For reductions over many shards: the caller folds each result in, so the
    driver's memory does not grow with the number of shards.
    """
    token = uuid.uuid4().hex[:8]
    futures = [client.submit(task, shard_id, *args, key=f"{description}-{shard_id}-{token}", retries=retries,
                             pure=False) for shard_id in shard_ids]
    shard_of = {f.key: s for f, s in zip(futures, shard_ids)}
    failures: dict[int, str] = {}
    with tqdm(total=len(futures), desc=description, unit="shard", dynamic_ncols=True) as progress:
        for future in as_completed(futures):
            shard_id = shard_of[future.key]
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001 - reported below with the shard id
                failures[shard_id] = f"{type(err).__name__}: {err}"
                log.error("%s shard %d failed after %d retries: %s", description, shard_id, retries, err)
            else:
                yield shard_id, result
            finally:
                future.release()
                progress.update()
    if failures:
        first = "; ".join(f"{s}: {e}" for s, e in sorted(failures.items())[:3])
        raise ShardFailures(f"{len(failures)} {description} shard(s) failed ({first}). "
                            "Finished shards are kept: fix the cause and run the stage again.")


# --- 1. candidates ------------------------------------------------------------------------------------------

def candidates_task(shard_id: int, config: Config, inputs: SelectInputs) -> dict:
    """Write one shard's eligible samples, then its eligibility stats (the done marker)."""
    store = StageDir(config.output, CANDIDATES)
    if store.is_done(shard_id):
        return store.read_json(f"{shard_name(shard_id)}_stats.json")
    table, stats = eligibility(joined_shard(config, inputs, shard_id))
    store.write_table(f"{shard_name(shard_id)}.parquet", table, SELECT_CANDIDATES)
    stats = {**stats, "shard": shard_id, "sidecars": {"ocr": inputs.ocr, "dedup": inputs.dedup}}
    store.write_stats(shard_id, stats)
    return stats


@dataclass
class CandidateSummary:
    """What the driver keeps of the candidate pass: eligible counts and which shards hold any."""

    eligible_by_language: Counter
    shards_with_candidates: list[int]
    score_models: set[str]


def collect_candidates(client: Client, config: Config, inputs: SelectInputs) -> CandidateSummary:
    """Run the candidate pass and fold its stats as they arrive."""
    summary = CandidateSummary(Counter(), [], set())
    expected = {"ocr": inputs.ocr, "dedup": inputs.dedup}
    for shard_id, stats in stream_shards(client, candidates_task, inputs.shards, description="select-candidates",
                                         retries=config.cluster.task_retries, args=(config, inputs)):
        if stats["sidecars"] != expected:
            raise ConfigError(f"select candidates of shard {shard_id} were made with sidecars {stats['sidecars']}, "
                              f"now {expected}: delete {StageDir(config.output, STAGE).path} to select again")
        summary.eligible_by_language.update(stats["eligible_by_language"])
        summary.score_models.update(stats["score_model_ids"])
        if stats["forwarded"]:
            summary.shards_with_candidates.append(shard_id)
    if len(summary.score_models) > 1:
        raise ConfigError(f"the score sidecars come from several models {sorted(summary.score_models)}: their "
                          f"scores are not comparable; delete {StageDir(config.output, 'score').path} and score again")
    summary.shards_with_candidates.sort()
    return summary


# --- 2. threshold -------------------------------------------------------------------------------------------

def read_candidates(config: Config, shard_id: int) -> ShardCandidates:
    table = StageDir(config.output, CANDIDATES).read_table(f"{shard_name(shard_id)}.parquet")
    return ShardCandidates.from_table(table, config.select.per_language)


def digit_counts_task(shard_id: int, config: Config, queries: dict) -> dict:
    """One shard's counts for one round of the threshold search."""
    return shard_counts(read_candidates(config, shard_id), queries)


def find_thresholds(client: Client, config: Config, summary: CandidateSummary) -> tuple[dict[str, Threshold], int]:
    """The exact threshold of every group (one, or one per language) and the rounds it took."""
    eligible = dict(summary.eligible_by_language)
    groups = eligible if config.select.per_language else {ALL: sum(eligible.values())}
    searches = start_searches(groups, config.select.top_fraction, config.select.per_language)

    def count_round(queries: dict, shard_ids: list[int]) -> Iterator[tuple[int, dict]]:
        return stream_shards(client, digit_counts_task, shard_ids, description="select-threshold",
                             retries=config.cluster.task_retries, args=(config, queries))

    return search_thresholds(searches, summary.shards_with_candidates, count_round)


def selection_settings(config: Config) -> dict:
    return config.select.model_dump(mode="json")


def make_plan(client: Client, config: Config, inputs: SelectInputs) -> dict:
    """Candidates, then thresholds: the record every later step and re-run follows."""
    summary = collect_candidates(client, config, inputs)
    thresholds, rounds = find_thresholds(client, config, summary)
    log.info("select: thresholds found in %d round(s): %s", rounds,
             {g: (t.keep, t.eligible) for g, t in list(thresholds.items())[:8]})
    return {"inputs": list(inputs.shards), "sidecars": {"ocr": inputs.ocr, "dedup": inputs.dedup},
            "settings": selection_settings(config), "score_model_id": min(summary.score_models, default=None),
            "thresholds": {g: t.to_json() for g, t in thresholds.items()}, "threshold_rounds": rounds}


def checked_plan(store: StageDir, config: Config, inputs: SelectInputs) -> dict | None:
    """The saved plan if any, refused when the inputs or settings differ from this run's."""
    if not store.fs.exists(store.file(PLAN_FILE)):
        return None
    plan = store.read_json(PLAN_FILE)
    current = {"inputs": list(inputs.shards), "sidecars": {"ocr": inputs.ocr, "dedup": inputs.dedup},
               "settings": selection_settings(config)}
    changed = [name for name, value in current.items() if plan[name] != value]
    if changed:
        raise ConfigError(f"{store.path} was selected with other {' and '.join(changed)} than this run's: "
                          f"delete {store.path} to select again")
    return plan


# --- 3. counts ----------------------------------------------------------------------------------------------

def count_task(shard_id: int, config: Config, thresholds: dict[str, Threshold]) -> dict:
    """How many of one shard's samples are kept: its final stats JSON (total = download rows)."""
    store = StageDir(config.output, STAGE)
    if store.is_done(shard_id):
        return store.read_json(f"{shard_name(shard_id)}_stats.json")
    candidates = StageDir(config.output, CANDIDATES)
    first = candidates.read_json(f"{shard_name(shard_id)}_stats.json")
    table = candidates.read_table(f"{shard_name(shard_id)}.parquet")
    kept = selection_mask(ShardCandidates.from_table(table, config.select.per_language), thresholds)
    languages = table.column(schemas.LANGUAGE).to_numpy(zero_copy_only=False)[kept]
    dropped = dict(first["dropped_by_reason"])
    if table.num_rows > kept.sum():
        dropped[BELOW_THRESHOLD] = int(table.num_rows - kept.sum())
    stats = {"stage": STAGE, "shard": shard_id, "total": first["total"], "forwarded": int(kept.sum()),
             "dropped_by_reason": dict(sorted(dropped.items())), "eligible": first["forwarded"],
             "eligible_by_language": first["eligible_by_language"],
             "selected_by_language": dict(sorted(Counter(languages.tolist()).items()))}
    store.write_stats(shard_id, stats)
    return stats


@dataclass
class SelectionCounts:
    """The count pass folded: selected per input shard, and totals for the summary."""

    selected: dict[int, int]
    totals: Counter
    dropped: Counter
    eligible_by_language: Counter
    selected_by_language: Counter

    def add(self, shard_id: int, stats: dict) -> None:
        self.selected[shard_id] = stats["forwarded"]
        self.totals.update({"shards": 1, "total": stats["total"], "forwarded": stats["forwarded"],
                            "eligible": stats["eligible"]})
        self.dropped.update(stats["dropped_by_reason"])
        self.eligible_by_language.update(stats["eligible_by_language"])
        self.selected_by_language.update(stats["selected_by_language"])

    def summed_stats(self) -> dict:
        """The stats vocabulary summed over shards, as `sum_stats` gives it."""
        record = {"total": self.totals["total"], "forwarded": self.totals["forwarded"],
                  "dropped": sum(self.dropped.values()), "dropped_by_reason": dict(self.dropped)}
        return {**sum_stats([record]), "shards": self.totals["shards"]}


def count_selected(client: Client, config: Config, inputs: SelectInputs,
                   thresholds: dict[str, Threshold]) -> SelectionCounts:
    counts = SelectionCounts({}, Counter(), Counter(), Counter(), Counter())
    for shard_id, stats in stream_shards(client, count_task, inputs.shards, description="select-counts",
                                         retries=config.cluster.task_retries, args=(config, thresholds)):
        counts.add(shard_id, stats)
    return counts


# --- 4. shards ----------------------------------------------------------------------------------------------

def selected_rows(config: Config, inputs: SelectInputs, thresholds: dict[str, Threshold], shard_id: int) -> pa.Table:
    """One download shard's kept samples, every joined column, in key order."""
    joined = joined_shard(config, inputs, shard_id)
    eligible = joined.filter(eligible_mask(joined))
    kept = selection_mask(ShardCandidates.from_table(eligible, config.select.per_language), thresholds)
    return eligible.filter(pa.array(kept))


def piece_samples(config: Config, inputs: SelectInputs, thresholds: dict[str, Threshold], piece: Piece,
                  out_id: int, index_parts: list[pa.Table]) -> Iterator[dict]:
    """The tar samples of one piece; its index rows are appended to `index_parts`."""
    rows = selected_rows(config, inputs, thresholds, piece.input_shard)
    if rows.num_rows != piece.of:
        raise RuntimeError(f"download shard {piece.input_shard} now has {rows.num_rows} selected samples, "
                           f"{piece.of} when counted: its inputs changed; delete the select folder and run again")
    part = rows.slice(piece.start, piece.stop - piece.start)
    index = schemas.conform(part.append_column(SHARD, pa.array([out_id] * part.num_rows, pa.int32())), SELECT_INDEX)
    index_parts.append(index)
    download = StageDir(config.output, "download")
    with download.fs.open(download.file(f"{shard_name(piece.input_shard)}.tar"), "rb") as tar:
        images = read_images(tar, index.column(schemas.KEY).to_pylist())
        for row, (_, extension, image) in zip(index.to_pylist(), images):
            yield tar_sample(row, extension, image)


def write_task(out_id: int, config: Config, inputs: SelectInputs, thresholds: dict[str, Threshold],
               layout: list[list[Piece]]) -> dict:
    """Write one output shard: its tar, then its Parquet index (the done marker)."""
    store = StageDir(config.output, SHARDS)
    index_name = f"{shard_name(out_id)}.parquet"
    if store.fs.exists(store.file(index_name)):
        return {"shard": out_id, "samples": read_columns(store, index_name, [schemas.KEY]).num_rows}
    parts: list[pa.Table] = []
    samples = (sample for piece in layout[out_id]
               for sample in piece_samples(config, inputs, thresholds, piece, out_id, parts))
    with store.atomic_path(f"{shard_name(out_id)}.tar") as tmp, store.fs.open(tmp, "wb") as out:
        written = write_tar(out, samples)
    store.write_table(index_name, pa.concat_tables(parts), SELECT_INDEX)
    return {"shard": out_id, "samples": written}


def write_shards(client: Client, config: Config, inputs: SelectInputs, thresholds: dict[str, Threshold],
                 layout: list[list[Piece]]) -> None:
    """Write every output shard not written yet (the layout is sent once to each worker)."""
    store = StageDir(config.output, SHARDS)
    todo = [i for i in range(len(layout)) if not store.fs.exists(store.file(f"{shard_name(i)}.parquet"))]
    log.info("select: %d output shard(s), %d to write", len(layout), len(todo))
    if todo:
        shared_layout = client.scatter(layout, broadcast=True)
        run_shards(client, write_task, todo, description="select-shards", retries=config.cluster.task_retries,
                   args=(config, inputs, thresholds, shared_layout))


# --- the stage ----------------------------------------------------------------------------------------------

def selection_record(config: Config, plan: dict, counts: SelectionCounts, layout: list[list[Piece]]) -> dict:
    """`selection.json`: settings, thresholds, counts per reason and per language, output shards."""
    languages = {lang: {"eligible": n, "selected": counts.selected_by_language.get(lang, 0)}
                 for lang, n in sorted(counts.eligible_by_language.items())}
    return {
        "top_fraction": config.select.top_fraction,
        "per_language": config.select.per_language,
        "rule": ("keep = ceil(top_fraction x eligible) in each language" if config.select.per_language
                 else "keep = floor(top_fraction x eligible)")
        + "; order: score descending, then key ascending; exact (radix selection on counts)",
        "score_model_id": plan["score_model_id"],
        "inputs": {"download_shards": len(plan["inputs"]), **plan["sidecars"]},
        "total": counts.totals["total"],
        "eligible": counts.totals["eligible"],
        "selected": counts.totals["forwarded"],
        "dropped_by_reason": dict(sorted(counts.dropped.items(), key=lambda kv: (-kv[1], kv[0]))),
        "thresholds": plan["thresholds"],
        "threshold_rounds": plan["threshold_rounds"],
        "languages": languages,
        "shards": {"count": len(layout), "shard_size": config.select.shard_size,
                   "min_shards": config.select.min_shards, "sizes": f"shards/{SIZES_FILE}"},
    }


def run_select(config: Config) -> dict:
    """Run the select stage; returns the summed stats of every download shard."""
    inputs = gather_inputs(config)
    store = StageDir(config.output, STAGE)
    store.remove_stale_temporaries()
    plan = checked_plan(store, config, inputs)
    if plan is not None and store.fs.exists(store.file(SELECTION_FILE)):
        return sum_stats(list(store.read_all_stats().values()))
    with dask_client(config.cluster, min(len(inputs.shards), config.cluster.workers)) as client:
        if plan is None:
            plan = make_plan(client, config, inputs)
            store.write_json(PLAN_FILE, plan)
        thresholds = {g: Threshold.from_json(t) for g, t in plan["thresholds"].items()}
        counts = count_selected(client, config, inputs, thresholds)
        layout = plan_output_shards([(i, counts.selected[i]) for i in inputs.shards], config.select.shard_size,
                                    config.select.min_shards)
        write_shards(client, config, inputs, thresholds, layout)
    sizes = {f"{shard_name(i)}.tar": sum(p.stop - p.start for p in pieces) for i, pieces in enumerate(layout)}
    StageDir(config.output, SHARDS).write_json(SIZES_FILE, sizes)
    store.write_json(SELECTION_FILE, selection_record(config, plan, counts, layout))  # written last: done
    if not layout:
        log.warning("select: no sample was selected; the shards folder is empty")
    return counts.summed_stats()
