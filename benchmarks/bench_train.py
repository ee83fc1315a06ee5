"""Trainer throughput and memory against open_clip_train, and the bootstrap filter's quality, on realweb shards.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_train.py                     # all parts
    .venv/bin/python benchmarks/bench_train.py --reps 3 --threads 1 2
    .venv/bin/python benchmarks/bench_train.py --data-root /tmp/x/out --no-quality

Data: the download shards of a crawl + download of the realweb WARC (about
2,000 real image / alt-text pairs in 20+ languages). Made under --data-root
with `webli crawl` and `webli download` when missing (needs the realweb
server and WARC; prints how to make them otherwise).

Part 1, throughput, one epoch over every downloaded pair, `webli-tiny`,
batch 64, one loader worker process, torch threads 1 and 2; interleaved
repetitions, each in a fresh process:
  - ours: `run_train` (train.data = the download shards, no held-out split);
  - open_clip_train: `open_clip_train.main.main` on the same shards, same
    model config, batch size, workers and threads (its own webdataset
    pipeline, optimizer, scheduler and checkpointing), with one shim: its
    sample grouper predates webdataset's end-of-shard marker and crashes on
    it (webdataset#384, open_clip#935), so the marker is turned off.
Reported: wall samples/s, samples per CPU-second of the whole process tree
(steadier on a shared machine: it is throughput per core), peak RSS of the
training process and of its loader worker. Also the model step alone on
random tensors (no data), the ceiling of both.

Part 2, quality: `run_bootstrap_filter` with its defaults (webli-tiny, 10
epochs, 10% held out by uid hash) on the same shards: held-out AUC of true
against shuffled pairs and recall@k, before and after training.

Part 3, cross-fitting (`--crossfit LABEL=AFTER[,BEFORE]`, alone): on runs
already made, whether a pair's score depends on whether its scorer trained on
it. AFTER is an output with the K cross-fitted bootstrap filters, `score/`
(and `select/`) made with them; BEFORE, optional, one scored by a single filter
trained on the same pairs (its `bootstrap_filter/splits.parquet` says which).
Reported: median score and share of the top `select.top_fraction` (recomputed
on the scored pairs: select's rule without OCR/dedup) per (fold, seen or not by
the scorer); as a check, the same pairs scored by a filter that did train on
them (fold k+1's); the held-out AUC of each fold's filter. Its section of
train.md is replaced; the other sections are kept (and kept by parts 1-2).

The Markdown report goes to stdout and to benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (sets the quiet environment first)
from common import TreePeakRSS, fmt_range, log, md_table, mib  # noqa: E402

BATCH, WORKERS, MODEL = 64, 1, "webli-tiny"
DEFAULT_ROOT = Path("/tmp/webli-bench-train/realweb")

OURS_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from webli.pipeline.config import validate_config
    from webli.pipeline.train import run_train
    config = validate_config(json.loads(sys.argv[1]))
    started = time.perf_counter()
    stats = run_train(config)
    print(json.dumps({"wall": time.perf_counter() - started, "samples": stats["samples_trained"]}))
""")

OPEN_CLIP_SCRIPT = textwrap.dedent("""
    import json, math, sys, time
    import torch
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    from webli.stages.train.models import register_model_config
    register_model_config(args["model"])
    # open_clip_train 3.3's group_by_keys_nothrow breaks on the end-of-shard marker webdataset >= 0.2.96 yields
    # (webdataset#384, open_clip#935); the fix named there: no marker.
    import functools
    import open_clip_train.data
    from webdataset.tariterators import tar_file_expander
    open_clip_train.data.tar_file_expander = functools.partial(tar_file_expander, eof_value=None)
    from open_clip_train.main import main
    started = time.perf_counter()
    main(args["argv"])
    batches = math.ceil(args["samples"] / args["batch"])
    print(json.dumps({"wall": time.perf_counter() - started, "samples": batches * args["batch"]}))
""")


# --- data ---------------------------------------------------------------------------------

def ensure_download(root: Path) -> list[Path]:
    """The realweb download shards under `root`, made with `webli crawl` + `webli download` if missing."""
    shards = sorted((root / "download").glob("[0-9]*.tar"))
    if shards:
        return shards
    common.require_server()
    common.require_warc()
    root.mkdir(parents=True, exist_ok=True)
    config = root.parent / "run.yaml"
    config.write_text(json.dumps({
        "output": str(root), "crawl": {"warc": [str(common.REALWEB_WARC)], "allow_private_networks": True},
        "download": {"shard_size": 500, "thread_count": 16}, "cluster": {"workers": 2}}))
    for stage in ("crawl", "download"):
        log(f"webli {stage} (realweb) ...")
        subprocess.run([sys.executable, "-m", "webli.pipeline.cli", stage, "-c", str(config)], check=True,
                       cwd=common.PROJECT_DIR, stdout=subprocess.DEVNULL)
    return sorted((root / "download").glob("[0-9]*.tar"))


def count_successes(root: Path) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    return sum(pc.sum(pc.equal(pq.read_table(p, columns=["status"])["status"], "success")).as_py() or 0
               for p in sorted((root / "download").glob("[0-9]*.parquet")))


# --- runs -----------------------------------------------------------------------------------

class Run:
    """One training process: wall seconds, samples, process-tree CPU seconds and peak RSS (KiB)."""

    def __init__(self, result: dict, cpu: float, sampler: TreePeakRSS):
        self.wall, self.samples, self.cpu = result["wall"], result["samples"], cpu
        self.main_kib = sampler.root()
        self.worker_kib = max((k for p, k in sampler.peak_kib.items() if p != sampler.root_pid), default=0)

    @property
    def per_second(self) -> float:
        return self.samples / self.wall

    @property
    def per_cpu_second(self) -> float:
        return self.samples / self.cpu


def run_script(script: str, payload: dict) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(payload)], cwd=common.PROJECT_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreePeakRSS(proc.pid) as sampler:
        out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"training process failed:\n{err[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(json.loads(out.strip().splitlines()[-1]), cpu, sampler)


def ours(shards: list[Path], work: Path, threads: int) -> Run:
    output = work / "ours"
    shutil.rmtree(output, ignore_errors=True)
    config = {"output": str(output), "cluster": {"workers": 1},
              "train": {"model": MODEL, "data": str(shards[0].parent / "[0-9]*.tar"), "epochs": 1, "batch_size": BATCH,
                        "workers": WORKERS, "threads": threads, "eval_fraction": 0.0, "device": "cpu"}}
    return run_script(OURS_SCRIPT, config)


def open_clip_train(shards: list[Path], work: Path, threads: int, samples: int) -> Run:
    logs = work / "open_clip_logs"
    shutil.rmtree(logs, ignore_errors=True)
    argv = ["--train-data", "::".join(str(s) for s in shards), "--train-num-samples", str(samples),
            "--dataset-type", "webdataset", "--model", MODEL, "--batch-size", str(BATCH), "--epochs", "1",
            "--workers", str(WORKERS), "--lr", "5e-4", "--wd", "0.2", "--warmup", "50", "--precision", "fp32",
            "--logs", str(logs), "--name", "bench", "--save-frequency", "1", "--zeroshot-frequency", "0",
            "--val-frequency", "0", "--report-to", "", "--log-every-n-steps", "1000", "--seed", "0",
            "--device", "cpu"]
    return run_script(OPEN_CLIP_SCRIPT, {"threads": threads, "model": MODEL, "argv": argv, "samples": samples,
                                         "batch": BATCH})


def model_step_ceiling(threads: int, steps: int = 5) -> float:
    """Samples per CPU-second of the model step alone on random tensors (no data loading)."""
    import open_clip
    import torch

    from webli.stages.train.loop import build_optimizer, train_step
    from webli.stages.train.models import create_clip

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, model, _, _, _ = create_clip(MODEL, None, "cpu")
    optimizer, loss = build_optimizer(model, 5e-4, 0.2), open_clip.ClipLoss()
    context = model.context_length
    images, texts = torch.randn(BATCH, 3, 64, 64), torch.randint(1, 49407, (BATCH, context))
    train_step(model, loss, optimizer, images, texts)  # warm-up
    started = time.process_time()
    for _ in range(steps):
        train_step(model, loss, optimizer, images, texts)
    return steps * BATCH / (time.process_time() - started)


def throughput_part(shards: list[Path], work: Path, samples: int, reps: int, threads: list[int]) -> str:
    rows = []
    for n_threads in threads:
        runs: dict[str, list[Run]] = {"ours": [], "open_clip_train": []}
        for rep in range(reps):
            for name in runs:
                log(f"throughput: {name}, {n_threads} thread(s), rep {rep + 1}/{reps}")
                run = ours(shards, work, n_threads) if name == "ours" else open_clip_train(
                    shards, work, n_threads, samples)
                runs[name].append(run)
        base = runs["open_clip_train"]
        for name, done in runs.items():
            ratio_wall = sum(r.per_second for r in done) / sum(r.per_second for r in base)
            ratio_cpu = sum(r.per_cpu_second for r in done) / sum(r.per_cpu_second for r in base)
            rows.append([name, n_threads, done[0].samples, fmt_range([r.per_second for r in done]),
                         fmt_range([r.per_cpu_second for r in done]), f"{ratio_wall:.2f} / {ratio_cpu:.2f}",
                         fmt_range([mib(r.main_kib) for r in done], 0),
                         fmt_range([mib(r.worker_kib) for r in done], 0)])
    ceiling = [[t, f"{model_step_ceiling(t):,.1f}"] for t in threads]
    return "\n\n".join([
        md_table(["trainer", "torch threads", "samples / epoch", "samples/s (wall)", "samples per CPU-second",
                  "ratio to open_clip_train (wall / CPU)", "peak RSS trainer (MiB)", "peak RSS loader worker (MiB)"],
                 rows),
        "Model step alone (random tensors, no data loading), the ceiling of both trainers:",
        md_table(["torch threads", "samples per CPU-second"], ceiling)])


# --- quality --------------------------------------------------------------------------------

BOOTSTRAP_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from webli.pipeline.config import validate_config
    from webli.pipeline.train import run_bootstrap_filter
    config = validate_config(json.loads(sys.argv[1]))
    started = time.perf_counter()
    stats = run_bootstrap_filter(config)
    print(json.dumps({"wall": time.perf_counter() - started, "samples": stats["samples_trained"]}))
""")


def quality_part(data_root: Path, work: Path, threads: int) -> str:
    """Bootstrap filter with its defaults (threads: the cores left by the loader) on a symlink to the download."""
    output = work / "bootstrap"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    (output / "download").symlink_to(data_root / "download", target_is_directory=True)
    config = {"output": str(output), "cluster": {"workers": threads}, "train": {"device": "cpu"}}
    log("quality: run_bootstrap_filter with its defaults (10 epochs) ...")
    run = run_script(BOOTSTRAP_SCRIPT, config)
    metrics = json.loads((output / "bootstrap_filter" / "metrics.json").read_text())
    stats = json.loads((output / "bootstrap_filter" / "stats.json").read_text())
    before = metrics["before_training"]

    def recall(m: dict, direction: str) -> str:
        return " / ".join(f"{m[direction][k]:.3f}" for k in ("1", "5", "10"))

    rows = [["before training (random init)", f"{before['auc']:.3f}", recall(before, "image_to_text_recall"),
             recall(before, "text_to_image_recall"), f"{before['true_pair_cosine_mean']:.3f}",
             f"{before['shuffled_pair_cosine_mean']:.3f}"],
            [f"after {metrics['epochs']} epochs", f"{metrics['auc']:.3f}", recall(metrics, "image_to_text_recall"),
             recall(metrics, "text_to_image_recall"), f"{metrics['true_pair_cosine_mean']:.3f}",
             f"{metrics['shuffled_pair_cosine_mean']:.3f}"]]
    losses = ", ".join(f"{h['mean_loss']:.2f}" for h in metrics["history"])
    return "\n\n".join([
        md_table(["held-out pairs (" + str(metrics["pool"]) + ")", "AUC true vs shuffled",
                  "image->text R@1 / 5 / 10", "text->image R@1 / 5 / 10", "mean cosine, true pairs",
                  "mean cosine, shuffled pairs"], rows),
        f"Splits: {metrics['splits']['train']} train, {metrics['splits']['eval']} held out, "
        f"{stats['dropped']} dropped ({stats['dropped_by_reason'] or 'none'}). Mean training loss per epoch: "
        f"{losses}. Training {stats['samples_trained']} samples in {stats['train_seconds']:.0f} s "
        f"({stats['samples_per_second']:.1f} samples/s wall, {stats['torch_threads']} torch thread(s) + "
        f"{stats['loader_workers']} loader worker); "
        f"the whole run, evaluations and checkpoints included, {run.wall:.0f} s; peak RSS "
        f"{mib(run.main_kib):.0f} MiB (trainer), {mib(run.worker_kib):.0f} MiB (loader worker)."])


# --- cross-fitting -----------------------------------------------------------------------------

CROSSFIT_TITLE = "## Bootstrap filter cross-fitting: scores of seen and unseen pairs"
CROSSFIT_READING = (
    "Before: one filter trained on the bootstrap split minus `eval_fraction` (by uid hash) scored every pair; "
    "after: `train.bootstrap.folds: 2`, filter k trained on the pairs outside fold k (a third, independent uid "
    "hash) and scores fold k. `fold` is the pair's cross-fitting fold (the same hash for both runs, so the rows "
    "compare like with like); `seen by its scorer`: the model that gave the score trained on the pair. Selected: "
    "the top `select.top_fraction` of the scored pairs by select's rule (OCR and dedup left out, so before and "
    "after select from the same pairs). The `check` rows score each pair with the other fold's filter, which "
    "trained on it: the score a pair would get without the routing. Same data, model (`webli-tiny`), 10 epochs "
    "and settings before and after; the before filters are the ones the runs had (demo: `make demo`'s, "
    "realweb: Part 2's).")


def shard_rows(folder: Path, columns: list[str]) -> list[dict]:
    """Rows of a stage's NNNNN.parquet files."""
    import pyarrow.parquet as pq

    return [row for path in sorted(folder.glob("[0-9][0-9][0-9][0-9][0-9].parquet"))
            for row in pq.read_table(path, columns=columns).to_pylist()]


def sidecar_scores(output: Path) -> dict[str, float]:
    """key -> score of every scored pair of a run."""
    return {r["key"]: r["score"] for r in shard_rows(output / "score", ["key", "score"]) if r["score"] is not None}


def top_keys(scores: dict[str, float], fraction: float) -> set[str]:
    """select's rule on the scored pairs alone: floor(fraction x pairs), by score descending, then key."""
    keep = math.floor(Decimal(str(fraction)) * len(scores))
    return {key for key, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]}


def rescore_by_a_training_filter(output: Path, folds: int) -> dict[str, float]:
    """Every pair scored by filter k+1 (mod K), which trained on fold k: what the scores would be without
    cross-fitting's routing (the check that each filter still scores its training pairs higher)."""
    import pyarrow.parquet as pq
    import torch

    from webli.pipeline.score import load_scorer
    from webli.stages.score import FoldScorers, iter_tar_images, score_shard

    scorers = [load_scorer(str(output / "bootstrap_filter" / f"fold_{k}"), None, torch.device("cpu"), f"fold_{k}")
               for k in range(folds)]
    rotated = FoldScorers(tuple(scorers[(k + 1) % folds] for k in range(folds)), "rotated")
    scores = {}
    for table_path in sorted((output / "download").glob("[0-9][0-9][0-9][0-9][0-9].parquet")):
        rows = pq.read_table(table_path, columns=["key", "uid", "caption", "status"])
        with open(table_path.with_suffix(".tar"), "rb") as tar:
            table, _ = score_shard(rows, iter_tar_images(tar), rotated, 64)
        scores.update({r["key"]: r["score"] for r in table.to_pylist() if r["score"] is not None})
    return scores


def group_rows(label: str, scores: dict[str, float], group_of: dict[str, tuple], selected: set[str] | None) -> list:
    """One table row per (fold, seen/unseen): pairs, median score, selected pairs and their share."""
    groups: dict[tuple, list[str]] = {}
    for key in scores:
        groups.setdefault(group_of[key], []).append(key)
    rows = []
    for (fold, seen), keys in sorted(groups.items()):
        chosen = len(selected & set(keys)) if selected is not None else None
        rows.append([label, fold, seen, f"{len(keys)} ({len(keys) / len(scores):.0%})",
                     f"{statistics.median(scores[k] for k in keys):.3f}",
                     "-" if chosen is None else f"{chosen} of {len(selected)}",
                     "-" if chosen is None else f"{chosen / max(1, len(selected)):.0%}"])
    return rows


def fold_auc_rows(after: Path, before: Path | None) -> list:
    """Held-out AUC (true vs shuffled pairs) of the single filter and of each fold's filter."""
    rows = []
    if before is not None and (before / "bootstrap_filter" / "metrics.json").is_file():
        m = json.loads((before / "bootstrap_filter" / "metrics.json").read_text())
        rows.append(["before: one filter", m["splits"]["train"], m["pool"], f"{m['before_training']['auc']:.3f}",
                     f"{m['auc']:.3f}"])
    folds = json.loads((after / "bootstrap_filter" / "stats.json").read_text())["folds"]
    for k in range(folds):
        m = json.loads((after / "bootstrap_filter" / f"fold_{k}" / "metrics.json").read_text())
        auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
        rows.append([f"after: fold {k} filter", m["splits"]["train"], m["pool"],
                     f"{m['before_training']['auc']:.3f}", auc])
    return rows


def median_of(scores: dict[str, float], keys) -> float:
    return statistics.median(scores[k] for k in keys)


def crossfit_summary(old: dict | None, seen: set[str], new: dict, check: dict, fold: dict, fraction: float) -> str:
    """The section's reading in numbers: the seen pairs' weight before, the folds' balance after."""
    lines = []
    if old:
        chosen = top_keys(old, fraction)
        lines.append(f"Before: the filter had trained on {len(seen & set(old)) / len(old):.0%} of the scored pairs "
                     f"and they made {len(chosen & seen) / len(chosen):.0%} of the selection (median score "
                     f"{median_of(old, seen & set(old)):.3f} seen against "
                     f"{median_of(old, set(old) - seen):.3f} unseen).")
    chosen = top_keys(new, fraction)
    gaps = []
    for k in sorted(set(fold.values())):
        keys = {key for key in new if fold[key] == k}
        gaps.append(abs(len(chosen & keys) / len(chosen) - len(keys) / len(new)))
    lines.append(f"After: every pair is scored by a filter that never trained on it; each fold's share of the "
                 f"selection is within {max(gaps) * 100:.1f} points of its share of the pairs. The same filters "
                 f"score the pairs they trained on at a median {median_of(check, check):.3f} against "
                 f"{median_of(new, new):.3f} for their own fold's: the memorisation is still there, routing keeps it "
                 "out of the scores.")
    return " ".join(lines)


def crossfit_part(label: str, after: Path, before: Path | None) -> str:
    """The cross-fitting section's part for one run (see the module docstring, part 3)."""
    import pyarrow.parquet as pq
    import yaml

    from webli.stages.train.data import fold_of

    fraction = yaml.safe_load((after / "config.yaml").read_text())["select"]["top_fraction"]
    folds = json.loads((after / "bootstrap_filter" / "stats.json").read_text())["folds"]
    splits = pq.read_table(after / "bootstrap_filter" / "splits.parquet").to_pylist()
    fold = {r["key"]: r["fold"] for r in splits}
    assert all(fold_of(r["uid"], folds) == r["fold"] for r in splits)
    rows, old, seen = [], None, set()
    if before is not None:
        old_split = {r["key"]: r["split"] for r in
                     pq.read_table(before / "bootstrap_filter" / "splits.parquet").to_pylist()}
        seen = {key for key, split in old_split.items() if split == "train"}
        old = sidecar_scores(before)
        rows += group_rows("before: one filter", old,
                           {k: (fold[k], "seen" if old_split[k] == "train" else "unseen") for k in old},
                           top_keys(old, fraction))
    new = sidecar_scores(after)
    rows += group_rows(f"after: {folds} fold filters", new, {k: (fold[k], "unseen") for k in new},
                       top_keys(new, fraction))
    log(f"crossfit {label}: rescoring every pair with a filter that trained on it ...")
    check = rescore_by_a_training_filter(after, folds)
    rows += group_rows("check: fold k+1's filter (not used)", check, {k: (fold[k], "seen") for k in check}, None)
    staged = shard_rows(after / "select" / "shards", ["key"]) if (after / "select" / "shards").is_dir() else []
    note = (f"`webli select` on the same run kept {len(staged)} pairs, "
            f"{'the same set' if {r['key'] for r in staged} == top_keys(new, fraction) else 'another set'} "
            "as the recomputed top fraction." if staged else "")
    return "\n\n".join([
        f"### {label}",
        f"Output `{after}`" + (f", before: `{before}`" if before else "") + f"; top fraction {fraction}.",
        md_table(["scored by", "fold", "seen by its scorer", "pairs (share)", "median score", "selected",
                  "share of selected"], rows),
        note,
        md_table(["filter", "trained on (pairs)", "held-out pairs", "AUC before training", "AUC after"],
                 fold_auc_rows(after, before)),
        crossfit_summary(old, seen, new, check, fold, fraction)])


def replace_section(report: str, title: str, body: str) -> str:
    """`report` with the section `title` (up to the next '## ') replaced by `body`, or `body` appended."""
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(report):
        return pattern.sub(lambda _: body.rstrip("\n") + "\n\n", report).rstrip("\n") + "\n"
    return report.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"


def kept_section(path: Path, title: str) -> str:
    """The section `title` of an existing report, or ''."""
    if not path.is_file():
        return ""
    found = re.search(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", path.read_text(encoding="utf-8"), re.S | re.M)
    return found.group(0).rstrip("\n") if found else ""


def crossfit_main(specs: list[str], save: bool) -> None:
    """Part 3 alone: one subsection per LABEL=AFTER[,BEFORE]; replaces its section of train.md."""
    machine = common.machine_note(("torch", "open_clip_torch")).replace(
        "so every figure is a median over repetitions with the min-max range in brackets", "one run each")
    parts = [f"{CROSSFIT_TITLE}\n\n{machine}\n\n{CROSSFIT_READING}\n\nCommand: `{common.command_line()}`"]
    for spec in specs:
        label, _, paths = spec.partition("=")
        after, _, before = paths.partition(",")
        parts.append(crossfit_part(label, Path(after), Path(before) if before else None))
    body = "\n\n".join(parts)
    print(body)
    if save:
        path = common.RESULTS_DIR / "train.md"
        path.write_text(replace_section(path.read_text(encoding="utf-8"), CROSSFIT_TITLE, body), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT, help="output root holding download/")
    parser.add_argument("--work", type=Path, default=Path("/tmp/webli-bench-train/work"))
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--crossfit", action="append", metavar="LABEL=AFTER[,BEFORE]",
                        help="part 3 alone, on runs already made (repeatable)")
    args = parser.parse_args()
    if args.crossfit:
        crossfit_main(args.crossfit, not args.no_save)
        return
    shards = ensure_download(args.data_root)
    samples = count_successes(args.data_root)
    args.work.mkdir(parents=True, exist_ok=True)
    sections = [f"# Train benchmark\n\n{common.machine_note(('torch', 'open_clip_torch', 'webdataset'))}\n\n"
                f"Command: `{common.command_line()}`\n\nData: {len(shards)} realweb download shards, "
                f"{samples} image / alt-text pairs (256 px JPEG), model `{MODEL}`, batch {BATCH}, "
                f"{WORKERS} loader worker process."]
    if not args.no_throughput:
        sections.append("## Throughput: one epoch, ours against open_clip_train\n\n"
                        + throughput_part(shards, args.work, samples, args.reps, args.threads))
    if not args.no_quality:
        sections.append("## Bootstrap filter quality (defaults)\n\n"
                        + quality_part(args.data_root, args.work, max(args.threads)))
    if kept := kept_section(common.RESULTS_DIR / "train.md", CROSSFIT_TITLE):
        sections.append(kept)
    report = "\n\n".join(sections) + "\n"
    print(report)
    if not args.no_save:
        (common.RESULTS_DIR / "train.md").write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
