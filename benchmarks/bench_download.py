"""Download-stage throughput against img2dataset itself, and worker memory as the input grows.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_download.py               # both parts
    .venv/bin/python benchmarks/bench_download.py --reps 3 --rss-n 300

Part 1, throughput. The realweb WARC is crawled once with `webli crawl`; its
pairs (image URL, alt text) are the URL list. Then, interleaved, `--reps`
times each:
  - ours: `webli download --config run.yaml` in a fresh process (the Dask
    pipeline as users run it: plan, LocalCluster, one task per shard);
  - img2dataset: `img2dataset.download(...)` in a fresh process, on the same
    URLs and captions in the same order (a Parquet file url, caption).
Both: 2 processes, the same thread count, the same shard size, 256 px
`border` resize to JPEG quality 95, no size / aspect-ratio / area filter, no
EXIF, sha256, 10 s timeout, no retries, the same X-Robots-Tag directives,
WebDataset output under /tmp, the same loopback server.

Part 2, memory. `webli download` on N and 10N rows (realweb pairs, repeated
with a different alt text, hence a different uid, when N exceeds them) with a
fixed shard size: the peak RSS of every Dask worker process (the kernel's
high-water mark VmHWM, sampled from /proc) should not grow with the input.
Also the peak RSS of the planning step alone (`plan_download`, run by the
driver) on synthetic crawl outputs of growing size.

Needs the realweb server and WARC (prints how to make them otherwise). The
Markdown report goes to stdout and to benchmarks/results/download.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (sets the quiet environment first)
from common import TreePeakRSS, alternating, fmt_range, log, md_table, mib, write_report  # noqa: E402

VENV_BIN = Path(sys.executable).parent
WEBLI = str(VENV_BIN / "webli")

# The equivalent settings of the two tools (see the module docstring).
IMAGE_SIZE, RESIZE_MODE, ENCODE, QUALITY, TIMEOUT = 256, "border", "jpg", 95, 10

I2D_SCRIPT = textwrap.dedent("""
    import json, sys
    from img2dataset import download
    args = json.loads(sys.argv[1])
    download(**args)
""")


# --- set-up ---------------------------------------------------------------------------

def write_yaml(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def ours_config(output: Path, processes: int, threads: int, shard_size: int) -> dict:
    return {
        "output": str(output),
        "crawl": {"warc": [str(common.REALWEB_WARC)], "allow_private_networks": True},
        "download": {
            "image_size": IMAGE_SIZE, "resize_mode": RESIZE_MODE, "encode_format": ENCODE,
            "encode_quality": QUALITY, "timeout": float(TIMEOUT), "retries": 0,
            "min_image_size": 0,                # img2dataset default 0
            "max_aspect_ratio": float("inf"),   # img2dataset default inf
            "max_image_pixels": 10 ** 12,       # img2dataset max_image_area default inf
            "large_copy_size": 0,
            "thread_count": threads, "processes": processes, "shard_size": shard_size,
        },
        "cluster": {"workers": processes},
    }


def i2d_args(url_file: Path, output: Path, processes: int, threads: int, shard_size: int) -> dict:
    return dict(
        url_list=str(url_file), input_format="parquet", url_col="url", caption_col="caption",
        output_folder=str(output), output_format="webdataset", processes_count=processes,
        thread_count=threads, number_sample_per_shard=shard_size, distributor="multiprocessing",
        enable_wandb=False, image_size=IMAGE_SIZE, resize_mode=RESIZE_MODE, resize_only_if_bigger=False,
        encode_format=ENCODE, encode_quality=QUALITY, timeout=TIMEOUT, retries=0,
        min_image_size=0, max_aspect_ratio=float("inf"), max_image_area=float("inf"),
        extract_exif=False,            # ours never extracts EXIF
        compute_hash="sha256",         # ours too
        disallowed_header_directives=["noai", "noimageai", "noindex", "noimageindex"],
    )


class Run:
    """One command run: wall seconds, CPU seconds of its whole (reaped) process tree, start epoch."""

    def __init__(self, wall: float, cpu: float, started: float, sampler: TreePeakRSS):
        self.wall, self.cpu, self.started, self.sampler = wall, cpu, started, sampler


def run_cli(args: list[str], cwd: Path) -> Run:
    """Run a command, sampling the peak RSS of its process tree and summing its CPU time."""
    env = {**os.environ, **common.QUIET_ENV}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_epoch, started = time.time(), time.perf_counter()
    with open(cwd / "stderr.log", "w") as err:
        proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        with TreePeakRSS(proc.pid) as sampler:
            rc = proc.wait()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if rc != 0:
        tail = (cwd / "stderr.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{args[:3]} failed with exit code {rc}:\n{tail}")
    return Run(wall, cpu, started_epoch, sampler)


def crawl_once(work: Path) -> tuple[Path, float]:
    """`webli crawl` of the realweb WARC; returns the crawl output root and its wall time."""
    root = work / "crawl-src"
    cfg = write_yaml(work / "crawl.yaml", ours_config(root, 2, 32, 500))
    return root, run_cli([WEBLI, "crawl", "--config", str(cfg)], work).wall


def write_crawl_dir(root: Path, table) -> None:
    """A finished one-shard crawl output holding `table` (schema CRAWL_PAIRS)."""
    from webli import schemas
    from webli.pipeline.storage import StageDir

    store = StageDir(str(root), "crawl")
    store.makedirs()
    store.write_table("00000.parquet", table, schemas.CRAWL_PAIRS)
    store.write_stats(0, {"stage": "crawl", "total": table.num_rows, "forwarded": table.num_rows,
                          "dropped_by_reason": {}, "shard": 0, "source": {"benchmark": True}})


def crawl_pairs(crawl_root: Path):
    import pyarrow.parquet as pq

    return pq.read_table(crawl_root / "crawl" / "00000.parquet")


def sample_pairs(base, rows: int):
    """`rows` pairs spread evenly over the crawl's pairs in uid order (a representative mix of images)."""
    import numpy as np
    import pyarrow as pa

    base = base.sort_by("uid")
    picks = np.linspace(0, base.num_rows - 1, num=min(rows, base.num_rows)).round().astype(np.int64)
    return base.take(pa.array(picks))


def grown_pairs(sample, rows: int):
    """`rows` pairs: `sample`, then `sample` again with ' (k)' appended to the alt text (new uid), ..."""
    import pyarrow as pa

    from webli.stages.crawl.pairs import pair_uid

    chunks, k, have = [], 0, 0
    while have < rows:
        chunk = sample.slice(0, rows - have)
        if k:
            alts = [f"{a} ({k})" for a in chunk.column("alt").to_pylist()]
            uids = [pair_uid(u, a) for u, a in zip(chunk.column("url").to_pylist(), alts)]
            chunk = chunk.set_column(chunk.schema.get_field_index("alt"), "alt", pa.array(alts)) \
                .set_column(chunk.schema.get_field_index("uid"), "uid", pa.array(uids)).cast(sample.schema)
        chunks.append(chunk)
        have += chunk.num_rows
        k += 1
    return pa.concat_tables(chunks)


# --- reading results ------------------------------------------------------------------

def ours_results(root: Path) -> dict:
    from webli.pipeline.storage import sum_stats

    files = sorted(glob.glob(str(root / "download" / "[0-9]*_stats.json")))
    stats = [json.load(open(f)) for f in files]
    total = sum_stats(stats)
    ends = [os.path.getmtime(f) for f in files]
    starts = [end - s["duration_s"] for end, s in zip(ends, stats)]
    return {"rows": total["total"], "successes": total["forwarded"], "shards": len(stats),
            "reasons": Counter(total["dropped_by_reason"]),
            "window": max(ends) - min(starts), "first_start": min(starts), "last_end": max(ends),
            "shard_s": [s["duration_s"] for s in stats]}


def i2d_results(root: Path) -> dict:
    from webli.stages.download import drop_reason

    stats = [json.load(open(f)) for f in sorted(glob.glob(str(root / "*_stats.json")))]
    reasons: Counter = Counter()
    raw: Counter = Counter()
    for s in stats:
        for message, count in s["status_dict"].items():
            if message != "success":
                raw[message] += count
                reasons[drop_reason("failed", message) or "?"] += count
    return {"rows": sum(s["count"] for s in stats), "successes": sum(s["successes"] for s in stats),
            "shards": len(stats), "reasons": reasons, "raw": raw,
            "window": max(s["end_time"] for s in stats) - min(s["start_time"] for s in stats),
            "first_start": min(s["start_time"] for s in stats), "last_end": max(s["end_time"] for s in stats),
            "shard_s": [s["duration"] for s in stats]}


def worker_peaks(sampler: TreePeakRSS, threads: int) -> list[float]:
    """Peak MiB of the processes that ran a download thread pool (`threads` threads at once)."""
    return sorted(mib(v) for v in sampler.workers(min_threads=threads).values())


# --- part 1 -----------------------------------------------------------------------------

def warm_server(urls: list[str], threads: int) -> float:
    """Fetch every image URL once, untimed, from the loopback server: the first timed run then finds the
    server's files in the page cache like every later one (without it, the first run, always ours, paid for
    a cold cache). Returns the seconds it took."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def fetch(url: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                response.read()
        except OSError:
            pass  # the 404s stay 404s for both tools

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fetch, urls))
    return time.perf_counter() - started


def bench_throughput(work: Path, crawl_root: Path, reps: int, processes: int, threads: int,
                     shard_size: int, limit: int | None) -> str:
    import pyarrow.parquet as pq

    pairs = crawl_pairs(crawl_root).sort_by("uid")
    if limit:
        pairs = pairs.slice(0, limit)
    source = work / "pairs-src"
    write_crawl_dir(source, pairs)
    url_file = work / "urls.parquet"
    pq.write_table(pairs.select(["url", "alt"]).rename_columns(["url", "caption"]), url_file)
    unique_urls = sorted(set(pairs.column("url").to_pylist()))
    assert all(url.startswith(("http://127.0.0.1", "http://localhost")) for url in unique_urls)
    warm_seconds = warm_server(unique_urls, threads)
    log(f"download: {pairs.num_rows} pairs ({len(unique_urls)} distinct image URLs, fetched once untimed in "
        f"{warm_seconds:.1f}s), {reps} runs per tool")

    runs: dict[str, list[dict]] = {"ours": [], "img2dataset": []}
    for rep in range(reps):
        for tool in alternating(["ours", "img2dataset"], rep):
            out = work / f"{tool}-{rep}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            load = os.getloadavg()[0]
            if tool == "ours":
                shutil.copytree(source / "crawl", out / "crawl")
                cfg = write_yaml(out / "run.yaml", ours_config(out, processes, threads, shard_size))
                run = run_cli([WEBLI, "download", "--config", str(cfg)], out)
                result = ours_results(out)
            else:
                args = i2d_args(url_file, out / "shards", processes, threads, shard_size)
                run = run_cli([sys.executable, "-c", I2D_SCRIPT, json.dumps(args)], out)
                result = i2d_results(out / "shards")
            wall = run.wall
            workers = run.sampler.workers(min_threads=threads)
            cpu_by_pid = run.sampler.cpu
            result.update(cpu_main=cpu_by_pid.get(run.sampler.root_pid, 0.0),
                          cpu_workers=sum(cpu_by_pid.get(pid, 0.0) for pid in workers),
                          cpu_others=sum(c for pid, c in cpu_by_pid.items()
                                         if pid != run.sampler.root_pid and pid not in workers))
            result.update(load_before=load, load_after=os.getloadavg()[0])
            result.update(wall=wall, cpu=run.cpu, startup=result["first_start"] - run.started,
                          tail=run.started + wall - result["last_end"],
                          workers=worker_peaks(run.sampler, threads), driver=mib(run.sampler.root()))
            runs[tool].append(result)
            log(f"{tool} run {rep + 1} (load {load:.1f} -> {result['load_after']:.1f}): "
                f"{result['successes']}/{result['rows']} in {wall:.1f}s, "
                f"{run.cpu:.1f} CPU-s ({result['successes'] / wall:.1f} samples/s), workers peak "
                f"{', '.join(f'{w:.0f}' for w in result['workers'])} MiB")
            if rep < reps - 1:  # keep only the last outputs for inspection
                shutil.rmtree(out, ignore_errors=True)

    rows = []
    for tool, r in runs.items():
        rows.append([tool, r[0]["rows"], r[0]["shards"], len(r), fmt_range([x["successes"] for x in r], 0),
                     fmt_range([x["wall"] for x in r], 1), fmt_range([x["successes"] / x["wall"] for x in r]),
                     fmt_range([x["startup"] for x in r], 1), fmt_range([x["window"] for x in r], 1),
                     fmt_range([x["tail"] for x in r], 1),
                     fmt_range([x["successes"] / x["window"] for x in r]),
                     fmt_range([x["cpu"] for x in r], 1), fmt_range([x["successes"] / x["cpu"] for x in r]),
                     fmt_range([w for x in r for w in x["workers"]], 0, " MiB"),
                     fmt_range([x["driver"] for x in r], 0, " MiB")])
    table = md_table(["tool", "rows", "shards", "runs", "successes", "wall s (whole command)",
                      "samples/s (wall)", "start-up s (to first shard start)", "shard window s",
                      "tail s (last shard end to exit)", "samples/s (window)", "CPU s (process tree)",
                      "samples per CPU-s", "peak RSS per worker", "peak RSS of the main process"], rows)

    cpu_rows = [[tool, fmt_range([x["cpu"] for x in r], 1), fmt_range([x["cpu_main"] for x in r], 1),
                 fmt_range([x["cpu_workers"] for x in r], 1), fmt_range([x["cpu_others"] for x in r], 1),
                 fmt_range([1000 * x["cpu_workers"] / x["rows"] for x in r], 1)]
                for tool, r in runs.items()]
    cpu_table = md_table(["tool", "CPU s, whole tree (rusage)", "main process (ours: CLI + Dask scheduler + "
                          "nannies)", "download workers", "other processes (img2dataset: logger)",
                          "worker CPU ms per row"], cpu_rows)

    def paired(key_fn):
        return [key_fn(o) / key_fn(i) for o, i in zip(runs["ours"], runs["img2dataset"])]

    def verdict(ratios):
        med = common.summary(ratios)[0]
        return "yes (every run)" if min(ratios) >= 0.9 else ("yes (median)" if med >= 0.9 else "**no**")

    wall_ratio = paired(lambda x: x["successes"] / x["wall"])
    window_ratio = paired(lambda x: x["successes"] / x["window"])
    cpu_ratio = paired(lambda x: x["successes"] / x["cpu"])
    ratios = md_table(["ratio ours / img2dataset (run pairs)", "median (min-max)", ">= 0.9?"], [
        ["samples/s, whole command (start-up, planning, Dask included)", fmt_range(wall_ratio, 2),
         verdict(wall_ratio)],
        ["samples/s, shard window (first shard start to last shard end)", fmt_range(window_ratio, 2),
         verdict(window_ratio)],
        ["samples per CPU-second of the whole process tree", fmt_range(cpu_ratio, 2), verdict(cpu_ratio)],
    ])

    reasons = sorted(set(k for r in runs.values() for x in r for k in x["reasons"]))
    reason_rows = [[reason] + [fmt_range([x["reasons"].get(reason, 0) for x in runs[t]], 0) for t in runs]
                   for reason in reasons]
    reason_table = md_table(["drop reason (ours' names; img2dataset's messages mapped with ours' "
                             "`drop_reason`)", "ours", "img2dataset"], reason_rows)
    raw = Counter()
    for x in runs["img2dataset"]:
        raw.update(x["raw"])
    raw_lines = "; ".join(f"`{m}` x{c // len(runs['img2dataset'])}" for m, c in raw.most_common(8))

    return "\n".join([
        "## Throughput: `webli download` vs `img2dataset.download()`",
        "",
        f"URL list: the {pairs.num_rows} pairs that `webli crawl` extracts from the realweb WARC "
        f"({len(unique_urls)} distinct image URLs; a URL with two alt texts is two rows for both tools), in uid "
        f"order; every URL fetched once, untimed, before the first run, so no run meets a cold server cache. "
        f"Server: {common.REALWEB_BASE} (Python threaded http.server, one process, on the same 2 "
        f"cores). Both tools: {processes} processes x {threads} threads, {shard_size} rows per shard, "
        f"{IMAGE_SIZE} px `{RESIZE_MODE}` resize, {ENCODE} quality {QUALITY}, no min size / aspect-ratio / "
        "area filter (ours: `min_image_size: 0`, `max_aspect_ratio: .inf`, `max_image_pixels: 1e12`; "
        "img2dataset defaults), EXIF off (img2dataset's default is on; ours has none), sha256 on, "
        f"timeout {TIMEOUT} s, retries 0, the same X-Robots-Tag directives. Ours additionally probes every "
        "image header with Pillow (refuses SVG, non-images, truncated files, declared decompression bombs) "
        "before img2dataset's resizer, and writes its own Parquet (sorted, schema-checked) and a copy of "
        "the tar into the output root. Each run is a fresh process (ours: `webli download`, img2dataset: "
        f"`python -c 'img2dataset.download(...)'`), output under {work}; {reps} runs each, interleaved.",
        "",
        "`wall` is the whole command: interpreter and imports (img2dataset imports torch via webdataset "
        "in both), ours' planning and Dask LocalCluster start, img2dataset's spawned pool. `shard window` "
        "runs from the first shard's start to the last shard's end (ours: stats file time minus the "
        "shard's `duration_s`; img2dataset: its `start_time`/`end_time`). Peak RSS is each process's VmHWM "
        "sampled from /proc every 20 ms; a `worker` is a spawned process that ran the download thread pool "
        "(ours: a Dask worker; img2dataset: a pool worker; img2dataset's logger process is left out).",
        "",
        table, "", ratios, "",
        "CPU seconds by process (utime + stime from /proc at the last 20 ms sample of each process, so a "
        "little below the rusage total):", "",
        cpu_table, "",
        "Machine load during these runs (1-minute load average at the start and at the end of each run, "
        "in run order): " + "; ".join(
            f"{tool} {i + 1}: {x['load_before']:.1f} -> {x['load_after']:.1f}"
            for i, pair in enumerate(zip(runs["ours"], runs["img2dataset"]))
            for tool, x in (zip(("ours", "img2dataset"), pair) if i % 2 == 0
                            else zip(("img2dataset", "ours"), pair[::-1]))) + ".", "",
        reason_table, "",
        f"img2dataset's raw failure messages (per run): {raw_lines or 'none'}.", "",
    ])


# --- part 1c: fixed cost ------------------------------------------------------------------

def bench_fixed_cost(work: Path, crawl_root: Path, rows: int, reps: int, processes: int, threads: int,
                     shard_size: int) -> str:
    """Both tools on a handful of rows: what a run costs before and after the downloading."""
    import pyarrow.parquet as pq

    pairs = crawl_pairs(crawl_root).sort_by("uid").slice(0, rows)
    source = work / "tiny-src"
    write_crawl_dir(source, pairs)
    url_file = work / "tiny-urls.parquet"
    pq.write_table(pairs.select(["url", "alt"]).rename_columns(["url", "caption"]), url_file)
    runs: dict[str, list[Run]] = {"ours": [], "img2dataset": []}
    for rep in range(reps):
        for tool in alternating(["ours", "img2dataset"], rep):
            out = work / f"tiny-{tool}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            if tool == "ours":
                shutil.copytree(source / "crawl", out / "crawl")
                cfg = write_yaml(out / "run.yaml", ours_config(out, processes, threads, shard_size))
                runs[tool].append(run_cli([WEBLI, "download", "--config", str(cfg)], out))
            else:
                args = i2d_args(url_file, out / "shards", processes, threads, shard_size)
                runs[tool].append(run_cli([sys.executable, "-c", I2D_SCRIPT, json.dumps(args)], out))
            log(f"fixed cost, {tool}: {runs[tool][-1].wall:.1f}s, {runs[tool][-1].cpu:.1f} CPU-s")
            shutil.rmtree(out, ignore_errors=True)
    rows_out = [[tool, rows, len(r), fmt_range([x.wall for x in r], 1), fmt_range([x.cpu for x in r], 1),
                 len(r[0].sampler.workers(min_threads=threads)),
                 fmt_range([mib(sum(x.sampler.peak_kib.values())) for x in r], 0, " MiB")]
                for tool, r in runs.items()]
    return "\n".join([
        f"## Fixed cost per run: {rows} rows",
        "",
        f"The same two commands on the first {rows} pairs only (one shard), {reps} run(s) each: nearly all of "
        "it is start-up (imports, ours' planning and Dask LocalCluster, img2dataset's spawned pool and "
        "logger process) and shut-down. `sum of peaks` adds the peak RSS of every process of the tree.",
        "",
        md_table(["tool", "rows", "runs", "wall s", "CPU s (process tree)", "processes that downloaded",
                  "sum of peaks"], rows_out), "",
    ])


# --- part 1b: one shard, in process ----------------------------------------------------

SHARD_CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
    tool, plan_file, work, threads = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    settings = json.loads(sys.argv[5])
    plan = pq.read_table(plan_file)
    shard = int(Path(plan_file).stem)
    from img2dataset.downloader import Downloader
    from img2dataset.resizer import Resizer
    from img2dataset.writer import WebDatasetSampleWriter
    from webli.pipeline.config import validate_config
    from webli.stages.crawl.fetch import user_agent_token
    from webli.stages.download import download_shard, install_download_opener
    config = validate_config(settings)
    agent = user_agent_token(config.crawl.user_agent)
    wall, cpu = time.perf_counter(), time.process_time()
    if tool == "ours":
        robots = install_download_opener(True, config.download.max_redirects, config.download.obey_robots,
                                         config.crawl.user_agent, agent, config.download.timeout)
        _, _, stats = download_shard(plan, shard, work, config.download, agent, True, robots)
        ok = stats["successes"]
    else:
        feather.write_feather(plan.select(["url", "caption"]), work / "feed.feather")
        d = config.download
        resizer = Resizer(image_size=d.image_size, resize_mode=d.resize_mode, resize_only_if_bigger=False,
                          encode_format=d.encode_format, encode_quality=d.encode_quality)
        Downloader(sample_writer_class=WebDatasetSampleWriter, resizer=resizer, thread_count=threads,
                   save_caption=True, extract_exif=False, output_folder=str(work), column_list=["url", "caption"],
                   timeout=int(d.timeout), number_sample_per_shard=d.shard_size, oom_shard_count=5,
                   compute_hash="sha256", verify_hash_type=None, encode_format=d.encode_format, retries=0,
                   user_agent_token=None, disallowed_header_directives=d.disallowed_header_directives,
                   ).download_shard((shard, str(work / "feed.feather")))
        ok = json.load(open(work / f"{shard:05d}_stats.json"))["successes"]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"ok": ok, "wall": wall, "cpu": cpu, "hwm_kib": hwm}))
""")


def bench_one_shard(work: Path, plan_dir: Path, shards: list[int], reps: int, processes: int, threads: int,
                    shard_size: int) -> str:
    settings = ours_config(work, processes, threads, shard_size)
    runs: dict[str, list[dict]] = {"ours": [], "img2dataset": []}
    try:
        for rep in range(reps):
            for shard in shards:
                for tool in alternating(["ours", "img2dataset"], rep + shard):
                    out = work / f"one-{tool}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir(parents=True)
                    proc = subprocess.run(
                        [sys.executable, "-c", SHARD_CHILD, "ours" if tool == "ours" else "i2d",
                         str(plan_dir / f"{shard:05d}.parquet"), str(out), str(threads), json.dumps(settings)],
                        capture_output=True, text=True, env={**os.environ, **common.QUIET_ENV})
                    if proc.returncode:
                        raise RuntimeError(proc.stderr[-2000:])
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
                    runs[tool].append(result)
                    log(f"one shard {shard}, {tool}: {result['ok']} ok in {result['wall']:.1f}s, "
                        f"{result['cpu']:.1f} CPU-s")
    except Exception as err:  # noqa: BLE001 - the project API may have moved; report, do not fail the rest
        return f"## One shard in process\n\nSkipped: {type(err).__name__}: {str(err)[-500:]}\n"
    finally:
        for tool in runs:
            shutil.rmtree(work / f"one-{tool}", ignore_errors=True)
    rows = [[tool, len(r), fmt_range([x["ok"] for x in r], 0), fmt_range([x["wall"] for x in r], 2),
             fmt_range([x["ok"] / x["wall"] for x in r]), fmt_range([x["cpu"] for x in r], 2),
             fmt_range([x["ok"] / x["cpu"] for x in r]), fmt_range([mib(x["hwm_kib"]) for x in r], 0, " MiB")]
            for tool, r in runs.items()]
    wall_ratio = [(o["ok"] / o["wall"]) / (i["ok"] / i["wall"]) for o, i in zip(runs["ours"], runs["img2dataset"])]
    cpu_ratio = [(o["ok"] / o["cpu"]) / (i["ok"] / i["cpu"]) for o, i in zip(runs["ours"], runs["img2dataset"])]
    return "\n".join([
        "## One shard in process: `download_shard` vs img2dataset's `Downloader.download_shard`",
        "",
        f"The stage function alone, without CLI, planning or Dask: shard(s) {shards} of the plan above "
        f"({shard_size} rows each), each run in a fresh process, timed from after the imports; ours with its "
        "guarded urllib opener and robots.txt check installed as `download_task` does, img2dataset's "
        f"Downloader with its own Resizer and WebDatasetSampleWriter, {threads} threads, same settings. "
        f"{reps} run(s) per shard and tool, interleaved.",
        "",
        md_table(["tool", "runs", "successes per shard", "wall s", "samples/s (wall)", "CPU s",
                  "samples per CPU-s", "peak RSS"], rows), "",
        f"Ratio ours / img2dataset, samples/s (wall): **{fmt_range(wall_ratio, 2)}**; samples per CPU-s: "
        f"**{fmt_range(cpu_ratio, 2)}**.", "",
    ])


# --- part 1d: the same shard inside a Dask worker -------------------------------------------

DASK_CHILD = textwrap.dedent("""
    import json, os, shutil, sys, time
    mode, root, shard = sys.argv[1], sys.argv[2], int(sys.argv[3])
    raw = json.loads(sys.argv[4])

    def task(shard, raw):
        import resource, time
        from webli.pipeline.config import validate_config
        from webli.pipeline.download import download_task
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall, cpu = time.perf_counter(), time.process_time()
        stats = download_task(shard, validate_config(raw))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = resource.getrusage(resource.RUSAGE_SELF)
        return {"ok": stats["successes"], "wall": wall, "cpu": cpu,
                "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
                "minflt": after.ru_minflt - before.ru_minflt,
                "malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_")}

    def warm():
        import webli.pipeline.download  # noqa: F401

    if __name__ == "__main__":
        from webli.pipeline.cluster import WORKER_ENV
        os.environ.update(WORKER_ENV)  # every mode: the environment dask_client gives its workers
        if mode.startswith("plain"):
            import webli.pipeline.download  # noqa: F401  (imports outside the timing, as in a warm worker)
            result = task(shard, raw)
        elif mode == "webli":
            from webli.pipeline.cluster import dask_client
            from webli.pipeline.config import validate_config
            with dask_client(validate_config(raw).cluster, 1, glibc_defaults=True) as client:
                client.submit(warm, pure=False).result()
                result = client.submit(task, shard, raw, pure=False).result()
        else:
            import dask
            from dask.distributed import Client, LocalCluster
            if mode == "dask-noprofile":
                dask.config.set({"distributed.worker.profile.enabled": False})
            cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
            with Client(cluster) as client:
                client.submit(warm, pure=False).result()
                result = client.submit(task, shard, raw, pure=False).result()
            cluster.close()
        print(json.dumps(result))
""")

DASK_MODES = {
    "plain": "`download_task` called in a fresh process",
    "plain-trim": "the same with MALLOC_TRIM_THRESHOLD_=65536 in its environment, as Dask's nanny sets it",
    "dask": "a one-worker LocalCluster with Dask's defaults (one thread per worker)",
    "dask-noprofile": "the same with `distributed.worker.profile.enabled: false` (the previous "
                      "`dask_client`)",
    "webli": "`webli.pipeline.cluster.dask_client(..., glibc_defaults=True)` as `run_download` starts it now "
             "(profiler off, no MALLOC_TRIM_THRESHOLD_, 1 s tick, 2 s system monitor)",
}


def bench_dask_overhead(work: Path, plan_root: Path, shard: int, reps: int, processes: int, threads: int,
                        shard_size: int) -> str:
    """`download_task` on one shard: plain process vs one Dask worker, set up several ways."""
    modes = list(DASK_MODES)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for rep in range(reps):
        for mode in alternating(modes, rep):
            root = work / f"dask-{mode}"
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(plan_root / "crawl", root / "crawl")
            shutil.copytree(plan_root / "download" / "_plan", root / "download" / "_plan")
            raw = ours_config(root, processes, threads, shard_size)
            env = {**os.environ, **common.QUIET_ENV}
            env.pop("MALLOC_TRIM_THRESHOLD_", None)
            if mode == "plain-trim":
                env["MALLOC_TRIM_THRESHOLD_"] = "65536"
            proc = subprocess.run([sys.executable, "-c", DASK_CHILD, mode, str(root), str(shard), json.dumps(raw)],
                                  capture_output=True, text=True, cwd=work, env=env)
            if proc.returncode:
                return f"## One shard in a Dask worker\n\nSkipped: {proc.stderr[-800:]}\n"
            runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = runs[mode][-1]
            log(f"dask overhead, {mode}: {r['wall']:.1f}s, {r['cpu']:.2f} CPU-s ({r['sys']:.2f} sys), "
                f"{r['minflt']} minor faults")
            shutil.rmtree(root, ignore_errors=True)
    plain_cpu = common.summary([x["cpu"] for x in runs["plain"]])[0]
    rows = [[f"`{mode}`", DASK_MODES[mode], len(r), fmt_range([x["ok"] for x in r], 0),
             "yes" if r[0]["malloc_trim"] else "no", fmt_range([x["wall"] for x in r], 2),
             fmt_range([x["cpu"] for x in r], 2), fmt_range([x["user"] for x in r], 2),
             fmt_range([x["sys"] for x in r], 2), fmt_range([x["minflt"] / 1000 for x in r], 0),
             f"{common.summary([x['cpu'] for x in r])[0] / plain_cpu:.2f}"]
            for mode, r in runs.items()]
    return "\n".join([
        "## One shard: plain process vs inside a Dask worker",
        "",
        f"`download_task({shard})` (download_shard plus reading the plan and writing the tar, Parquet and stats "
        "into the output root), imports done before timing; CPU is the whole process's (all threads, so "
        "a Dask worker's event loop is included), user / system time and minor page faults from "
        f"`getrusage` around the call. Every mode has WORKER_ENV. {reps} run(s) each, interleaved.",
        "",
        md_table(["mode", "set-up", "runs", "successes", "MALLOC_TRIM_THRESHOLD_ set", "wall s", "CPU s",
                  "user s", "system s", "minor faults (thousands)", "CPU vs plain (medians)"], rows), "",
    ])


# --- part 2 -----------------------------------------------------------------------------

def bench_memory(work: Path, crawl_root: Path, n: int, factor: int, shard_size: int, processes: int,
                 threads: int, reps: int) -> str:
    sample = sample_pairs(crawl_pairs(crawl_root), n)
    sizes = [n, n * factor]
    runs: dict[int, list[dict]] = {s: [] for s in sizes}
    for rep in range(reps):
        for size in alternating(sizes, rep):
            out = work / f"rss-{size}-{rep}"
            shutil.rmtree(out, ignore_errors=True)
            write_crawl_dir(out, grown_pairs(sample, size))
            cfg = write_yaml(out / "run.yaml", ours_config(out, processes, threads, shard_size))
            run = run_cli([WEBLI, "download", "--config", str(cfg)], out)
            wall = run.wall
            result = ours_results(out)
            result.update(wall=wall, workers=worker_peaks(run.sampler, threads), driver=mib(run.sampler.root()))
            runs[size].append(result)
            log(f"memory: {size} rows, {result['shards']} shards in {wall:.1f}s, worker peaks "
                f"{', '.join(f'{w:.0f}' for w in result['workers'])} MiB, driver {result['driver']:.0f} MiB")
            shutil.rmtree(out, ignore_errors=True)
    rows = []
    for size in sizes:
        r = runs[size]
        rows.append([size, shard_size, r[0]["shards"], len(r[0]["workers"]),
                     f"{r[0]['shards'] / max(1, len(r[0]['workers'])):.1f}",
                     fmt_range([x["successes"] for x in r], 0), fmt_range([x["wall"] for x in r], 1),
                     fmt_range([w for x in r for w in x["workers"]], 0, " MiB"),
                     fmt_range([max(x["workers"]) for x in r], 0, " MiB"),
                     fmt_range([x["driver"] for x in r], 0, " MiB")])
    table = md_table(["rows", "shard_size", "shards", "worker processes", "shards per worker", "successes",
                      "wall s", "peak RSS per worker, each worker", "largest worker peak",
                      "driver (`webli download`) peak"], rows)
    small, big = ([max(x["workers"]) for x in runs[s]] for s in sizes)
    growth = common.summary(big)[0] / common.summary(small)[0]
    return "\n".join([
        f"## Memory: Dask worker peak RSS at {n} and {n * factor} rows, shard_size {shard_size}",
        "",
        f"`webli download` ({processes} processes x {threads} threads, settings as above) on {n} and "
        f"{n * factor} rows: {n} pairs taken evenly over the realweb crawl's pairs in uid order (so the "
        f"usual mix of icons, screenshots and a few multi-megapixel wallpapers), and for {n * factor} rows "
        "the same pairs 10 times with ' (k)' appended to the alt text (new uid, same image URL), so every "
        "shard holds the same kind of images and only the input size changes. Peak RSS is each process's "
        "VmHWM sampled from /proc every 20 ms; `worker` = the Dask worker processes (spawned by the "
        f"nannies) that ran a download thread pool; each runs its shard tasks one after another. "
        f"{reps} run(s) per size, interleaved.",
        "",
        table, "",
        f"Largest worker peak at {n * factor} rows / at {n} rows: **{growth:.2f}x** for 10x the input "
        f"({'flat' if growth < 1.25 else 'NOT flat'}).", "",
    ])


PLAN_CHILD = textwrap.dedent("""
    import json, sys, time
    from webli.pipeline.config import validate_config
    from webli.pipeline.download import plan_download
    def hwm():
        return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))
    root, shard_size = sys.argv[1], int(sys.argv[2])
    config = validate_config({"output": root, "download": {"shard_size": shard_size}})
    before = hwm()
    t = time.perf_counter()
    summary = plan_download(config)
    print(json.dumps({"seconds": time.perf_counter() - t, "hwm_kib": hwm(), "before_kib": before,
                      "rows": summary["rows"], "shards": summary["shards"]}))
""")


def synthetic_crawl(root: Path, rows: int, shards: int) -> int:
    """A crawl output of `rows` distinct, realistic-sized pairs over `shards` Parquet files; bytes on disk."""
    import datetime

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from webli import schemas
    from webli.pipeline.storage import StageDir

    store = StageDir(str(root), "crawl")
    store.makedirs()
    rng = np.random.default_rng(0)
    per = -(-rows // shards)
    for shard in range(shards):
        count = min(per, rows - shard * per)
        ids = np.arange(shard * per, shard * per + count)
        uid = pa.array([f"{x:032x}" for x in rng.integers(0, 2 ** 63, count)])
        num = pa.array(ids).cast(pa.string())
        url = pc.binary_join_element_wise("http://127.0.0.1:8765/site/images/path/to/picture-", num, ".png", "")
        alt = pc.binary_join_element_wise("a typical alt text of moderate length number ", num, "")
        page = pc.binary_join_element_wise("http://127.0.0.1:8765/site/some/page-", num, ".html", "")
        table = pa.table({
            "uid": uid, "url": url, "alt": alt, "page_url": page,
            "page_title": pa.array(["A page title"] * count), "html_lang": pa.nulls(count, pa.string()),
            "language": pa.array(["en"] * count), "language_score": pa.array(np.full(count, 0.9, np.float32)),
            "fetch_time": pa.array(np.full(count, int(datetime.datetime(2026, 1, 1).timestamp()), np.int64))
            .cast(pa.timestamp("s", tz="UTC")),
        })
        store.write_table(f"{shard:05d}.parquet", table, schemas.CRAWL_PAIRS)
        store.write_stats(shard, {"stage": "crawl", "total": count, "forwarded": count, "dropped_by_reason": {}})
    return sum(p.stat().st_size for p in (root / "crawl").glob("*.parquet"))


def bench_planner(work: Path, sizes: list[int], shard_size: int) -> str:
    rows = []
    for size in sizes:
        root = work / f"plan-{size}"
        shutil.rmtree(root, ignore_errors=True)
        on_disk = synthetic_crawl(root, size, shards=max(1, size // 100_000))
        proc = subprocess.run([sys.executable, "-c", PLAN_CHILD, str(root), str(shard_size)],
                              capture_output=True, text=True, check=True, env={**os.environ, **common.QUIET_ENV})
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append([f"{size:,}", f"{on_disk / 2**20:.1f}", out["shards"], f"{out['seconds']:.1f}",
                     f"{mib(out['before_kib']):.0f}", f"{mib(out['hwm_kib']):.0f}",
                     f"{mib(out['hwm_kib'] - out['before_kib']):.0f}"])
        log(f"planner: {size} pairs -> peak {mib(out['hwm_kib']):.0f} MiB in {out['seconds']:.1f}s")
        shutil.rmtree(root, ignore_errors=True)
    table = md_table(["crawl pairs", "crawl Parquet MiB", "download shards", "plan s",
                      "RSS after imports MiB", "peak RSS MiB", "growth MiB"], rows)
    return "\n".join([
        "## Memory: the download planner (driver side) as the crawl grows",
        "",
        "`plan_download` alone, in a fresh process, on synthetic crawl outputs (distinct pairs with "
        f"realistic string lengths, 100,000 pairs per crawl shard), shard_size {shard_size}. It splits the "
        "crawl pairs by uid range into buckets of at most `PLAN_BUCKET_ROWS` (500,000) pairs, one crawl "
        "shard at a time, then deduplicates, sorts and cuts one bucket at a time: memory grows with the "
        "bucket size, not with the crawl.",
        "",
        table, "",
    ])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2, help="runs per tool, interleaved (default 2)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N pairs (default: all)")
    parser.add_argument("--rss-n", type=int, default=300, help="N for the memory part (N and 10N rows)")
    parser.add_argument("--rss-reps", type=int, default=1)
    parser.add_argument("--plan-sizes", default="100000,1000000",
                        help="crawl sizes for the planner memory part, comma-separated ('' to skip)")
    parser.add_argument("--fixed-rows", type=int, default=20, help="rows for the fixed-cost runs (0: skip)")
    parser.add_argument("--fixed-reps", type=int, default=2)
    parser.add_argument("--one-shard", default="0,1",
                        help="plan shards for the in-process comparison, comma-separated ('' to skip)")
    parser.add_argument("--one-shard-reps", type=int, default=2)
    parser.add_argument("--dask-reps", type=int, default=2,
                        help="runs per mode of the plain-vs-Dask-worker shard comparison (0: skip)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/webli-bench-download"))
    parser.add_argument("--out", type=Path, default=None,
                        help="report file (default benchmarks/results/download.md for a full run)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    common.require_server()
    common.require_warc()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    sections = ["# Download benchmark", "",
                common.machine_note(("webli-builder", "img2dataset", "dask", "distributed", "pillow",
                                     "opencv-python-headless", "opencv-python")), "",
                f"Command: `{common.command_line()}`", ""]
    log("crawling the realweb WARC with `webli crawl`")
    crawl_root, crawl_wall = crawl_once(args.work)
    n_pairs = crawl_pairs(crawl_root).num_rows
    sections += [f"Set-up: `webli crawl` of `{common.REALWEB_WARC}` took {crawl_wall:.1f} s (whole command, "
                 f"Dask included) and gave {n_pairs} pairs.", ""]
    if not args.skip_throughput:
        sections.append(bench_throughput(args.work, crawl_root, args.reps, args.processes, args.threads,
                                         args.shard_size, args.limit))
        if args.fixed_rows:
            sections.append(bench_fixed_cost(args.work, crawl_root, args.fixed_rows, args.fixed_reps,
                                             args.processes, args.threads, args.shard_size))
        plan_dir = args.work / f"ours-{args.reps - 1}" / "download" / "_plan"
        shards = [int(s) for s in args.one_shard.split(",") if s.strip()]
        if shards:
            sections.append(bench_one_shard(args.work, plan_dir, shards, args.one_shard_reps, args.processes,
                                            args.threads, args.shard_size))
        if args.dask_reps:
            sections.append(bench_dask_overhead(args.work, plan_dir.parent.parent, shards[0] if shards else 0,
                                                args.dask_reps, args.processes, args.threads, args.shard_size))
    if not args.skip_memory:
        sections.append(bench_memory(args.work, crawl_root, args.rss_n, 10, args.shard_size, args.processes,
                                     args.threads, args.rss_reps))
        sizes = [int(s) for s in args.plan_sizes.split(",") if s.strip()]
        if sizes:
            sections.append(bench_planner(args.work, sizes, args.shard_size))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    sections += [f"Load average at the end of the benchmark: {load}.", ""]
    report = "\n".join(sections)
    full = not (args.skip_throughput or args.skip_memory)
    write_report(report, args.out or (common.RESULTS_DIR / "download.md" if full else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
