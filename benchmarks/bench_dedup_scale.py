"""The dedup index at scale: a synthetic 1M-image index, its memory, build time and queries per second.

    .venv/bin/python benchmarks/bench_dedup_scale.py [--items 1000000] [--queries 2000]
                                                     [--out benchmarks/results/dedup_scale.md]

Synthetic: every image gets EVAL_VIEWS random unit view vectors (stored as
int8, as the index does); queries are QUERY_VIEWS views of which one is
a noisy copy (cosine about 0.95) of a view of a random indexed image, so the
recall of the inverted file is measured too. Random vectors have no cluster
structure, the worst case for an inverted file. Reported: memory of the
broadcast part, build time (k-means + assignment), queries/s on one core
(search only: the descriptor of a real image is timed in dedup.md) against
the brute-force scan of the same index in the same process, and recall@1.
The text index is measured likewise (datasketch MinHash LSH over synthetic
captions). Decoding is excluded everywhere.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, command_line, log, machine_note, md_table  # noqa: E402

from webli.stages.dedup import descriptor  # noqa: E402
from webli.stages.dedup.index import ImageIndex, inverted_lists, quantise  # noqa: E402
from webli.stages.dedup.text import CaptionIndex  # noqa: E402

CHUNK = 1_000_000


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, descriptor.DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def synthetic_views(items: int, seed: int = 0) -> np.ndarray:
    """items * EVAL_VIEWS random unit vectors as float16, made in chunks to bound the temporary memory."""
    rng = np.random.default_rng(seed)
    total = items * descriptor.EVAL_VIEWS
    out = np.empty((total, descriptor.DIM), np.float16)
    for start in range(0, total, CHUNK):
        out[start:start + CHUNK] = unit_rows(rng, min(CHUNK, total - start))
    return out


def build(items: int) -> tuple[ImageIndex, float, np.ndarray]:
    """The search index over synthetic views; returns it, the build seconds and the unsorted views."""
    flat = synthetic_views(items)
    started = time.perf_counter()
    centroids, order, offsets = inverted_lists(flat)
    rows = (np.arange(len(flat), dtype=np.int64) // descriptor.EVAL_VIEWS).astype(np.int32)
    vectors, scales = quantise(flat[order])
    index = ImageIndex(pa.array([f"item-{i}" for i in range(items)], pa.string()), vectors, scales, rows[order],
                       centroids, offsets)
    return index, time.perf_counter() - started, flat


def queries(flat: np.ndarray, count: int, seed: int = 1) -> tuple[list[np.ndarray], np.ndarray]:
    """Query view sets, each hiding one noisy copy of a random indexed view; and the image each targets."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, len(flat), count)
    out = []
    for target in targets:
        views = unit_rows(rng, descriptor.QUERY_VIEWS)
        views[0] = flat[target].astype(np.float32) + 0.3 * unit_rows(rng, 1)[0]
        views[0] /= np.linalg.norm(views[0])
        out.append(views)
    return out, targets // descriptor.EVAL_VIEWS


def timed_search(index: ImageIndex, query_sets: list[np.ndarray], probe: int) -> tuple[float, float]:
    """(queries per second, recall@1 of the hidden image) for one probe setting."""
    started = time.perf_counter()
    found = index.search(query_sets, neighbours=8, probe=probe, min_similarity=0.5)
    seconds = time.perf_counter() - started
    return len(query_sets) / seconds, found


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
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "dedup_scale.md")
    arguments = parser.parse_args()
    log(f"building a synthetic index of {arguments.items:,} images")
    index, build_seconds, flat = build(arguments.items)
    arrays = index.arrays()
    memory = sum(a.nbytes for a in arrays.values()) + index.items.nbytes
    log(f"built in {build_seconds:.0f} s; {memory / 2 ** 20:,.0f} MiB")
    query_sets, targets = queries(flat, arguments.queries)
    del flat
    rows = []
    for probe in (1, 2, 4, 8):
        rate, found = timed_search(index, query_sets, probe)
        recall = float(np.mean([bool(f) and f[0][0] == t for f, t in zip(found, targets)]))
        rows.append([probe, f"{rate:,.0f}", f"{recall:.3f}"])
        log(f"probe {probe}: {rate:,.0f} queries/s, recall@1 {recall:.3f}")
    baseline = brute_force_rate(index, query_sets, 5)
    grid = index.centroids.shape[0]
    text = text_index_numbers(arguments.captions)
    lines = [
        "# Dedup index at scale (synthetic)",
        "",
        f"Command: `{command_line()}`",
        "",
        machine_note(("numpy", "scipy", "datasketch")),
        "",
        "Single run (not repeated: the build alone takes minutes); queries/s vary with the machine's load.",
        "",
        f"Image index: {arguments.items:,} images x {descriptor.EVAL_VIEWS} views = {len(index.rows):,} int8 "
        f"64-d vectors in {grid * grid:,} lists ({grid} coarse cells x {grid}); each query has "
        f"{descriptor.QUERY_VIEWS} views. One core (OMP/BLAS threads 1).",
        "",
        md_table(["what", "value"], [
            ["broadcast part in memory (vectors, rows, centroids, offsets, item ids)", f"{memory / 2 ** 20:,.0f} MiB"],
            ["of which view vectors", f"{index.vectors.nbytes / 2 ** 20:,.0f} MiB"],
            ["build time (k-means on a sample + two-level assignment)", f"{build_seconds:,.0f} s"],
            ["peak RSS of this process", f"{peak_rss_mib():,.0f} MiB"],
            ["brute-force scan of the same index (baseline)", f"{baseline:,.2f} queries/s"],
        ]),
        "",
        md_table(["lists scanned per query view (`dedup.index_probe`)", "queries/s (one core)",
                  "recall@1 of the hidden copy"], rows),
        "",
        "Text index (datasketch MinHashLSH, threshold 0.8, 128 permutations, 5-character shingles; synthetic "
        "10-word captions; queries are exact copies with one character added):",
        "",
        md_table(["captions", "build s", "pickled size MiB (what is broadcast)", "queries/s", "found"], [text]),
    ]
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text("\n".join(lines) + "\n")
    print(arguments.out.read_text())


if __name__ == "__main__":
    main()
