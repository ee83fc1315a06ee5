"""The select stage's threshold search at growing scale: rounds, shard visits, driver memory, exactness.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_score_select.py            # 1M and 4M candidates
    .venv/bin/python benchmarks/bench_score_select.py --sizes 1000000

Synthetic candidates in shards of 10,000 (keys in the download stage's
format, scores float32 from a normal distribution around 0.25, or rounded to
two decimals for the heavy-ties case), searched with the stage's own
functions (`start_searches`, `shard_counts`, `search_thresholds`) and an
in-memory count round instead of Dask. Reported: rounds, shard visits (each
a read of one candidate file on the cluster), the most histogram entries the
driver held at once, the time per shard visit (the work of one Dask task),
and a check against the obvious baseline, a global sort of every (score, key)
in one process (whose memory grows with the input, unlike the search's).

The Markdown report goes to stdout and benchmarks/results/score_select.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from common import log, md_table  # noqa: E402

from webli.stages.select.threshold import (  # noqa: E402
    ShardCandidates,
    keep_count,
    score_codes,
    search_thresholds,
    selection_mask,
    shard_counts,
    start_searches,
)

SHARD_SIZE = 10_000
LANGUAGES = np.array(["en", "de", "fr", "ja", "ru", "sw", "yo", "is"], dtype=object)
LANGUAGE_WEIGHTS = np.array([0.5, 0.15, 0.12, 0.1, 0.08, 0.03, 0.01, 0.01])


def make_shards(total: int, ties: bool, seed: int) -> list[ShardCandidates]:
    rng = np.random.default_rng(seed)
    shards = []
    for shard_id in range(total // SHARD_SIZE):
        scores = rng.normal(0.25, 0.05, SHARD_SIZE).astype(np.float32)
        if ties:
            scores = np.round(scores, 2).astype(np.float32)
        keys = np.array([f"{shard_id * 10**5 + row:010d}" for row in range(SHARD_SIZE)], dtype=object)
        groups = rng.choice(LANGUAGES, SHARD_SIZE, p=LANGUAGE_WEIGHTS)
        shards.append(ShardCandidates(score_codes(scores), keys, groups))
    return shards


def run_search(shards: list[ShardCandidates], fraction: float, per_language: bool) -> dict:
    """The stage's search with an in-memory count round; measures visits, driver entries, task time."""
    views = [ShardCandidates(s.codes, s.keys, s.groups if per_language else None) for s in shards]
    if per_language:
        languages, counts = np.unique(np.concatenate([s.groups for s in shards]), return_counts=True)
        eligible = dict(zip(languages.tolist(), counts.tolist()))
    else:
        eligible = {"*": sum(len(s.codes) for s in shards)}
    searches = start_searches(eligible, fraction, per_language)
    visits, task_seconds, peak_entries = [0], [0.0], [0]

    def count_round(queries, shard_ids):
        for shard_id in shard_ids:
            started = time.perf_counter()
            counts = shard_counts(views[shard_id], queries)
            task_seconds[0] += time.perf_counter() - started
            visits[0] += 1
            yield shard_id, counts
        peak_entries[0] = max(peak_entries[0], sum(len(s.counts) for s in searches.values()))

    started = time.perf_counter()
    thresholds, rounds = search_thresholds(searches, list(range(len(views))), count_round)
    wall = time.perf_counter() - started
    kept = sum(int(selection_mask(v, thresholds).sum()) for v in views)
    return {"rounds": rounds, "visits": visits[0], "task_ms": 1e3 * task_seconds[0] / max(visits[0], 1),
            "wall": wall, "peak_entries": peak_entries[0], "kept": kept, "thresholds": thresholds,
            "expected": sum(keep_count(n, fraction, per_language) for n in eligible.values()), "views": views}


def sort_baseline(shards: list[ShardCandidates], fraction: float) -> tuple[float, set]:
    """Global exact top-k by sorting everything in one process: (seconds, kept keys)."""
    started = time.perf_counter()
    codes = np.concatenate([s.codes for s in shards])
    keys = np.concatenate([s.keys for s in shards])
    order = np.lexsort((keys, codes))
    kept = set(keys[order[:keep_count(len(codes), fraction)]].tolist())
    return time.perf_counter() - started, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--fraction", type=float, default=0.1)
    args = parser.parse_args()
    rows = []
    for total in args.sizes:
        for ties in (False, True):
            log(f"{total:,} candidates, ties={ties}")
            shards = make_shards(total, ties, seed=total)
            sort_seconds, sorted_kept = sort_baseline(shards, args.fraction)
            for per_language in (False, True):
                result = run_search(shards, args.fraction, per_language)
                if not per_language:
                    kept_keys = {k for v in result["views"]
                                 for k in v.keys[selection_mask(v, result["thresholds"])].tolist()}
                    exact = "yes" if kept_keys == sorted_kept else "NO"
                else:
                    exact = "yes" if result["kept"] == result["expected"] else "NO"
                rows.append([f"{total:,}", len(shards), "2 decimals" if ties else "float32",
                             "per language" if per_language else "global", result["rounds"], result["visits"],
                             f"{result['task_ms']:.2f}", f"{result['peak_entries']:,}", result["kept"], exact,
                             f"{result['wall']:.1f}", "" if per_language else f"{sort_seconds:.1f}"])
    table = md_table(["candidates", "shards", "scores", "mode", "rounds", "shard visits", "ms per visit",
                      "driver histogram entries (peak)", "kept", "exact", "search s (1 core)",
                      "global sort s (1 process)"], rows)
    text = "\n".join([
        "# Select: the exact threshold search at scale", "",
        common.machine_note(("numpy", "pyarrow")), "",
        f"Command: `{common.command_line()}`", "",
        f"Fraction {args.fraction}; shards of {SHARD_SIZE:,} candidates; one core, no Dask (the count round "
        "runs in memory). 'exact' compares the kept set with a global sort (global mode) or the kept count "
        "with floor/ceil of fraction x eligible per group (per language). Every candidate is visited in the two "
        "score rounds; only shards holding samples at the threshold score are visited in the key rounds; the "
        "census round (a third full visit) runs only when ties straddle the cut.", "",
        table, "",
        "At 10B candidates in 1M shards: the same number of rounds (it depends on the digits, not the size), "
        "each full round one read of every candidate file (key, score, language: ~15 bytes per sample "
        "compressed), the driver's histograms bounded by 65,536 entries per group, and each worker holding one "
        "shard. The global sort needs every (score, key) in one place.",
    ])
    print(text)
    (common.RESULTS_DIR / "score_select.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
