"""Run every crawl and download benchmark, one after the other, and print all their tables.

Usage (from the project root)::

    .venv/bin/python benchmarks/run_all.py            # ~10 min on 2 idle cores, ~20 min on busy ones
    .venv/bin/python benchmarks/run_all.py --quick    # fewer repetitions (smoke run), reports to /tmp

Runs, each in its own process (so one's memory and imports do not colour the next):
  1. bench_crawl.py --warc --seeds  ->  benchmarks/results/crawl.md
     (the WARC and live-crawl parts share one report file)
  2. bench_download.py              ->  benchmarks/results/download.md
Progress goes to stderr; the Markdown reports are printed together at the end.
bench_langid.py is separate (it needs no server and takes longer), and so are
the later stages' benchmarks (bench_ocr, bench_dedup, bench_dedup_scale,
bench_score, bench_score_dask, bench_score_select, bench_train,
bench_select_vs_random, bench_card): each takes minutes to an hour on its own,
and each results/*.md file starts with the command that wrote it.

Needs the realweb site, server and WARC; each benchmark checks and prints
the commands that create whatever is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str]) -> tuple[int, str, float]:
    started = time.perf_counter()
    command = [sys.executable, str(HERE / script), *args]
    print(f"[run_all] {' '.join(command)}", file=sys.stderr, flush=True)
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)  # stderr streams through
    return proc.returncode, proc.stdout, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for a smoke run)")
    args = parser.parse_args(argv)
    crawl_args = ["--warc", "--seeds"] + (["--reps", "3", "--cold-reps", "2", "--seed-reps", "2",
                                           "--slow-pages", "10"] if args.quick else [])
    download_args = ["--reps", "2"] + (["--plan-sizes", "100000", "--fixed-reps", "1", "--one-shard", "0",
                                        "--one-shard-reps", "1", "--dask-reps", "1"] if args.quick else [])
    if args.quick:  # partial runs print only; keep the saved reports from full runs
        crawl_args += ["--out", "/tmp/webli-bench-crawl-quick.md"]
        download_args += ["--out", "/tmp/webli-bench-download-quick.md"]
    reports, failed = [], []
    for script, script_args in (("bench_crawl.py", crawl_args), ("bench_download.py", download_args)):
        code, out, seconds = run(script, script_args)
        print(f"[run_all] {script} finished in {seconds:.0f}s with exit code {code}", file=sys.stderr, flush=True)
        if code:
            failed.append(script)
        reports.append(out)
    print("\n\n".join(r.strip() for r in reports if r.strip()))
    if failed:
        print(f"[run_all] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
