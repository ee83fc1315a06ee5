"""The dedup index at scale: a synthetic 1M-image index, its memory, build time and queries per second.

    .venv/bin/python benchmarks/bench_dedup_scale.py [--items 1000000] [--queries 2000]
                                                     [--out benchmarks/results/dedup_scale.md]

Synthetic: every image gets EVAL_VIEWS random unit view vectors (stored as
int8, as the index does, plus their 64-bit sign codes); queries are
QUERY_VIEWS views of which only one is a noisy copy of a view of a random
indexed image (cosine about 0.96 by default; --noise sets it), so the recall
of the inverted file is measured too. Random vectors have no cluster
structure, the worst case for an inverted file, and a real edited copy
usually lines up several view pairs, not one. Reported: memory of the
broadcast part, build time (k-means + assignment + codes), queries/s on one
core (search only: the descriptor of a real image is timed in dedup.md)
against the brute-force scan of the same index in the same process, and
recall@1, per `probe`, also at two other noise levels. Queries/s are given
per CPU second of this process (one thread: what one core does, whatever
else the machine runs) and per wall-clock second.
With --learned the index is the learned embedding's (embedding.py): one view
per image, queries of two views (the candidate and its mirror image).
The text index is measured likewise (datasketch MinHash LSH over synthetic
captions). Decoding is excluded everywhere.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import resource
import sys
import time
from pathlib import Path

# Before numpy: OpenBLAS reads these when it loads (set after, the BLAS kept a thread per core).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, command_line, log, machine_note, md_table  # noqa: E402

from webli.stages.dedup import descriptor  # noqa: E402
from webli.stages.dedup.index import (  # noqa: E402
    LEARNED_HAMMING_MAX,
    QUERY_BATCH,
    VIEW_HAMMING_MAX,
    ImageIndex,
    inverted_lists,
    quantise,
    sign_codes,
)
from webli.stages.dedup.text import CaptionIndex  # noqa: E402

CHUNK = 1_000_000


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, descriptor.DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def synthetic_views(items: int, views_per_item: int, seed: int = 0) -> np.ndarray:
    """items * views_per_item random unit vectors as float16, made in chunks to bound the temporary memory."""
    rng = np.random.default_rng(seed)
    total = items * views_per_item
    out = np.empty((total, descriptor.DIM), np.float16)
    for start in range(0, total, CHUNK):
        out[start:start + CHUNK] = unit_rows(rng, min(CHUNK, total - start))
    return out


def build(items: int, views_per_item: int) -> tuple[ImageIndex, float, np.ndarray]:
    """The search index over synthetic views; returns it, the build seconds and the unsorted views."""
    flat = synthetic_views(items, views_per_item)
    started = time.perf_counter()
    centroids, order, offsets = inverted_lists(flat)
    rows = (np.arange(len(flat), dtype=np.int64) // views_per_item).astype(np.int32)
    vectors, scales = quantise(flat[order])
    index = ImageIndex(pa.array([f"item-{i}" for i in range(items)], pa.string()), vectors, scales, rows[order],
                       centroids, offsets, codes=sign_codes(flat[order]),
                       hamming_max=LEARNED_HAMMING_MAX if views_per_item == 1 else VIEW_HAMMING_MAX)
    return index, time.perf_counter() - started, flat


def queries(flat: np.ndarray, count: int, shape: tuple[int, int], seed: int = 1,
            noise: float = 0.3) -> tuple[list[np.ndarray], np.ndarray]:
    """Query view sets (`shape`: views per indexed image, views per query), each hiding one noisy copy of a
    random indexed view (cosine about 1 / sqrt(1 + noise ** 2)); and the image each targets."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, len(flat), count)
    out = []
    for target in targets:
        views = unit_rows(rng, shape[1])
        views[0] = flat[target].astype(np.float32) + noise * unit_rows(rng, 1)[0]
        views[0] /= np.linalg.norm(views[0])
        out.append(views)
    return out, targets // shape[0]


def timed_search(index: ImageIndex, query_sets: list[np.ndarray], probe: int) -> tuple[float, float, list]:
    """(queries per CPU second, queries per wall-clock second, results) for one probe setting."""
    started, cpu = time.perf_counter(), time.process_time()
    found = index.search(query_sets, neighbours=8, probe=probe, min_similarity=0.5)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return len(query_sets) / cpu_seconds, len(query_sets) / seconds, found


def recall_at_1(found: list, targets: np.ndarray) -> float:
    return float(np.mean([bool(f) and f[0][0] == t for f, t in zip(found, targets)]))


def cosine(noise: float) -> float:
    return 1 / math.sqrt(1 + noise ** 2)


def brute_force_rate(index: ImageIndex, query_sets: list[np.ndarray], count: int) -> float:
    """Queries per second of scanning every view (the obvious baseline), on a few queries."""
    flat = ImageIndex(index.items, index.vectors, index.scales, index.rows,
                      np.zeros((0, 0, descriptor.DIM), np.float32), np.array([0, len(index.rows)], np.int64))
    started = time.perf_counter()
    flat.search(query_sets[:count], neighbours=8, probe=1, min_similarity=0.5)
    return count / (time.perf_counter() - started)


def text_index_numbers(captions: int) -> list:
    rng = np.random.default_rng(2)
    words = [f"w{i}" for i in range(5000)]
    texts = [" ".join(rng.choice(words, 10)) for _ in range(captions)]
    started = time.perf_counter()
    index = CaptionIndex([str(i) for i in range(captions)], texts, 0.8, 5, 128)
    build_seconds = time.perf_counter() - started
    size_mib = len(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL)) / 2 ** 20
    probes = [t + "!" for t in texts[:2000]]
    started = time.perf_counter()
    found = index.match(probes)
    rate = len(probes) / (time.perf_counter() - started)
    right = sum(1 for i, m in enumerate(found) if m and m.item == str(i)) / len(probes)
    return [f"{captions:,}", f"{build_seconds:.1f}", f"{size_mib:,.0f}", f"{rate:,.0f}", f"{right:.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--captions", type=int, default=200_000)
    parser.add_argument("--noise", type=float, default=0.3, help="noise of the hidden view (0.3: cosine 0.96)")
    parser.add_argument("--learned", action="store_true", help="the learned embedding's index (1 view per image)")
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    shape = (1, 2) if arguments.learned else (descriptor.EVAL_VIEWS, descriptor.QUERY_VIEWS)
    out = arguments.out or RESULTS_DIR / ("dedup_scale_learned.md" if arguments.learned else "dedup_scale.md")
    log(f"building a synthetic index of {arguments.items:,} images")
    index, build_seconds, flat = build(arguments.items, shape[0])
    arrays = index.arrays()
    memory = sum(a.nbytes for a in arrays.values()) + index.items.nbytes
    log(f"built in {build_seconds:.0f} s; {memory / 2 ** 20:,.0f} MiB")
    query_sets, targets = queries(flat, arguments.queries, shape, noise=arguments.noise)
    other_noise = [(n, queries(flat, arguments.queries, shape, seed=2 + i, noise=n))
                   for i, n in enumerate((0.15, 0.5))]
    del flat
    index.search(query_sets[:64], neighbours=8, probe=1, min_similarity=0.5)  # warm-up (derived arrays)
    rows = []
    for probe in (1, 2, 4, 8, 16) + ((64, 256) if arguments.learned else ()):  # 256: dedup.index_learned_probe
        rates = [timed_search(index, query_sets, probe) for _ in range(3)]
        cpu_rate, wall_rate = float(np.median([r[0] for r in rates])), float(np.median([r[1] for r in rates]))
        recall = recall_at_1(rates[0][2], targets)
        others = [recall_at_1(index.search(q, 8, probe, 0.5), t) for _, (q, t) in other_noise]
        rows.append([probe, f"{cpu_rate:,.0f}", f"{wall_rate:,.0f}", f"{recall:.3f}", *(f"{r:.3f}" for r in others)])
        log(f"probe {probe}: {cpu_rate:,.0f} queries per CPU second ({wall_rate:,.0f} per wall second), "
            f"recall@1 {recall:.3f}, other noise {others}")
    baseline = brute_force_rate(index, query_sets, 5)
    grid = index.centroids.shape[0]
    text = text_index_numbers(arguments.captions)
    kind = "learned-embedding" if arguments.learned else "DCT-view (hash path)"
    probe_setting = "index_learned_probe" if arguments.learned else "index_probe"
    lines = [
        f"# Dedup index at scale (synthetic): the {kind} index",
        "",
        f"Command: `{command_line()}`",
        "",
        machine_note(("numpy", "scipy", "datasketch")),
        "",
        "The build is a single run (it takes minutes); every queries/s figure is the median of 3 runs over "
        f"{len(query_sets):,} queries.",
        "",
        f"Image index: {arguments.items:,} images x {shape[0]} views = {len(index.rows):,} int8 "
        f"64-d vectors and 64-bit codes in {grid * grid:,} lists ({grid} coarse cells x {grid}); each query has "
        f"{shape[1]} views, searched {QUERY_BATCH} at a time; codes within "
        f"{index.hamming_max} bits get the exact cosine. One core (OMP/BLAS threads 1). Median of 3 runs.",
        "",
        md_table(["what", "value"], [
            ["broadcast part in memory (vectors, codes, rows, centroids, offsets, item ids)",
             f"{memory / 2 ** 20:,.0f} MiB"],
            ["of which view vectors (int8, for the exact cosine)", f"{index.vectors.nbytes / 2 ** 20:,.0f} MiB"],
            ["of which sign codes (what a scan reads)", f"{index.codes.nbytes / 2 ** 20:,.0f} MiB"],
            ["build time (k-means on a sample + two-level assignment + codes)", f"{build_seconds:,.0f} s"],
            ["peak RSS of this process", f"{peak_rss_mib():,.0f} MiB"],
            ["brute-force scan of the same index (baseline)", f"{baseline:,.2f} queries/s"],
        ]),
        "",
        md_table([f"lists scanned per query view (`dedup.{probe_setting}`)", "queries per CPU second (one core)",
                  "queries per wall second", f"recall@1, hidden view at cosine {cosine(arguments.noise):.2f}",
                  *(f"recall@1 at cosine {cosine(n):.2f}" for n, _ in other_noise)], rows),
        "",
        "Text index (datasketch MinHashLSH, threshold 0.8, 128 permutations, 5-character shingles; synthetic "
        "10-word captions; queries are exact copies with one character added):",
        "",
        md_table(["captions", "build s", "pickled size MiB (what is broadcast)", "queries/s", "found"], [text]),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
