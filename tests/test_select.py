"""Select stage: exact top fraction (ties, fractions 0 and 1, empty shards, everything flagged), the join and its
drop reasons, the output plan, and the final shards loaded by open_clip's own WebDataset loader."""

from __future__ import annotations

import argparse
import hashlib
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dask.distributed import LocalCluster
from helpers import tar_samples
from test_score import download_row, write_download_shard

from webli import schemas
from webli.pipeline.config import ConfigError, validate_config
from webli.pipeline.select import run_select
from webli.pipeline.storage import StageDir, shard_name
from webli.schemas.dedup import DEDUP
from webli.schemas.ocr import OCR
from webli.schemas.score import SCORE_SIDECAR
from webli.schemas.select import OCR_COLUMNS
from webli.stages.select.join import eligibility, join_shard
from webli.stages.select.shards import output_sizes, plan_output_shards
from webli.stages.select.threshold import (
    ShardCandidates,
    code_score,
    keep_count,
    score_codes,
    search_thresholds,
    selection_mask,
    shard_counts,
    start_searches,
)

# --- the threshold ---------------------------------------------------------------------------------------------


def candidates_table(rows: list[tuple[str, float, str]]) -> pa.Table:
    keys, scores, languages = zip(*rows) if rows else ((), (), ())
    return pa.table({"key": pa.array(keys, pa.string()), "score": pa.array(scores, pa.float32()),
                     "language": pa.array(languages, pa.string())})


def select_in_memory(shards: list[list[tuple[str, float, str]]], fraction: float, per_language: bool):
    """The stage's search with an in-memory count round: (kept keys, rounds)."""
    arrays = {i: ShardCandidates.from_table(candidates_table(rows), per_language) for i, rows in enumerate(shards)}
    eligible: dict[str, int] = {} if per_language else {"*": 0}
    for rows in shards:
        for _, _, language in rows:
            group = language if per_language else "*"
            eligible[group] = eligible.get(group, 0) + 1

    def count_round(queries, shard_ids):
        return [(i, shard_counts(arrays[i], queries)) for i in shard_ids]

    searches = start_searches(eligible, fraction, per_language)
    thresholds, rounds = search_thresholds(searches, sorted(arrays), count_round)
    kept = {key for i, rows in enumerate(shards)
            for (key, _, _), keep in zip(rows, selection_mask(arrays[i], thresholds)) if keep}
    return kept, rounds


def brute_force(shards, fraction: float, per_language: bool) -> set[str]:
    """Sort everything by (score as float32 descending, key ascending) and take the first k of each group."""
    groups: dict[str, list] = {}
    for rows in shards:
        for key, score, language in rows:
            groups.setdefault(language if per_language else "*", []).append((-float(np.float32(score)), key))
    kept = set()
    for members in groups.values():
        members.sort()
        kept |= {key for _, key in members[:keep_count(len(members), fraction, round_up=per_language)]}
    return kept


def random_shards(seed: int, shards: int = 5, distinct_scores: int = 7) -> list[list[tuple[str, float, str]]]:
    """Shards with heavy score ties and keys that are prefixes of one another ('1', '10', '100', 'é')."""
    rng = random.Random(seed)
    values = [rng.uniform(-0.3, 0.5) for _ in range(distinct_scores)] + [0.0, -0.0]
    keys = rng.sample(sorted({str(rng.randint(0, 999)) for _ in range(400)} | {"1", "10", "100", "é", "e"}), 120)
    out = [[] for _ in range(shards)]
    for key in keys:
        out[rng.randrange(shards - 1)].append((key, rng.choice(values), rng.choice(["en", "de", "sw"])))
    return out  # the last shard stays empty


@pytest.mark.parametrize("per_language", [False, True])
@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.37, 0.5, 0.99, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_is_exactly_the_top_fraction(seed, fraction, per_language):
    shards = random_shards(seed)
    kept, _ = select_in_memory(shards, fraction, per_language)
    assert kept == brute_force(shards, fraction, per_language)


def test_equal_scores_are_broken_by_key():
    shards = [[("b", 0.25, "en"), ("d", 0.25, "en")], [("a", 0.25, "en"), ("c", 0.25, "en"), ("ab", 0.25, "en")]]
    kept, rounds = select_in_memory(shards, 0.6, per_language=False)
    assert kept == {"a", "ab", "b"} and rounds > 3  # the key rounds ran


def test_distinct_scores_need_only_the_two_score_rounds():
    shards = [[(f"{i:03d}", i / 100, "en") for i in range(50)], [(f"{i:03d}", i / 100, "en") for i in range(50, 90)]]
    kept, rounds = select_in_memory(shards, 0.1, per_language=False)
    assert kept == {f"{i:03d}" for i in range(81, 90)} and rounds == 2


def test_per_language_keeps_every_language_and_global_may_not():
    shards = [[(f"en{i}", 0.3 + i / 1000, "en") for i in range(50)] + [("sw0", 0.1, "sw"), ("sw1", 0.05, "sw")]]
    global_kept, _ = select_in_memory(shards, 0.1, per_language=False)
    local_kept, _ = select_in_memory(shards, 0.1, per_language=True)
    assert not any(k.startswith("sw") for k in global_kept)
    assert "sw0" in local_kept and "sw1" not in local_kept and len(local_kept) == 6  # ceil(5.0) + ceil(0.2)


def test_nothing_eligible_selects_nothing():
    kept, rounds = select_in_memory([[], []], 0.5, per_language=False)
    assert kept == set() and rounds == 0


def test_keep_count_reads_the_fraction_as_written():
    assert keep_count(100, 0.29) == 29 and keep_count(10, 0.7) == 7 and keep_count(3, 0.1) == 0
    assert keep_count(3, 0.1, round_up=True) == 1 and keep_count(0, 0.5, round_up=True) == 0
    assert keep_count(7, 1.0) == 7 and keep_count(7, 0.0, round_up=True) == 0


def test_score_codes_sort_as_scores_descending():
    scores = np.array([0.5, -0.25, 0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, np.inf, -np.inf, 0.3], dtype=np.float32)
    codes = score_codes(scores)
    for a in range(len(scores)):
        for b in range(len(scores)):
            assert (codes[a] < codes[b]) == (scores[a] > scores[b])
    assert [code_score(int(c)) for c in codes] == [float(s) + 0.0 for s in scores]


# --- the join and drop reasons ---------------------------------------------------------------------------------

def score_table(rows: list[tuple[str, float | None, str | None]]) -> pa.Table:
    return pa.table({"key": [k for k, _, _ in rows], "uid": [f"uid-{k}" for k, _, _ in rows],
                     "score": pa.array([s for _, s, _ in rows], pa.float32()), "model_id": ["m"] * len(rows),
                     "problem": [p for _, _, p in rows]})


def test_join_drops_each_sample_for_its_first_reason():
    download = pa.Table.from_pylist([
        download_row("0001", "kept"), download_row("0002", "failed", status="failed_to_download"),
        download_row("0003", "eval image"), download_row("0004", "eval caption"), download_row("0005", "corrupt"),
        download_row("0006", "no score row"), download_row("0007", "flagged and unscored"),
        download_row("0008", "nan score"),
    ], schema=schemas.DOWNLOAD)
    score = score_table([("0001", 0.3, None), ("0003", 0.9, None), ("0004", 0.8, None), ("0005", None, "decode_error"),
                         ("0007", None, "decode_error"), ("0008", float("nan"), None), ("9999", 0.5, None)])
    dedup = pa.table({"key": ["0003", "0004", "0007", "0001"], "image_duplicate": [True, False, False, False],
                      "text_duplicate": [False, True, False, False], "is_duplicate": [True, True, True, False]})
    ocr = pa.table({"key": ["0001"], "ocr_text": ["STOP"], "ocr_words": pa.array(
        [[{"text": "STOP", "left": 1, "top": 2, "width": 30, "height": 9, "conf": 91.5, "block": 1, "paragraph": 1,
           "line": 1}]], OCR_COLUMNS["ocr_words"])})
    joined = join_shard(download, score, ocr, dedup)
    table, stats = eligibility(joined)
    assert table.column("key").to_pylist() == ["0001"]
    assert stats["dropped_by_reason"] == {
        "download_failed": 1, "eval_duplicate": 1, "eval_duplicate_image": 1, "eval_duplicate_text": 1,
        "unscored_decode_error": 1, "unscored_no_score_row": 1, "unscored_non_finite": 1}
    assert stats["total"] == 8 and stats["forwarded"] == 1
    first = joined.slice(0, 1).to_pylist()[0]
    assert first["ocr_text"] == "STOP" and first["ocr_words"][0]["conf"] == 91.5 and first["ocr_status"] is None


def test_join_without_ocr_or_dedup_gives_null_columns():
    download = pa.Table.from_pylist([download_row("0001", "a"), download_row("0002", "b")], schema=schemas.DOWNLOAD)
    joined = join_shard(download, score_table([("0002", 0.1, None), ("0001", 0.2, None)]), None, None)
    assert joined.column("key").to_pylist() == ["0001", "0002"]
    assert joined.column("ocr_text").null_count == 2 and joined.column("dedup_is_duplicate").null_count == 2
    assert eligibility(joined)[1]["forwarded"] == 2


def test_a_sidecar_with_repeated_keys_is_refused():
    download = pa.Table.from_pylist([download_row("0001", "a")], schema=schemas.DOWNLOAD)
    with pytest.raises(ValueError, match="repeats keys"):
        join_shard(download, score_table([("0001", 0.1, None), ("0001", 0.2, None)]), None, None)


# --- the output plan -------------------------------------------------------------------------------------------

def test_output_sizes_fill_loader_workers_and_never_leave_a_shard_empty():
    assert output_sizes(0, 10, 4) == []
    assert output_sizes(3, 10, 4) == [1, 1, 1]
    assert output_sizes(10, 10, 4) == [3, 3, 2, 2]
    assert output_sizes(25, 10, 1) == [9, 8, 8]


def test_plan_cuts_input_runs_in_order():
    plan = plan_output_shards([(0, 3), (1, 0), (2, 4), (5, 2)], shard_size=4, min_shards=1)
    flat = [(p.input_shard, p.start, p.stop, p.of) for pieces in plan for p in pieces]
    assert [sum(p.stop - p.start for p in pieces) for pieces in plan] == [3, 3, 3]
    assert flat == [(0, 0, 3, 3), (2, 0, 3, 4), (2, 3, 4, 4), (5, 0, 2, 2)]


# --- the stage on synthetic download shards -------------------------------------------------------------------

def write_sidecar(root, stage: str, shard_id: int, table: pa.Table, schema: pa.Schema | None = None) -> None:
    store = StageDir(str(root), stage)
    if schema is None:
        store.makedirs()
        pq.write_table(table, store.file(f"{shard_name(shard_id)}.parquet"))
    else:
        store.write_table(f"{shard_name(shard_id)}.parquet", table, schema)
    store.write_stats(shard_id, {"stage": stage, "total": table.num_rows, "forwarded": table.num_rows,
                                 "dropped_by_reason": {}, "model_id": "m"})


def synthetic_run(root, shards: int = 3, per_shard: int = 12) -> dict[str, float]:
    """Download shards (one failure each, one empty shard), score, OCR and dedup sidecars; returns the scores."""
    rng = random.Random(7)
    scores = {}
    for shard_id in range(shards):
        keys = [f"{shard_id:02d}{i:03d}" for i in range(per_shard if shard_id != 1 else 0)]
        languages = ["en", "de", "sw"]
        rows = [download_row(k, f"caption {k}", languages[i % 3]) for i, k in enumerate(keys)]
        if rows:
            rows.append(download_row(f"{shard_id:02d}999", "failed", status="failed_to_download"))
        write_download_shard(root, shard_id, rows)
        shard_scores = {k: round(rng.uniform(-0.1, 0.4), 2) for k in keys}  # rounded: ties across shards
        scores.update(shard_scores)
        write_sidecar(root, "score", shard_id, score_table([(k, s, None) for k, s in shard_scores.items()]),
                      SCORE_SIDECAR)
        write_sidecar(root, "dedup", shard_id,
                      pa.Table.from_pylist([dedup_row(k, flagged=k in keys[:2]) for k in keys], schema=DEDUP), DEDUP)
        write_sidecar(root, "ocr", shard_id, pa.Table.from_pylist([ocr_row(k) for k in keys], schema=OCR), OCR)
    return scores


def dedup_row(key: str, flagged: bool) -> dict:
    """One row of the dedup stage's sidecar (schema webli.schemas.dedup.DEDUP): an eval image match or none."""
    match = {"image_eval_set": "cifar", "image_eval_item": "7", "image_similarity": 0.97, "image_inliers": 40}
    return {"key": key, "uid": f"uid-{key}", "is_duplicate": flagged, "matched_set": "cifar" if flagged else None,
            "matched_item": "7" if flagged else None, "image_duplicate": flagged, "text_duplicate": False,
            "text_eval_set": None, "text_eval_item": None, "text_similarity": None, "image_problem": None,
            **(match if flagged else dict.fromkeys(match))}


def ocr_row(key: str) -> dict:
    """One row of the OCR stage's sidecar (schema webli.schemas.ocr.OCR) that read one word."""
    word = {"text": f"W{key}", "left": 1, "top": 2, "width": 30, "height": 9, "conf": 90.0, "block": 1,
            "paragraph": 1, "line": 1}
    return {"key": key, "uid": f"uid-{key}", "ocr_status": "read", "ocr_error": None, "ocr_text": f"W{key}",
            "ocr_words": [word], "ocr_word_count": 1, "ocr_mean_conf": 90.0, "ocr_languages": ["eng"],
            "ocr_script": "Latin", "ocr_script_conf": 5.0, "ocr_text_score": 0.5, "ocr_source": "thumbnail",
            "ocr_width": 48, "ocr_height": 48, "ocr_seconds": 0.25}


@pytest.fixture(scope="module")
def scheduler():
    """An in-process Dask cluster (inproc://, no sockets) the stage joins through `cluster.scheduler`."""
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def select_config(scheduler):
    def make(root, **select):
        return validate_config({"output": str(root), "select": select, "cluster": {"scheduler": scheduler}})
    return make


@pytest.fixture(scope="module")
def selected(tmp_path_factory, scheduler):
    root = tmp_path_factory.mktemp("select") / "out"
    scores = synthetic_run(root)
    config = validate_config({"output": str(root), "cluster": {"scheduler": scheduler},
                              "select": {"top_fraction": 0.5, "shard_size": 3, "min_shards": 4}})
    return root, scores, run_select(config)


def test_stage_keeps_the_top_half_of_eligible_samples(selected):
    root, scores, stats = selected
    selection = json.loads((root / "select" / "selection.json").read_text())
    flagged = {k for k in scores if k.endswith(("000", "001"))}
    eligible = sorted((-np.float32(s), k) for k, s in scores.items() if k not in flagged)
    expected = {k for _, k in eligible[:len(eligible) // 2]}
    index = [row for path in sorted((root / "select" / "shards").glob("*.parquet"))
             for row in pq.read_table(path).to_pylist()]
    assert {row["key"] for row in index} == expected
    assert stats["total"] == 2 * 13 and stats["forwarded"] == len(expected) == selection["selected"]
    assert stats["dropped_by_reason"] == {"below_threshold": len(eligible) - len(expected),
                                          "download_failed": 2, "eval_duplicate_image": 4}
    assert selection["thresholds"]["*"]["keep"] == len(expected)
    assert sum(v["selected"] for v in selection["languages"].values()) == len(expected)


def test_shards_hold_image_text_and_every_metadata_field(selected):
    root, scores, _ = selected
    shards = root / "select" / "shards"
    sizes = json.loads((shards / "sizes.json").read_text())
    assert sorted(sizes) == [f"{i:05d}.tar" for i in range(4)] and sum(sizes.values()) == 10
    for name, size in sizes.items():
        samples = tar_samples(shards / name)
        assert len(samples) == size
        for key, files in samples.items():
            assert "." not in key and set(files) == {"jpg", "txt", "json"}
            meta = json.loads(files["json"])
            assert meta["key"] == key and files["txt"].decode() == f"caption {key}"
            assert meta["score"] == pytest.approx(scores[key], abs=1e-6) and meta["score_model_id"] == "m"
            assert {"url", "page_url", "language", "uid", "dedup_is_duplicate"} <= set(meta)
            assert meta["dedup_is_duplicate"] is False and meta["dedup_matched_set"] is None
            assert meta["ocr_text"] == f"W{key}" and meta["ocr_words"][0]["conf"] == 90.0


def test_same_input_gives_the_same_bytes_and_rerun_is_a_no_op(selected, select_config, tmp_path):
    root, _, stats = selected
    before = {p: p.stat().st_mtime_ns for p in (root / "select").rglob("*") if p.is_file()}
    assert run_select(select_config(root, top_fraction=0.5, shard_size=3, min_shards=4)) == stats
    assert {p: p.stat().st_mtime_ns for p in (root / "select").rglob("*") if p.is_file()} == before
    again = tmp_path / "again"
    synthetic_run(again)
    run_select(select_config(again, top_fraction=0.5, shard_size=3, min_shards=4))

    def digest(base):
        return {p.relative_to(base).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((base / "select").rglob("*")) if p.is_file()}

    assert digest(again) == digest(root)


def test_changed_settings_are_refused(selected, select_config):
    root, _, _ = selected
    with pytest.raises(ConfigError, match="other settings"):
        run_select(select_config(root, top_fraction=0.2, shard_size=3, min_shards=4))


def tarfile_to_samples_with_upstream_fix(src, handler=None):
    """open_clip_train's `tarfile_to_samples_nothrow` with the fix of open_clip#935 / webdataset#384.

    open_clip_train 3.3.0 groups the files of webdataset >= 0.2.96 without
    expecting its end-of-shard marker and fails with KeyError 'fname' on any
    shard; the upstream fix passes `eof_value=None`.
    """
    from open_clip_train import data
    from webdataset.tariterators import tar_file_expander, url_opener

    handler = handler or data.log_and_continue
    files = tar_file_expander(url_opener(src, handler=handler), handler=handler, eof_value=None)
    return data.group_by_keys_nothrow(files, handler=handler)


def loader_args(root, **extra) -> argparse.Namespace:
    shards = str(root / "select" / "shards" / "{00000..00003}.tar")
    return argparse.Namespace(train_data=shards, val_data=shards, train_num_samples=None, val_num_samples=None,
                              train_data_upsampling_factors=None, dataset_resampled=False, workers=2,
                              world_size=1, batch_size=2, seed=0, **extra)


def test_shards_load_in_open_clip_validation_loader(selected):
    data = pytest.importorskip("open_clip_train.data")
    import open_clip

    root, _, _ = selected
    args = loader_args(root)
    assert data.get_dataset_size(args.train_data) == (10, 4)  # samples from sizes.json, shards
    info = data.get_wds_dataset(args, open_clip.image_transform(32, is_train=False), is_train=False,
                                tokenizer=open_clip.get_tokenizer("ViT-B-32"))
    batches = list(info.dataloader)
    assert sum(images.shape[0] for images, _ in batches) == 10
    assert all(images.shape[1:] == (3, 32, 32) and texts.shape[1:] == (77,) for images, texts in batches)


def test_shards_load_in_open_clip_training_loader(selected, monkeypatch):
    data = pytest.importorskip("open_clip_train.data")
    import open_clip

    monkeypatch.setattr(data, "tarfile_to_samples_nothrow", tarfile_to_samples_with_upstream_fix)
    root, _, _ = selected
    info = data.get_wds_dataset(loader_args(root), open_clip.image_transform(32, is_train=True), is_train=True,
                                epoch=0, tokenizer=open_clip.get_tokenizer("ViT-B-32"))
    batches = list(info.dataloader)  # asserts first: as many shards as loader workers
    assert all(tuple(images.shape) == (2, 3, 32, 32) and tuple(texts.shape) == (2, 77) for images, texts in batches)
    assert len(batches) == info.dataloader.num_batches == 6  # 10 samples rolled over to 3 full batches per worker


def test_everything_flagged_gives_no_shards_and_says_so(tmp_path, select_config):
    root = tmp_path / "out"
    write_download_shard(root, 0, [download_row("0001", "a"), download_row("0002", "b", status="failed_to_download"),
                                   download_row("0003", "c")])
    write_sidecar(root, "score", 0, score_table([("0001", 0.4, None), ("0003", None, "decode_error")]), SCORE_SIDECAR)
    write_sidecar(root, "dedup", 0, pa.table({"key": ["0001", "0003"], "is_duplicate": [True, False]}))
    stats = run_select(select_config(root, top_fraction=1.0))
    assert stats["forwarded"] == 0 and stats["dropped_by_reason"] == {
        "download_failed": 1, "eval_duplicate": 1, "unscored_decode_error": 1}
    assert json.loads((root / "select" / "shards" / "sizes.json").read_text()) == {}
    assert not list((root / "select" / "shards").glob("*.tar"))
    selection = json.loads((root / "select" / "selection.json").read_text())
    assert selection["selected"] == selection["eligible"] == 0 and selection["inputs"]["dedup"] is True


def test_unscored_shards_are_refused_with_what_to_run(tmp_path, select_config):
    root = tmp_path / "out"
    write_download_shard(root, 0, [download_row("0001", "a")])
    with pytest.raises(ConfigError, match="webli score"):
        run_select(select_config(root))
