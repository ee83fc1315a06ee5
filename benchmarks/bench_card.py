"""Card-stage throughput and memory against the obvious baseline: load every table into pandas, then describe.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_card.py                      # 10 and 40 shards of 10,000 rows
    .venv/bin/python benchmarks/bench_card.py --shards 5 20 --rows 10000 --reps 3

A synthetic output tree is written per size under /tmp/webli-bench-card/
(crawl, download, ocr, dedup, score and select outputs in the stages' own
schemas, random but fixed by a seed; only the tars the card opens hold
images). Then, interleaved, `--reps` times each, in a fresh process:

  - ours: `collect_card` (every section's numbers: funnel, languages, images,
    OCR, dedup, scores, selection, sample grid, shard schema), reading each
    stage's tables shard by shard, only the columns it needs;
  - baseline: pandas reads every download, score, OCR and dedup table whole
    (`pd.read_parquet` + `concat`), merges them on `key` and computes the
    same numbers (value counts, quantiles, per-language medians);
  - ours, whole stage: `run_card` (the above plus charts, Markdown, HTML).

Reported: samples (download rows) per CPU-second of the measured part (imports
excluded; each process is single-threaded, so per core), and the peak RSS of
the process (the kernel's high-water mark, VmHWM) beside its RSS after
imports. The two computations' numbers are compared before timing counts.
The Markdown report goes to stdout and to benchmarks/results/card.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (sets the quiet environment first)
from common import TreePeakRSS, fmt_range, log, md_table, mib  # noqa: E402

TREES = Path("/tmp/webli-bench-card")
LANGUAGES = ["en", "ja", "de", "ru", "fr", "es", "zh", "ar", "pt", "it", "ko", "nl", "pl", "tr", "el", "hi", "und"]
LANGUAGE_WEIGHTS = [1 / (rank + 1) ** 1.2 for rank in range(len(LANGUAGES))]  # heavy-tailed, like the web
EXTENSIONS = ["jpg", "png", "jpeg", "gif", "webp", ""]
EVAL_SETS = ["coco", "flickr30k", "imagenet"]


# --- the synthetic tree ----------------------------------------------------------------------------------------

def jpeg(shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (shade % 256, 80, 160)).save(out, format="JPEG")
    return out.getvalue()


def write_tar(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i, row in enumerate(rows):
            for extension, data in (("jpg", jpeg(i)), ("txt", row["caption"].encode()),
                                    ("json", json.dumps(row, default=str).encode())):
                info = tarfile.TarInfo(f"{row['key']}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def download_table(shard: int, rows: int, rng):
    import numpy as np
    import pyarrow as pa

    from webli import schemas

    ok = rng.random(rows) < 0.9
    width, height = rng.integers(32, 4000, rows), rng.integers(32, 3000, rows)
    extension = rng.choice(EXTENSIONS, rows)
    failed = ~ok
    columns = {
        "key": [f"{shard:05d}{row:05d}" for row in range(rows)],
        "uid": [f"{shard:08x}{row:024x}" for row in range(rows)],
        "url": [f"http://h{row % 97}.example/i/{row}.{e}" if e else f"http://h.example/i/{row}"
                for row, e in enumerate(extension)],
        "caption": [f"alt text {row} of shard {shard}" for row in range(rows)],
        "page_url": ["http://h.example/"] * rows,
        "language": rng.choice(LANGUAGES, rows, p=np.array(LANGUAGE_WEIGHTS) / sum(LANGUAGE_WEIGHTS)),
        "language_score": rng.random(rows).astype(np.float32),
        "status": np.where(ok, "success", "failed_to_download"), "error_message": pa.nulls(rows, pa.string()),
        "drop_reason": [None if o else "http_error" for o in ok], "sha256": ["0" * 64] * rows,
    }
    for name, values in (("width", np.full(rows, 256)), ("height", np.full(rows, 256)), ("original_width", width),
                         ("original_height", height), ("large_width", width), ("large_height", height)):
        columns[name] = pa.array(values, pa.int32(), mask=failed)
    return schemas.conform(pa.table(columns), schemas.DOWNLOAD)


def sidecars(download, rng) -> dict:
    """The ocr, dedup and score sidecars of one download shard (its successful rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from webli import schemas
    from webli.schemas.ocr import OCR
    from webli.schemas.score import SCORE_SIDECAR
    from webli.schemas.select import DEDUP_COLUMNS

    done = download.filter(pc.equal(download.column("status"), "success"))
    n, keys, uids = done.num_rows, done.column("key"), done.column("uid")
    words = np.where(rng.random(n) < 0.3, rng.integers(1, 60, n), 0)
    ocr = {"key": keys, "uid": uids, "ocr_status": pa.array(np.where(words > 0, "read", "skipped_no_text")),
           "ocr_text": pa.array(["w " * int(w) for w in words]),
           "ocr_words": pa.array([[]] * n, OCR.field("ocr_words").type),
           "ocr_word_count": pa.array(words, pa.int32()),
           "ocr_mean_conf": pa.array(np.where(words > 0, rng.uniform(30, 95, n), np.nan), from_pandas=True),
           "ocr_languages": pa.array([["eng"] if w else [] for w in words]),
           "ocr_script": pa.array([("Latin" if w else None) for w in words]),
           "ocr_seconds": pa.array(rng.random(n), pa.float32())}
    ocr = schemas.conform(pa.table({f.name: ocr.get(f.name, pa.nulls(n, f.type)) for f in OCR}), OCR)
    flagged = rng.random(n) < 0.01
    image, text = flagged & (rng.random(n) < 0.5), flagged & (rng.random(n) >= 0.5)
    dedup_schema = pa.schema([pa.field("key", pa.string(), nullable=False),
                              pa.field("uid", pa.string(), nullable=False)]
                             + [pa.field(name, kind) for name, kind in DEDUP_COLUMNS.items()])
    sets = rng.choice(EVAL_SETS, n)
    dedup = pa.table({"key": keys, "uid": uids, "is_duplicate": pa.array(flagged),
                      "image_duplicate": pa.array(image), "text_duplicate": pa.array(text),
                      "matched_set": pa.array([s if f else None for s, f in zip(sets, flagged)]),
                      "matched_item": pa.array([f"item{i}" if f else None for i, f in enumerate(flagged)])})
    scores = np.clip(rng.normal(0.25, 0.08, n), -1, 1).astype(np.float32)
    score = pa.table({"key": keys, "uid": uids, "score": pa.array(scores), "model_id": pa.array(["bench@sha256:0"] * n),
                      "problem": pa.nulls(n, pa.string())})
    return {"ocr": (ocr, OCR), "dedup": (schemas.conform(dedup, dedup_schema), dedup_schema),
            "score": (schemas.conform(score, SCORE_SIDECAR), SCORE_SIDECAR)}


def build_tree(root: Path, shards: int, rows: int, seed: int = 0) -> Path:
    """A complete synthetic output tree (written once; reused while its marker file exists)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from webli import schemas
    from webli.pipeline.storage import StageDir
    from webli.schemas.select import SELECT_INDEX

    marker = root / "complete.json"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    out = str(root)
    crawl = StageDir(out, "crawl")
    crawl.write_json("_plan.json", [{"warc": "/data/bench.warc.gz"}])
    pages = pa.table({"url": ["http://h.example/p"] * 1000, "status": ["parsed"] * 1000,
                      "fetch_time": pa.array([1_700_000_000 + i for i in range(1000)], pa.timestamp("s", tz="UTC"))})
    crawl.write_table("00000_pages.parquet", schemas.conform(
        pa.table({f.name: pages.column(f.name) if f.name in pages.column_names else pa.nulls(1000, f.type)
                  for f in schemas.CRAWL_PAGES}), schemas.CRAWL_PAGES), schemas.CRAWL_PAGES)
    total = shards * rows
    crawl.write_stats(0, {"stage": "crawl", "total": total * 2, "forwarded": total,
                          "dropped_by_reason": {"alt_empty": total}, "pages": {"total": 1000, "parsed": 1000}})
    download = StageDir(out, "download")
    download.write_json("_plan/plan.json", {"shards": shards, "rows": total, "shard_size": rows,
                                            "duplicates_across_crawl_shards": 0, "crawl_shards": ["00000.parquet"]})
    selected_rows, selection_stats = [], {"total": 0, "selected": 0, "eligible": 0, "dropped": {}, "languages": {}}
    for shard in range(shards):
        table = download_table(shard, rows, rng)
        download.write_table(f"{shard:05d}.parquet", table, schemas.DOWNLOAD)
        ok = pc.equal(table.column("status"), "success")
        successes = pc.sum(ok).as_py()
        if shard == 0:
            write_tar(Path(download.file("00000.tar")), table.filter(ok).to_pylist())
        else:
            download.write_bytes(f"{shard:05d}.tar", b"")  # never opened by the card
        download.write_stats(shard, {"stage": "download", "total": rows, "forwarded": successes,
                                     "dropped_by_reason": {"http_error": rows - successes}})
        for stage, (sidecar, schema) in sidecars(table, rng).items():
            StageDir(out, stage).write_table(f"{shard:05d}.parquet", sidecar, schema)
            problems = {}
            StageDir(out, stage).write_stats(shard, {"stage": stage, "total": successes, "forwarded": successes,
                                                    "dropped_by_reason": {}, "problems_by_reason": problems})
        select_shard(out, shard, table, selected_rows, selection_stats)
    write_select(out, selected_rows, selection_stats, SELECT_INDEX)
    marker.write_text(json.dumps({"shards": shards, "rows": rows}))
    return root


THRESHOLD = 0.35


def select_shard(out: str, shard: int, table, selected_rows: list, totals: dict) -> None:
    """select's per-shard stats: eligible = success and not flagged; kept = score >= THRESHOLD."""
    import pyarrow.compute as pc

    from webli.pipeline.storage import StageDir

    score = StageDir(out, "score").read_table(f"{shard:05d}.parquet", ["key", "score"])
    dedup = StageDir(out, "dedup").read_table(f"{shard:05d}.parquet", ["key", "is_duplicate"])
    joined = table.join(score, "key").join(dedup, "key")
    eligible = joined.filter(pc.invert(joined.column("is_duplicate")))
    kept = eligible.filter(pc.greater_equal(eligible.column("score"), THRESHOLD))
    failed = table.num_rows - joined.num_rows
    drops = {"download_failed": failed, "eval_duplicate": joined.num_rows - eligible.num_rows,
             "below_threshold": eligible.num_rows - kept.num_rows}
    StageDir(out, "select").write_stats(shard, {"stage": "select", "total": table.num_rows,
                                                "forwarded": kept.num_rows, "dropped_by_reason": drops})
    totals["total"] += table.num_rows
    totals["selected"] += kept.num_rows
    totals["eligible"] += eligible.num_rows
    for reason, count in drops.items():
        totals["dropped"][reason] = totals["dropped"].get(reason, 0) + count
    for language, count in zip(*pc.value_counts(kept.column("language")).flatten()):
        entry = totals["languages"].setdefault(language.as_py(), {"eligible": 0, "selected": 0})
        entry["selected"] += count.as_py()
    for language, count in zip(*pc.value_counts(eligible.column("language")).flatten()):
        entry = totals["languages"].setdefault(language.as_py(), {"eligible": 0, "selected": 0})
        entry["eligible"] += count.as_py()
    selected_rows.append(kept)


def write_select(out: str, parts: list, totals: dict, index_schema) -> None:
    import pyarrow as pa

    from webli import schemas
    from webli.pipeline.storage import StageDir

    store = StageDir(out, "select")
    kept = pa.concat_tables(parts)
    n = kept.num_rows
    given = {"shard": pa.array([0] * n, pa.int32()), "score_model_id": pa.array(["bench@sha256:0"] * n)}
    columns = {f.name: given.get(f.name, kept.column(f.name) if f.name in kept.column_names else pa.nulls(n, f.type))
               for f in index_schema}
    index = schemas.conform(pa.table(columns), index_schema)
    size = 10_000
    sizes = {}
    for number, start in enumerate(range(0, index.num_rows, size)):
        part = index.slice(start, size)
        store.write_table(f"shards/{number:05d}.parquet", part, index_schema)
        if number == 0:
            write_tar(Path(store.file("shards/00000.tar")), part.slice(0, 50).to_pylist())
        else:
            store.write_bytes(f"shards/{number:05d}.tar", b"")
        sizes[f"{number:05d}.tar"] = part.num_rows
    store.write_json("shards/sizes.json", sizes)
    store.write_json("selection.json", {
        "total": totals["total"], "eligible": totals["eligible"], "selected": totals["selected"],
        "dropped_by_reason": totals["dropped"], "top_fraction": None, "per_language": False,
        "inputs": {"download_shards": len(parts), "ocr": True, "dedup": True},
        "thresholds": {"*": {"score": THRESHOLD}}, "languages": totals["languages"]})


# --- the measured computations ---------------------------------------------------------------------------------

def card_numbers(root: str) -> dict:
    """Ours: every section of the card, as `webli card` collects them."""
    from webli.pipeline.config import validate_config
    from webli.stages.card import RunOutputs, collect_card

    config = validate_config({"output": root, "dedup": {"eval_sets": [{"name": n} for n in EVAL_SETS]}})
    facts = collect_card(RunOutputs(root), config)
    scores = facts["scores"]
    return {"samples": facts["funnel"]["steps"][2]["in"],
            "downloaded_by_language": {r["language"]: r["downloaded"] for r in facts["languages"]["rows"]},
            "width_median": facts["images"]["original_width"].quantile(0.5),
            "with_text": facts["ocr"]["with_text"], "flagged": facts["dedup"]["flagged_either"],
            "score_median_by_language": {r["language"]: r["median"] for r in scores["per_language"]},
            "at_or_above": scores["at_or_above_threshold"],
            "checks_ok": all(c["ok"] for c in facts["funnel"]["checks"])}


def run_card_stage(root: str) -> dict:
    """Ours, whole stage: collect, draw, render, write."""
    from webli.pipeline.card import run_card
    from webli.pipeline.config import validate_config

    shutil.rmtree(Path(root) / "card", ignore_errors=True)
    stats = run_card(validate_config({"output": root}))
    plan = json.loads((Path(root) / "download" / "_plan" / "plan.json").read_text())
    return {"samples": plan["rows"], "checks_ok": not stats["checks_failed"]}


def pandas_numbers(root: str) -> dict:
    """Baseline: every table read whole into pandas, merged on key, then described."""
    import numpy as np
    import pandas as pd

    def frame(stage: str) -> pd.DataFrame:
        files = sorted((Path(root) / stage).glob("[0-9][0-9][0-9][0-9][0-9].parquet"))
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    download, score, ocr, dedup = frame("download"), frame("score"), frame("ocr"), frame("dedup")
    done = download[download["status"] == "success"]
    merged = done.merge(score.drop(columns="uid"), on="key").merge(ocr.drop(columns="uid"), on="key") \
        .merge(dedup.drop(columns="uid"), on="key")
    threshold = json.loads((Path(root) / "select" / "selection.json").read_text())["thresholds"]["*"]["score"]

    def lower_median(values) -> float:
        return float(np.quantile(np.round(values.to_numpy(dtype=np.float64), 3), 0.5, method="inverted_cdf"))

    _ = (done["original_width"] / done["original_height"]).describe(), done["url"].str.rsplit(".", n=1).str[-1] \
        .value_counts(), ocr["ocr_languages"].explode().value_counts(), \
        dedup[dedup["is_duplicate"]].groupby("matched_set").size(), download["language"].value_counts()
    return {"samples": len(download),
            "downloaded_by_language": done["language"].value_counts().to_dict(),
            "width_median": int(np.quantile(done["original_width"], 0.5, method="inverted_cdf")),
            "with_text": int((ocr["ocr_word_count"] > 0).sum()), "flagged": int(dedup["is_duplicate"].sum()),
            "score_median_by_language": merged.groupby("language")["score"].agg(lower_median).to_dict(),
            "at_or_above": int((merged["score"] >= threshold).sum()), "checks_ok": True}


MODES = {"ours": card_numbers, "baseline": pandas_numbers, "stage": run_card_stage}


def worker(mode: str, root: str) -> None:
    """Run one measured computation in this fresh process; print a JSON record."""
    import pandas  # noqa: F401  both sides start with the same libraries imported
    import pyarrow.parquet  # noqa: F401

    import webli.pipeline.card  # noqa: F401

    idle_kib = common._status_kib(os.getpid(), "VmRSS:")
    usage, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    numbers = MODES[mode](root)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": cpu, "idle_kib": idle_kib, "numbers": numbers},
                     default=str))


def measure(mode: str, root: Path) -> dict:
    process = subprocess.Popen([sys.executable, __file__, "--worker", mode, str(root)], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                               "ARROW_NUM_THREADS": "1"})
    with TreePeakRSS(process.pid) as peaks:
        stdout, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"{mode} on {root} failed")
    return {**json.loads(stdout.strip().splitlines()[-1]), "peak_kib": peaks.root()}


# --- the report ------------------------------------------------------------------------------------------------

def compare(ours: dict, baseline: dict) -> list[str]:
    """Which numbers differ between the two computations (there should be none)."""
    return [name for name in ours if name != "checks_ok" and json.dumps(ours[name], sort_keys=True)
            != json.dumps(baseline[name], sort_keys=True)]


def report(results: dict, reps: int, rows: int) -> str:
    lines = ["# Card benchmark", "", common.machine_note(("pyarrow", "pandas", "matplotlib", "jinja2",
                                                         "markdown-it-py")), "",
             f"Command: `{common.command_line()}`", "",
             f"Synthetic output trees: download shards of {rows:,} rows (90% downloaded), with OCR, dedup and score "
             "sidecars and a selection; see the module docstring. Each figure: a fresh single-threaded process, "
             f"{reps} repetition(s) interleaved; samples = download rows described; CPU time of the measured part "
             "(imports excluded).", ""]
    table = []
    for (shards, mode), runs in results.items():
        samples = runs[0]["numbers"]["samples"]
        table.append([f"{shards} x {rows:,}", {"ours": "ours: collect_card", "baseline":
                                                 "baseline: pandas, whole tables", "stage":
                                                 "ours: run_card (whole stage)"}[mode],
                      f"{samples:,}", fmt_range([r["wall"] for r in runs], 2), fmt_range([r["cpu"] for r in runs], 2),
                      fmt_range([samples / r["cpu"] for r in runs], 0),
                      fmt_range([mib(r["peak_kib"]) for r in runs], 0),
                      fmt_range([mib(r["idle_kib"]) for r in runs], 0)])
    lines += [md_table(["tree (shards x rows)", "computation", "samples", "wall s", "CPU s", "samples/s per core",
                        "peak RSS MiB", "RSS after imports MiB"], table), ""]
    ratios = []
    for shards in sorted({s for s, _ in results}):
        ours, base = results[(shards, "ours")], results[(shards, "baseline")]
        speed = [b["cpu"] / o["cpu"] for o, b in zip(ours, base)]
        memory = [(o["peak_kib"] - o["idle_kib"]) / max(b["peak_kib"] - b["idle_kib"], 1) for o, b in zip(ours, base)]
        ratios.append([f"{shards} x {rows:,}", fmt_range(speed, 2), fmt_range(memory, 2),
                       ", ".join(compare(ours[0]["numbers"], base[0]["numbers"])) or "none"])
    lines += [md_table(["tree", "speed ours / baseline (CPU)", "memory above imports, ours / baseline",
                        "numbers that differ"], ratios), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "ROOT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(*arguments.worker)
        return
    results: dict = {}
    for shards in arguments.shards:
        root = build_tree(TREES / f"{shards}x{arguments.rows}", shards, arguments.rows)
        log(f"tree {root} ready")
        for rep in range(arguments.reps):
            for mode in ("ours", "baseline", "stage"):
                log(f"{shards} shards, {mode}, repetition {rep + 1}")
                results.setdefault((shards, mode), []).append(measure(mode, root))
    text = report(results, arguments.reps, arguments.rows)
    print(text)
    (common.RESULTS_DIR / "card.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
