"""Does the search still find real copies when the eval set is large? The benchmark's real copies in a 1M index.

    .venv/bin/python benchmarks/bench_dedup_scale_real.py [--items 1000000] [--split bench]
                                                          [--out benchmarks/results/dedup_scale_real.md]

bench_dedup.py searches 300 eval images exactly; bench_dedup_scale.py times a
1M-image index of random vectors, whose recall is the worst case of an
inverted file (no structure at all) and whose distractors are far from every
query (random 64-d vectors are nearly orthogonal). Neither says whether a
real copy's eval image is still among the neighbours the stage checks once
the eval set holds a million images. This benchmark puts the real eval images
of bench_dedup.py (300) among `--items` distractors and searches with the
real copies (3,300 positives), as `match.search_neighbours` does: the DCT
views' `image_neighbours` nearest and the learned embedding's
`image_learned_neighbours` nearest, each in its inverted file, those with
learned cosine >= `image_min_similarity` checked.

The distractors are drawn from the real vectors' distribution, fitted on
every image of the realweb corpus's training families (never the
benchmark's): per distractor a mean view from a Gaussian fitted to the real
images' mean views, its EVAL_VIEWS views that mean plus a Gaussian fitted to
the real views' spread around their own image's mean (views of one image are
alike); the learned vector from a Gaussian fitted to the real learned
vectors; all normalised, then stored as the index stores real ones. So the
distractors crowd the same part of the sphere as real images do, which random
vectors do not. What they lack is real near-duplicates of each other.

Reported per pair of probes (`dedup.index_probe` for the DCT views, `dedup.index_learned_probe` for the
learned index): the share of copies whose eval image is among the
neighbours checked (the baseline: the same search over the 300 eval images
alone, in the same process), by edit chain; and the number of neighbours an
unrelated image (the benchmark's easy negatives) gets checked, which is what
the check's cost per candidate scales with.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from collections import Counter
from pathlib import Path

# Before numpy: OpenBLAS reads these when it loads (set after, the BLAS kept a thread per core).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dedup import (  # noqa: E402
    bench_candidate,
    build_benchmark,
    cache_file,
    decide,
    eval_originals,
    eval_twins,
    mark_twins,
    names_true_item,
)
from bench_dedup_corpus import is_bench_family, load_rgb, scan_corpus  # noqa: E402
from bench_dedup_scale import peak_rss_mib  # noqa: E402
from common import REALWEB_WWW, RESULTS_DIR, command_line, log, machine_note, md_table  # noqa: E402
from tqdm import tqdm  # noqa: E402

from webli.stages.dedup import descriptor, embedding  # noqa: E402
from webli.stages.dedup.evalsets import ImagePart  # noqa: E402
from webli.stages.dedup.index import (  # noqa: E402
    LEARNED_HAMMING_MAX,
    ImageIndex,
    build_image_part,
    image_features,
    search_index,
)
from webli.stages.dedup.match import HASH_MIN_SIMILARITY, MatchSettings  # noqa: E402

CHUNK = 100_000  # distractors drawn at a time
PROBES = ((4, 4), (1, 64), (4, 64), (4, 128), (4, 256), (16, 64))  # (dedup.index_probe, dedup.index_learned_probe)


class Gaussian:
    """A multivariate normal fitted to rows of vectors (the caller normalises what it samples)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.mean = rows.mean(0)
        self.factor = np.linalg.cholesky(np.cov(rows, rowvar=False) + 1e-6 * np.eye(rows.shape[1]))

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return self.mean + rng.standard_normal((count, len(self.mean))) @ self.factor.T


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def real_features(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(images x EVAL_VIEWS x DIM DCT views, images x DIM learned vectors) of corpus images, as the index makes
    them."""
    views, learned = [], []
    for start in tqdm(range(0, len(paths), 64), "describing images", unit="batch of 64"):
        images = [load_rgb(p, max_side=1024) for p in paths[start:start + 64]]
        part_views, _, _, _, _, part_learned = image_features(images)
        views.append(part_views.astype(np.float32))
        learned.append(part_learned.astype(np.float32))
    return np.concatenate(views), np.concatenate(learned)


def distractors(views: np.ndarray, learned: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` synthetic items drawn from the real vectors' distribution (see the module docstring), as float16."""
    rng = np.random.default_rng(seed)
    means = views.mean(1)
    between = Gaussian(means)
    within = Gaussian((views - means[:, None]).reshape(-1, views.shape[2]))
    within.mean[:] = 0.0  # views spread around their own image's mean (the fitted mean is 0 but for rounding)
    learned_fit = Gaussian(learned)
    out_views = np.empty((count, views.shape[1], views.shape[2]), np.float16)
    out_learned = np.empty((count, learned.shape[1]), np.float16)
    for start in range(0, count, CHUNK):
        size = min(CHUNK, count - start)
        centre = between.sample(rng, size)
        spread = within.sample(rng, size * views.shape[1]).reshape(size, views.shape[1], -1)
        out_views[start:start + size] = unit(centre[:, None] + spread)
        out_learned[start:start + size] = unit(learned_fit.sample(rng, size))
    return out_views, out_learned


def build_indexes(views: np.ndarray, learned: np.ndarray) -> tuple[ImageIndex, float]:
    """The DCT-view index with its learned index (as `index.assemble_image_index` makes them), and the build
    seconds."""
    items = pa.array([str(i) for i in range(len(views))], pa.string())
    started = time.perf_counter()
    index = search_index(items, views)
    index.learned = search_index(items, learned[:, None], LEARNED_HAMMING_MAX)
    return index, time.perf_counter() - started


def checked_rows(index: ImageIndex, learned: np.ndarray, query_views: list[np.ndarray],
                 query_learned: list[np.ndarray], probes: tuple[int, int], settings: MatchSettings) -> list[set[int]]:
    """Per query, the rows `match.search_neighbours` would check (`learned`: every row's learned vector;
    `probes`: the DCT and the learned index's)."""
    hashed = index.search(query_views, settings.neighbours, probes[0], HASH_MIN_SIMILARITY)
    embedded = index.learned.search(query_learned, settings.learned_neighbours, probes[1], settings.min_similarity)
    out = []
    for found_hashed, found_embedded, vectors in zip(hashed, embedded, query_learned):
        rows = np.array(sorted({row for row, _ in found_hashed + found_embedded}), np.int64)
        cosine = (learned[rows].astype(np.float32) @ vectors.T).max(1) if len(rows) else np.zeros(0)
        out.append({int(r) for r, c in zip(rows, cosine) if c >= settings.min_similarity})
    return out


def flagged_labels(benchmark: dict, split: str, settings: MatchSettings) -> list[int | None] | None:
    """Per positive (in candidate order), the eval image (its label) the stage flags it with right among the 300
    eval images (None: not flagged right), from bench_dedup.py's cached outcomes; None without them."""
    cached = cache_file("outcomes", split, len(benchmark["evals"]))
    if not cached.is_file():
        log(f"no {cached}: run bench_dedup.py --split {split} first to measure the stage's recall at this size")
        return None
    outcomes, _ = pickle.loads(cached.read_bytes())
    label_of_row = {o["true_row"]: c["label"] for o, c in zip(outcomes, benchmark["candidates"]) if c["label"] >= 0}
    label_row = [-1] * len(benchmark["evals"])
    for row, label in label_of_row.items():
        label_row[label] = row
    mark_twins(benchmark, outcomes, label_row, eval_twins(eval_originals(benchmark)))
    decide(outcomes, settings.min_inliers, settings.min_agreement, settings.max_local_change,
           settings.min_verifier_score)
    return [label_of_row[o["match_row"]] if names_true_item(o, o["match_row"]) else None
            for o, c in zip(outcomes, benchmark["candidates"]) if c["label"] >= 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000, help="eval images in the index, the real ones included")
    parser.add_argument("--split", default="bench", choices=("bench", "validation"))
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args()
    out = arguments.out or RESULTS_DIR / "dedup_scale_real.md"
    settings = MatchSettings()

    benchmark = build_benchmark(300, arguments.split)
    log("describing the benchmark's eval images (as the stage indexes them) and candidates")
    part = build_image_part(ImagePart("files", tuple(str(REALWEB_WWW / p) for p in benchmark["evals"]),
                                      str(REALWEB_WWW)))
    eval_views, eval_learned = part.views.astype(np.float32), part.embeddings.astype(np.float32)
    positives = [c for c in benchmark["candidates"] if c["label"] >= 0]
    unrelated = [c for c in benchmark["candidates"] if c["kind"] == "easy"]
    query_images = [bench_candidate(c["sample"]).image for c in tqdm(positives + unrelated, "candidates")]
    query_views = [descriptor.query_views(image) for image in query_images]
    query_learned = embedding.query_vectors(query_images)
    del query_images

    training = [i.path for i in scan_corpus() if not is_bench_family(i.family)]
    log(f"fitting the distractors' distribution on {len(training):,} training-family images")
    fit_views, fit_learned = real_features(training)
    synthetic_views, synthetic_learned = distractors(fit_views, fit_learned, arguments.items - len(eval_views))
    all_views = np.concatenate([eval_views.astype(np.float16), synthetic_views])
    all_learned = np.concatenate([eval_learned.astype(np.float16), synthetic_learned])
    del synthetic_views, synthetic_learned

    alone, _ = build_indexes(eval_views.astype(np.float16), eval_learned.astype(np.float16))
    log(f"building the index of {len(all_views):,} images")
    large, build_seconds = build_indexes(all_views, all_learned)
    del all_views

    positive_rows = [c["label"] for c in positives]
    kinds = [c["kind"] for c in positives]
    count = len(positives)
    runs = {"300 eval images alone (exact, as bench_dedup.py)":
            checked_rows(alone, eval_learned, query_views, query_learned, (1, 1), settings)}
    seconds = {}
    for probes in PROBES:
        started = time.process_time()
        runs[f"{len(large):,} images, probes {probes[0]} / {probes[1]}"] = checked_rows(
            large, all_learned, query_views, query_learned, probes, settings)
        seconds[probes] = time.process_time() - started
        log(f"probes {probes}: {seconds[probes]:.1f} CPU s")

    flagged = flagged_labels(benchmark, arguments.split, settings)
    chains = list(dict.fromkeys(kinds))
    found_rows, load_rows = [], []
    for name, rows in runs.items():
        found = [row in checked for row, checked in zip(positive_rows, rows[:count])]
        by_chain = Counter(kind for kind, hit in zip(kinds, found) if hit)
        recall = "" if flagged is None else \
            f"{np.mean([label is not None and label in checked for label, checked in zip(flagged, rows)]):.4f}"
        found_rows.append([name, f"{np.mean(found):.3f}", *(f"{by_chain[c] / kinds.count(c):.3f}" for c in chains),
                           recall])
        checked = np.array([len(r) for r in rows[count:]])
        load_rows.append([name, f"{np.mean(checked > 0):.3f}", f"{checked.mean():.2f}",
                          f"{np.percentile(checked, 90):.0f}"])
    baseline = np.mean([row in checked for row, checked in zip(positive_rows, runs[next(iter(runs))][:count])])
    lines = [
        "# Dedup search at scale with real copies: the benchmark's eval images among 1M distractors",
        "",
        f"Command: `{command_line()}`",
        "",
        machine_note(("numpy", "opencv-python-headless", "torch")),
        "",
        f"Eval images: the {len(eval_views)} of bench_dedup.py ({arguments.split} split) among "
        f"{len(large) - len(eval_views):,} distractors drawn from the real vectors' distribution (fitted on "
        f"{len(training):,} training-family images; see the module docstring). Queries: the "
        f"{count:,} real copies, and {len(unrelated):,} unrelated images (the easy negatives). Search as the stage "
        f"does: DCT views' {settings.neighbours} nearest + learned {settings.learned_neighbours} nearest, learned "
        f"cosine >= {settings.min_similarity}. One core.",
        "",
        md_table(["what", "value"], [
            ["index build (DCT views and learned, k-means + assignment + codes)", f"{build_seconds:,.0f} s"],
            ["peak RSS of this process", f"{peak_rss_mib():,.0f} MiB"],
            *[[f"search of {len(query_views):,} queries, probes {p[0]} / {p[1]} (CPU, both indexes)",
               f"{seconds[p]:.1f} s ({len(query_views) / seconds[p]:,.0f} queries/s)"] for p in PROBES],
        ]),
        "",
        "Copies whose eval image is among the neighbours checked (the check can only flag those):",
        "",
        md_table(["index", "all copies", *chains, "the stage's recall (flagged right among 300, and that eval image "
                                                  "still checked)"], found_rows),
        "",
        f"Against the 300 eval images alone ({baseline:.3f}): "
        + "; ".join(f"probes {p[0]} / {p[1]} keep {float(rows[1]) / baseline:.3f} of it"
                    for p, rows in zip(PROBES, found_rows[1:]))
        + ".",
        "",
        "Unrelated images: how many neighbours each gets checked (each check costs about 10 ms on one core; "
        "`dedup.md`):",
        "",
        md_table(["index", "share with a neighbour checked", "neighbours checked, mean", "90th percentile"],
                 load_rows),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
