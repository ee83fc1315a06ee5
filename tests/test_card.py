"""Card stage on small hand-built output trees: each section's numbers, stages not run, malformed inputs.

The trees are written with the stages' own schemas (webli.schemas.*) and
StageDir, so a change of a stage's format breaks these tests. Every number
asserted below is one the tree was built with.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from webli import schemas
from webli.pipeline.card import run_card
from webli.pipeline.config import validate_config
from webli.pipeline.storage import StageDir
from webli.schemas.dedup import DEDUP
from webli.schemas.ocr import OCR
from webli.schemas.score import SCORE_SIDECAR
from webli.schemas.select import SELECT_INDEX
from webli.stages.card import RunOutputs, collect_card, render_html, render_markdown
from webli.stages.card.distributions import Distribution
from webli.stages.card.render import cell

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)

# The downloaded samples of the tree: (key, language, url, status/drop reason, original w x h).
DOWNLOADS = [
    # shard 0
    ("000000", "en", "http://a.example/img/a.jpg", None, (640, 480)),
    ("000001", "de", "http://a.example/img/b.png", None, (300, 300)),
    ("000002", "en", "http://a.example/img/c.jpg", "http_error", None),
    ("000003", "ja", "http://a.example/img/d", None, (200, 400)),
    # shard 1
    ("100000", "de", "http://b.example/e.jpeg", None, (1024, 512)),
    ("100001", "en", "http://b.example/f.jpg", None, (800, 600)),
    ("100002", "fr", "http://b.example/g.gif", "timeout", None),
    ("100003", "en", "http://b.example/h.webp", None, (64, 64)),
]
CAPTIONS = {key: f"alt text of {key}" for key, *_ in DOWNLOADS}
CAPTIONS["100001"] = "a | pipe, <script>alert(1)</script> and\na newline"
SUCCESSES = [d[0] for d in DOWNLOADS if d[3] is None]  # 6 samples
# OCR: key -> (status, words, packs)
OCR_ROWS = {"000000": ("read", 3, ["eng"]), "000001": ("read", 5, ["deu", "eng"]),
            "000003": ("skipped_no_text", 0, []), "100000": ("decode_error", 0, []),
            "100001": ("read", 0, ["eng"]), "100003": ("skipped_no_text", 0, [])}
# Dedup: key -> (image duplicate, text duplicate, matched set)
DEDUP_ROWS = {"100003": (True, False, "coco"), "000001": (False, True, "flickr30k")}
# Scores: key -> score (None: unscored, with the problem below)
SCORES = {"000000": 0.31, "000001": 0.12, "000003": None, "100000": 0.27, "100001": 0.05, "100003": 0.40}
THRESHOLD = float(np.float32(0.27))  # select's threshold: the score of the last kept sample, as float32
SELECTED = ["000000", "100000"]
# select's own reasons (webli.stages.select.join.drop_reason) of the downloaded samples it did not keep
SELECT_REASONS = {"000001": "eval_duplicate_text", "000003": "unscored_decode_error", "100001": "below_threshold",
                  "100003": "eval_duplicate_image"}
SELECT_DROPS = {"eval_duplicate_image": 1, "eval_duplicate_text": 1, "unscored_decode_error": 1, "below_threshold": 1}
TRAIN_METRICS = {
    "model": "webli-tiny", "pool": 10, "image_to_text_recall": {"1": 0.3, "5": 0.8}, "auc": 0.71,
    "splits": {"train": 1, "eval": 1, "unused": 0},
    "zero_shot": {"digits": {"classes": 10, "samples": 50, "dropped_by_reason": {}, "top1": 0.2, "top5": 0.6}},
    "before_training": {"pool": 10, "image_to_text_recall": {"1": 0.1, "5": 0.5}, "auc": 0.5},
    "epochs": 2, "steps": 8, "history": [{"epoch": 1, "loss": 2.31}], "settings": {"lr": 0.0005},
}


def uid(key: str) -> str:
    return f"{int(key):032x}"


def jpeg(width: int, height: int, shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 255 - shade, 90)).save(out, format="JPEG")
    return out.getvalue()


def write_tar(path: Path, samples: dict[str, dict[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, files in samples.items():
            for extension, data in files.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))


# --- the hand-built tree ------------------------------------------------------------------------------------

def write_crawl(root: str) -> None:
    """Two crawl shards (seeds, then a WARC): 10 -> 6 and 5 -> 3 pairs; one pair in both."""
    store = StageDir(root, "crawl")
    store.write_json("_plan.json", [{"seeds": ["http://a.example/", "http://a.example/more"]},
                                    {"warc": "/data/crawl-0001.warc.gz"}])
    for shard, (total, drops, pages, start) in enumerate([
        (10, {"alt_empty": 3, "alt_boilerplate": 1},
         {"total": 5, "parsed": 3, "refused_by_reason": {"http_404": 1, "robots_disallowed": 1}}, 0),
        (5, {"duplicate_pair": 2}, {"total": 2, "parsed": 2, "refused_by_reason": {}}, 60),
    ]):
        times = [T0 + dt.timedelta(seconds=start + i) for i in range(pages["total"])]
        page_rows = {"url": [f"http://a.example/p{shard}-{i}" for i in range(len(times))],
                     "status": ["parsed"] * len(times), "fetch_time": times}
        store.write_table(f"{shard:05d}_pages.parquet", filled(page_rows, schemas.CRAWL_PAGES), schemas.CRAWL_PAGES)
        pairs = total - sum(drops.values())
        store.write_table(f"{shard:05d}.parquet", filled({"uid": [f"u{shard}{i}" for i in range(pairs)],
                                                          "url": ["u"] * pairs, "alt": ["a"] * pairs,
                                                          "page_url": ["p"] * pairs, "language": ["en"] * pairs,
                                                          "language_score": [1.0] * pairs}, schemas.CRAWL_PAIRS),
                          schemas.CRAWL_PAIRS)
        store.write_stats(shard, {"stage": "crawl", "total": total, "forwarded": pairs, "dropped_by_reason": drops,
                                  "pages": pages})


def filled(columns: dict, schema: pa.Schema) -> pa.Table:
    """A table of `schema` with the given columns and nulls elsewhere."""
    rows = len(next(iter(columns.values())))
    return pa.table({f.name: pa.array(columns.get(f.name, [None] * rows), f.type) for f in schema})


def download_rows(shard: int) -> list[dict]:
    rows = []
    for key, language, url, reason, size in DOWNLOADS[shard * 4:(shard + 1) * 4]:
        ok = reason is None
        rows.append({"key": key, "uid": uid(key), "url": url, "caption": CAPTIONS[key], "page_url": "http://a.example/",
                     "language": language, "language_score": 0.9, "status": "success" if ok else "failed_to_download",
                     "error_message": None if ok else reason, "drop_reason": reason,
                     "width": 256 if ok else None, "height": 256 if ok else None,
                     "original_width": size[0] if ok else None, "original_height": size[1] if ok else None,
                     "sha256": "0" * 64 if ok else None, "large_width": size[0] if ok and key != "100003" else None,
                     "large_height": size[1] if ok and key != "100003" else None})
    return rows


def write_download(root: str) -> None:
    """Plan of 8 pairs (1 duplicate across crawl shards) in 2 shards; 6 successes."""
    store = StageDir(root, "download")
    store.write_json("_plan/plan.json", {"shards": 2, "rows": 8, "shard_size": 4, "duplicates_across_crawl_shards": 1,
                                         "crawl_shards": ["00000.parquet", "00001.parquet"]})
    for shard in (0, 1):
        rows = download_rows(shard)
        samples = {r["key"]: {"jpg": jpeg(16, 16, 20 * i), "txt": r["caption"].encode(),
                              "json": json.dumps(r).encode()} for i, r in enumerate(rows) if r["status"] == "success"}
        write_tar(Path(store.file(f"{shard:05d}.tar")), samples)
        store.write_table(f"{shard:05d}.parquet", pa.Table.from_pylist(rows, schemas.DOWNLOAD), schemas.DOWNLOAD)
        drops = {r["drop_reason"]: 1 for r in rows if r["drop_reason"]}
        store.write_stats(shard, {"stage": "download", "total": 4, "forwarded": 4 - len(drops),
                                  "dropped_by_reason": drops})


def shard_keys(shard: int) -> list[str]:
    return [key for key in SUCCESSES if key.startswith(str(shard))]


def write_ocr(root: str, shards=(0, 1)) -> None:
    store = StageDir(root, "ocr")
    for shard in shards:
        keys = shard_keys(shard)
        rows = [{"key": k, "uid": uid(k), "ocr_status": OCR_ROWS[k][0], "ocr_text": " ".join(["w"] * OCR_ROWS[k][1]),
                 "ocr_words": [], "ocr_word_count": OCR_ROWS[k][1], "ocr_mean_conf": 80.0 if OCR_ROWS[k][1] else None,
                 "ocr_languages": OCR_ROWS[k][2], "ocr_script": "Latin" if OCR_ROWS[k][1] else None,
                 "ocr_seconds": 0.1} for k in keys]
        store.write_table(f"{shard:05d}.parquet", filled({c: [r.get(c) for r in rows] for c in rows[0]}, OCR), OCR)
        problems = {"decode_error": sum(OCR_ROWS[k][0] == "decode_error" for k in keys)}
        store.write_stats(shard, {"stage": "ocr", "total": len(keys), "forwarded": len(keys), "dropped_by_reason": {},
                                  "problems_by_reason": {k: v for k, v in problems.items() if v}})


def write_dedup(root: str) -> None:
    store = StageDir(root, "dedup")
    for shard in (0, 1):
        keys = shard_keys(shard)
        verdicts = [DEDUP_ROWS.get(k, (False, False, None)) for k in keys]
        store.write_table(f"{shard:05d}.parquet", filled({
            "key": keys, "uid": [uid(k) for k in keys], "is_duplicate": [v[0] or v[1] for v in verdicts],
            "matched_set": [v[2] for v in verdicts], "matched_item": [v[2] and "item-7" for v in verdicts],
            "image_duplicate": [v[0] for v in verdicts], "image_eval_set": [v[2] if v[0] else None for v in verdicts],
            "text_duplicate": [v[1] for v in verdicts], "text_eval_set": [v[2] if v[1] else None for v in verdicts],
            "image_problem": ["decode_error" if k == "100000" else None for k in keys]}, DEDUP), DEDUP)
        store.write_stats(shard, {"stage": "dedup", "total": len(keys), "forwarded": len(keys),
                                  "dropped_by_reason": {}})


def write_score(root: str) -> None:
    store = StageDir(root, "score")
    for shard in (0, 1):
        keys = shard_keys(shard)
        store.write_table(f"{shard:05d}.parquet", filled({
            "key": keys, "uid": [uid(k) for k in keys], "score": [SCORES[k] for k in keys],
            "model_id": ["bootstrap@sha256:abc"] * len(keys),
            "problem": [None if SCORES[k] is not None else "decode_error" for k in keys]}, SCORE_SIDECAR),
            SCORE_SIDECAR)
        store.write_stats(shard, {"stage": "score", "total": len(keys), "forwarded": len(keys), "dropped_by_reason": {},
                                  "problems_by_reason": {"decode_error": sum(SCORES[k] is None for k in keys)}})


def write_select(root: str) -> None:
    """select's layout: per-download-shard stats, shards/ (tar + index + sizes.json), selection.json last."""
    store = StageDir(root, "select")
    rows = [r for shard in (0, 1) for r in download_rows(shard) if r["key"] in SELECTED]
    index = filled({**{name: [r[name] for r in rows] for name in SELECT_INDEX.names if name in rows[0]},
                    "shard": [0] * len(rows), "score": [SCORES[r["key"]] for r in rows],
                    "score_model_id": ["bootstrap@sha256:abc"] * len(rows)}, SELECT_INDEX)
    write_tar(Path(store.file("shards/00000.tar")), {
        r["key"]: {"jpg": jpeg(16, 16, 200), "txt": r["caption"].encode(), "json": json.dumps(r).encode()}
        for r in rows})
    store.write_table("shards/00000.parquet", index, SELECT_INDEX)
    for shard in (0, 1):
        keys = [d[0] for d in DOWNLOADS[shard * 4:(shard + 1) * 4]]
        drops = {"download_failed": 1, **{SELECT_REASONS[k]: 1 for k in keys if k in SELECT_REASONS}}
        store.write_stats(shard, {"stage": "select", "total": 4, "forwarded": 1, "dropped_by_reason": drops})
    store.write_json("shards/sizes.json", {"00000.tar": len(rows)})
    store.write_json("selection.json", {
        "top_fraction": 0.67, "per_language": False, "rule": "keep = floor(top_fraction x eligible)",
        "score_model_id": "bootstrap@sha256:abc", "inputs": {"download_shards": 2, "ocr": True, "dedup": True},
        "total": 8, "eligible": 3, "selected": 2, "dropped_by_reason": {"download_failed": 2, **SELECT_DROPS},
        "thresholds": {"*": {"eligible": 3, "keep": 2, "score": THRESHOLD, "score_code": 1, "key": "100000"}},
        "threshold_rounds": 2,
        "languages": {"de": {"eligible": 1, "selected": 1}, "en": {"eligible": 2, "selected": 1}},
        "shards": {"count": 1, "shard_size": 10000, "min_shards": 1, "sizes": "shards/sizes.json"}})


def write_train(root: str) -> None:
    store = StageDir(root, "train")
    store.write_json("metrics.json", TRAIN_METRICS)
    store.write_json("stats.json", {"stage": "train", "total": 2, "forwarded": 2, "dropped_by_reason": {},
                                    "train_samples": 1, "eval_samples": 1})


WRITERS = {"crawl": write_crawl, "download": write_download, "ocr": write_ocr, "dedup": write_dedup,
           "score": write_score, "select": write_select, "train": write_train}


def build_tree(root: Path, stages=tuple(WRITERS)) -> str:
    for stage in stages:
        WRITERS[stage](str(root))
    return str(root)


def card_config(root: str, **card) -> object:
    return validate_config({"output": root, "crawl": {"seeds": ["http://a.example/"]},
                            "dedup": {"eval_sets": [{"name": "coco"}, {"name": "flickr30k"}, {"name": "vqa"}]},
                            "card": {"samples_per_group": 4, **card}})


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory) -> str:
    return build_tree(tmp_path_factory.mktemp("card-tree"))


@pytest.fixture(scope="module")
def facts(full_tree) -> dict:
    return collect_card(RunOutputs(full_tree), card_config(full_tree))


@pytest.fixture(scope="module")
def markdown(facts) -> str:
    return render_markdown(facts)


# --- sections -------------------------------------------------------------------------------------------------

def test_funnel_steps_come_from_each_stage(facts):
    steps = {s["step"]: (s["in"], s["out"], s["dropped_by_reason"]) for s in facts["funnel"]["steps"]}
    assert list(steps) == ["crawl", "plan", "download", "ocr", "dedup", "score", "select", "train"]
    assert steps["crawl"] == (15, 9, {"alt_empty": 3, "duplicate_pair": 2, "alt_boilerplate": 1})
    assert steps["plan"] == (9, 8, {"duplicate_across_crawl_shards": 1})
    assert steps["download"] == (8, 6, {"http_error": 1, "timeout": 1})
    assert steps["ocr"] == steps["dedup"] == steps["score"] == (6, 6, {})
    assert steps["select"] == (6, 2, SELECT_DROPS)  # select's download_failed rows are the download step's drops
    assert steps["train"] == (2, 2, {})


def test_funnel_checks_all_pass_on_a_consistent_tree(facts, markdown):
    checks = facts["funnel"]["checks"]
    assert checks and all(c["ok"] for c in checks)
    described = {c["check"] for c in checks}
    assert {"plan: in = crawl out", "download: in = plan out", "ocr: in = download out", "select: in = download out",
            "select: samples in the final shards (sizes.json) = selected", "score: drops nothing (out = in)",
            "select: its download_failed rows = download dropped", "train: in = select out"} <= described
    assert "MISMATCH" not in markdown and markdown.count("✓") == len(checks)


def test_funnel_mismatch_is_shown_not_hidden(tmp_path):
    root = build_tree(tmp_path)
    store = StageDir(root, "ocr")
    store.write_json("00001_stats.json", {**store.read_json("00001_stats.json"), "total": 2, "forwarded": 2})
    facts = collect_card(RunOutputs(root), card_config(root))
    failed = [c for c in facts["funnel"]["checks"] if not c["ok"]]
    assert [(c["check"], c["expected"], c["found"]) for c in failed] == [("ocr: in = download out", 6, 5)]
    assert "✗ MISMATCH: ocr: in = download out: expected 6, found 5" in render_markdown(facts)


def test_trainers_are_linked_to_the_data_they_read(tmp_path):
    root = build_tree(tmp_path)
    store = StageDir(root, "bootstrap_filter")
    store.write_json("metrics.json", {"model": "webli-tiny", "auc": 0.6, "splits": {"train": 4, "eval": 1}})
    store.write_json("stats.json", {"stage": "bootstrap_filter", "total": 6, "forwarded": 5,
                                    "dropped_by_reason": {"outside_bootstrap_split": 1}})
    facts = collect_card(RunOutputs(root), card_config(root))
    checks = {c["check"]: c["ok"] for c in facts["funnel"]["checks"]}
    assert checks["bootstrap_filter: in = download out"] and checks["train: in = select out"]
    assert facts["training"]["bootstrap_filter"]["heldout"] == [{"metric": "auc", "after": 0.6, "before": None}]
    on_other_shards = collect_card(RunOutputs(root), validate_config({"output": root, "train": {"data": "/x/*.tar"}}))
    assert not any(c["check"].startswith("train: in =") for c in on_other_shards["funnel"]["checks"])


def test_collection_section(facts):
    collection = facts["collection"]
    assert collection["sources"] == {"seeds": ["http://a.example/", "http://a.example/more"],
                                     "warc": ["/data/crawl-0001.warc.gz"]}
    assert collection["first_fetch"] == T0.isoformat()
    assert collection["last_fetch"] == (T0 + dt.timedelta(seconds=61)).isoformat()
    assert collection["pages"] == {"total": 7, "parsed": 5, "refused": 2,
                                   "refused_by_reason": {"http_404": 1, "robots_disallowed": 1}}
    assert collection["policies"]["user_agent"].startswith("webli-builder/")


def test_languages_section_counts_and_keep_rate(facts):
    rows = {r["language"]: r for r in facts["languages"]["rows"]}
    assert [r["language"] for r in facts["languages"]["rows"]] == ["en", "de", "fr", "ja"]  # most pairs first
    assert {k: (r["pairs"], r["downloaded"], r["selected"]) for k, r in rows.items()} == {
        "en": (4, 3, 1), "de": (2, 2, 1), "fr": (1, 0, 0), "ja": (1, 1, 0)}
    assert rows["en"]["keep_rate"] == pytest.approx(1 / 4) and rows["de"]["keep_rate"] == pytest.approx(1 / 2)
    assert facts["languages"]["keep_rate_of"] == "selected"


def test_images_section(facts):
    images = facts["images"]
    assert images["images"] == 6 and images["large_copies"] == 5
    widths = images["original_width"].summary()
    assert (widths["min"], widths["median"], widths["max"]) == (64, 300, 1024)  # lower median of 6
    assert images["aspect_ratio"].quantile(0.0) == 0.5 and images["aspect_ratio"].quantile(1.0) == 2.0
    assert images["formats"] == {"jpeg": 3, "png": 1, "(no known extension)": 1, "webp": 1}
    assert images["format_source"] == "url_extension" and images["stored_sizes"] == {"256x256": 6}


def test_ocr_section(facts):
    ocr = facts["ocr"]
    assert (ocr["images"], ocr["with_text"]) == (6, 2) and ocr["share_with_text"] == pytest.approx(2 / 6)
    assert ocr["words_per_image"].summary()["max"] == 5 and ocr["words_per_image"].count == 2
    assert ocr["languages"] == {"eng": 2, "deu": 1}
    assert ocr["status"] == {"read": 3, "skipped_no_text": 2, "decode_error": 1}
    assert ocr["problems_by_reason"] == {"decode_error": 1}


def test_dedup_section_per_eval_set(facts, markdown):
    dedup = facts["dedup"]
    assert dedup["samples"] == 6
    assert (dedup["flagged_image"], dedup["flagged_text"], dedup["flagged_either"]) == (1, 1, 2)
    assert dedup["eval_sets"] == [{"eval_set": "coco", "image": 1, "text": 0, "either": 1},
                                  {"eval_set": "flickr30k", "image": 0, "text": 1, "either": 1},
                                  {"eval_set": "vqa", "image": 0, "text": 0, "either": 0}]
    assert dedup["image_problems"] == {"decode_error": 1}
    assert "| vqa | 0 | 0 | 0 |" in markdown


def test_scores_section(facts, markdown):
    scores = facts["scores"]
    assert (scores["samples"], scores["scored"]) == (6, 5)
    assert scores["threshold"] == THRESHOLD and scores["at_or_above_threshold"] == 3  # 0.31, 0.27, 0.40
    assert scores["models"] == {"bootstrap@sha256:abc": 6} and scores["problems"] == {"decode_error": 1}
    medians = {r["language"]: (r["count"], r["median"]) for r in scores["per_language"]}
    assert medians == {"en": (3, 0.31), "de": (2, 0.12)}  # en: 0.05, 0.31, 0.40; de: lower median of 0.12, 0.27
    assert "| en | 3 | 0.310 |" in markdown and "Selection threshold: 0.2700" in markdown


def test_per_language_thresholds(tmp_path):
    root = build_tree(tmp_path)
    store = StageDir(root, "select")
    en, de = float(np.float32(0.30)), float(np.float32(0.12))
    store.write_json("selection.json", {**store.read_json("selection.json"), "per_language": True, "thresholds": {
        "en": {"score": en}, "de": {"score": de}, "ja": {"score": None}}})
    facts = collect_card(RunOutputs(root), card_config(root))
    rows = {r["language"]: (r["threshold"], r["at_or_above"]) for r in facts["scores"]["per_language"]}
    assert rows == {"en": (en, 2), "de": (de, 2)}  # en: 0.31, 0.40 of 0.05, 0.31, 0.40; de: 0.12, 0.27
    assert facts["scores"]["threshold"] is None and facts["scores"]["at_or_above_threshold"] == 4
    markdown = render_markdown(facts)
    assert "| en | 3 | 0.310 | 0.3000 | 2 |" in markdown and "| ja | – |" in markdown


def test_selection_section(facts):
    selection = facts["selection"]
    assert (selection["selected"], selection["total"], selection["eligible"], selection["shards"],
            selection["samples_in_shards"]) == (2, 8, 3, 1, 2)
    assert selection["dropped_by_reason"] == {"download_failed": 2, **SELECT_DROPS}
    assert selection["threshold"] == THRESHOLD and selection["languages"]["en"] == {"eligible": 2, "selected": 1}


def test_samples_kept_rejected_and_failed(facts):
    groups = facts["samples"]
    assert sorted(s.key for s in groups["kept"]) == SELECTED
    assert all(s.image and Image.open(io.BytesIO(s.image)).size == (16, 16) for s in groups["kept"])
    assert len(groups["rejected"]) == 4 and all(s.image for s in groups["rejected"])
    assert {s.key: s.reason for s in groups["rejected"]} == SELECT_REASONS
    assert {s.key: s.reason for s in groups["failed"]} == {"000002": "http_error", "100002": "timeout"}
    assert all(s.image is None for s in groups["failed"])


def test_training_section(facts, markdown):
    run = facts["training"]["reference"]
    assert run["model"] == "webli-tiny" and ("epochs", 2) in run["facts"] and ("splits.train", 1) in run["facts"]
    assert {"metric": "image_to_text_recall.1", "after": 0.3, "before": 0.1} in run["heldout"]
    assert ("digits.top1", 0.2) in run["zero_shot"]
    assert not any(row["metric"].startswith(("history", "settings")) for row in run["heldout"])
    assert "| image\\_to\\_text\\_recall.1 | 0.1 | 0.3 |" in markdown
    assert "bootstrap_filter" not in facts["training"]


def test_shard_schema_describes_the_final_shards(facts, markdown):
    shards = facts["shards"]
    assert shards["stage"] == "select" and shards["tars"] == ["../select/shards/00000.tar"]
    assert [f["name"] for f in shards["fields"]] == SELECT_INDEX.names
    assert [m["extension"] for m in shards["members"]] == ["jpg", "json", "txt"]
    assert all(f["description"] for f in shards["fields"])  # every column of the index is explained
    for name in SELECT_INDEX.names:
        assert f"| `{name}` |" in markdown


def test_snippets_point_at_the_described_shards(facts):
    snippets = facts["snippets"]
    assert 'shards = "../select/shards/00000.tar"' in snippets["webdataset"]
    assert '"../select/shards/*.tar"' in snippets["datasets"]
    assert "--train-num-samples 2" in snippets["open_clip_train"]


# --- front matter, summary, rendering -----------------------------------------------------------------------

def test_front_matter_is_a_valid_hugging_face_card(markdown):
    data = DatasetCard(markdown).data
    assert data.license == "other" and data.pretty_name == "WebLI-style image-text dataset"
    assert data.language == ["en", "de"]  # languages with selected samples, most first
    assert data.size_categories == ["n<1K"]
    assert "image-to-text" in data.task_categories


def test_summary_counts_the_final_samples(facts, markdown):
    assert facts["summary"]["samples"] == 2 and facts["summary"]["kind"] == "selected"
    assert "**What**: 2 image–alt-text pairs (final, selected)" in markdown


def test_alt_texts_cannot_break_tables_or_inject_html(facts, markdown):
    html = render_html(markdown, {}, "t")
    assert "<script>" not in html and "&lt;script&gt;" in html
    line = next(line for line in markdown.splitlines() if "pipe" in line)
    assert "a \\| pipe, \\<script\\>alert\\(1\\)\\</script\\> and a newline" in line
    assert cell("x\n|y") == "x \\|y" and cell(None) == "–"


def test_sections_of_stages_not_run_say_so(tmp_path):
    root = build_tree(tmp_path, ("crawl", "download"))
    facts = collect_card(RunOutputs(root), card_config(root))
    assert all(facts[name] is None for name in ("ocr", "dedup", "scores", "selection", "training"))
    markdown = render_markdown(facts)
    for stage in ("ocr", "dedup", "score", "select", "train"):
        assert f"_The {stage} stage has not run yet: `webli {stage} --config run.yaml`" in markdown
    assert [s["step"] for s in facts["funnel"]["steps"]] == ["crawl", "plan", "download"]
    assert all(c["ok"] for c in facts["funnel"]["checks"])
    assert facts["summary"]["samples"] == 6 and facts["summary"]["kind"] == "downloaded"
    assert facts["shards"]["stage"] == "download" and facts["snippets"]["webdataset"].count("../download/") == 1
    kept = {s.key for s in facts["samples"]["kept"]}  # 4 downloaded: shard 0's 3, then 1 of shard 1
    assert len(kept) == 4 and set(shard_keys(0)) < kept < set(SUCCESSES) and not facts["samples"]["rejected"]
    assert "Eval-set deduplication has not run" in " ".join(facts["limitations"])


def test_card_of_an_empty_output_root(tmp_path):
    facts = collect_card(RunOutputs(str(tmp_path)), card_config(str(tmp_path)))
    assert facts["funnel"] is None and facts["samples"] is None and facts["summary"]["samples"] == 0
    markdown = render_markdown(facts)
    assert "Nothing has been downloaded yet" in markdown and "_The crawl stage has not run yet" in markdown
    DatasetCard(markdown)  # still a valid card


def test_partial_stage_is_marked_and_not_linked(tmp_path):
    root = build_tree(tmp_path, ("crawl", "download"))
    write_ocr(root, shards=(0,))
    facts = collect_card(RunOutputs(root), card_config(root))
    assert facts["stages"]["ocr"] == {"status": "partial", "shards_done": 1, "shards_expected": 2}
    assert not any(c["check"].startswith("ocr: in =") for c in facts["funnel"]["checks"])
    assert "_Partial: 1 of 2 shards done._" in render_markdown(facts)


def test_a_malformed_sidecar_is_reported_and_the_rest_written(tmp_path):
    root = build_tree(tmp_path)
    StageDir(root, "score").write_table("00001.parquet", pa.table({"key": ["x"]}), pa.schema([("key", pa.string())]))
    facts = collect_card(RunOutputs(root), card_config(root))
    assert facts["scores"] is None
    assert facts["unavailable"] == {"scores": "MissingColumns: score/00001.parquet lacks column(s) "
                                              "['uid', 'score', 'model_id', 'problem']"} or \
        "score/00001.parquet lacks column(s)" in facts["unavailable"]["scores"]
    markdown = render_markdown(facts)
    assert "This section could not be read from the output tree" in markdown and facts["ocr"] is not None


def test_corrupt_files_are_reported_not_fatal(tmp_path):
    root = build_tree(tmp_path)
    (Path(root) / "ocr" / "00001_stats.json").write_text("{not json")
    (Path(root) / "download" / "_plan" / "plan.json").write_text("")
    facts = collect_card(RunOutputs(root), card_config(root))
    assert set(facts["unavailable"]) == {"download progress", "funnel", "ocr"}
    assert facts["stages"]["download"]["status"] == "unreadable" and facts["dedup"]["samples"] == 6
    markdown = render_markdown(facts)
    assert "- **funnel**: JSONDecodeError" in markdown and "_This section could not be read" in markdown


# --- the stage ----------------------------------------------------------------------------------------------

def card_files(root: str) -> dict[str, bytes]:
    folder = Path(root) / "card"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def written_card(tmp_path_factory) -> tuple[str, dict, dict[str, bytes]]:
    """(root, stats, card files) of `run_card` on the full tree."""
    root = build_tree(tmp_path_factory.mktemp("card-written"))
    stats = run_card(card_config(root))
    return root, stats, card_files(root)


def test_run_card_writes_every_file(written_card):
    _, stats, files = written_card
    assert {"README.md", "card.html", "card.json", "charts/funnel.png", "charts/languages.png", "charts/images.png",
            "charts/ocr_words.png", "charts/scores.png"} <= set(files)
    assert {f"samples/{k}.jpg" for k in SUCCESSES} <= set(files)
    assert stats["total"] == 2 and stats["checks_failed"] == [] and stats["sections_missing"] == []


def test_a_rerun_gives_the_same_bytes_and_drops_stale_files(written_card):
    root, _, first = written_card
    StageDir(root, "card").write_bytes("samples/999999.jpg", b"from an earlier card")
    run_card(card_config(root))
    assert card_files(root) == first


def test_charts_and_images_are_linked_relatively_and_inlined_in_html(written_card):
    _, _, files = written_card
    markdown, html = files["README.md"].decode(), files["card.html"].decode()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert linked and all(link in files for link in linked)  # every image the Markdown links exists
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == len(linked) and all(s.startswith("data:image/") for s in sources)


def test_card_json_holds_the_numbers(written_card):
    _, _, files = written_card
    numbers = json.loads(files["card.json"])
    assert numbers["funnel"]["steps"][0]["in"] == 15
    assert numbers["images"]["original_width"]["max"] == 1024
    assert numbers["samples"]["kept"][0]["has_image"] is True


def test_distribution_quantiles_match_numpy():
    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    distribution = Distribution()
    distribution.add(values[:5])
    more = Distribution()
    more.add(values[5:])
    distribution.merge(more)
    assert distribution.count == len(values)
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert distribution.quantile(q) == pytest.approx(float(__import__("numpy").quantile(values, q,
                                                                                             method="inverted_cdf")))
    assert Distribution().summary() is None
