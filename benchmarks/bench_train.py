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

The Markdown report goes to stdout and to benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import textwrap
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT, help="output root holding download/")
    parser.add_argument("--work", type=Path, default=Path("/tmp/webli-bench-train/work"))
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
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
    report = "\n\n".join(sections) + "\n"
    print(report)
    if not args.no_save:
        (common.RESULTS_DIR / "train.md").write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
