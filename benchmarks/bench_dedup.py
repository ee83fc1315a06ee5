"""Eval-set image dedup on real images: recall and precision of the stage's matcher vs global hashes.

    .venv/bin/python benchmarks/bench_dedup.py [--eval 300] [--out benchmarks/results/dedup.md]

The benchmark, built from the benchmark side of the realweb corpus (see
bench_dedup_corpus.py; the descriptor never saw these families):

- eval set: every KDE wallpaper (largest landscape copy), the GIMP manual's
  Taj Mahal photo, and random other families (one image each) up to --eval;
- positives: each eval image under each edit chain of
  webli.stages.dedup.edits (7 single edits, 4 combinations), then through
  the download stage's own resizer (img2dataset, 256 px, white border, JPEG
  95), exactly as a crawled copy would reach the dedup stage;
- negatives: every other benchmark image through the same resizer. "hard"
  ones share a family with an eval image (the same dialog in another
  language, another filter applied to the Taj Mahal photo, a wallpaper's
  portrait, dark or thumbnail version: same photo, other edit); "easy" ones
  do not (other screenshots of the same programs, other photos).

A flag is correct only if it names the right eval item; a positive flagged
with another item counts against precision, unless that item is a twin of
its own: an eval image that is a copy of it by the criterion below
(`eval_twins`; the same desaturation of one photo by two formulas, say).

Label fix (measured, see `same_picture`): a few corpus images taken as
negatives are the eval image itself at another size or encoding (a KDE
wallpaper's `screenshot` is its thumbnail; `taj_orig.png` / `taj_orig_2.png`
re-encode / shrink `taj_orig.jpg`; untranslated copies of a screenshot in
another language folder). A resized copy is a positive by the issue's own
envelope, so a negative that matches an eval image on at least
SAME_PICTURE_SHARE of its pixels (within SAME_PICTURE_LEVELS grey levels per
channel, at a common size, same aspect ratio within 2%) is reported as
"copy of an eval image" and counted neither as a positive nor a negative;
the precision with the original labels is reported beside it. Reported beside the matcher:
pHash (imagehash) and a flip-aware 16 px thumbnail (the best hash the issue
measured), each on the padding-free content, nearest eval item by distance,
with the threshold swept; and each part of the matcher on its own.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as a Dask worker runs it (torch reads this on import)
import cv2  # noqa: E402
import imagehash
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dedup_corpus import REALWEB_WWW, family_of, is_bench_family, load_rgb, scan_corpus  # noqa: E402
from common import RESULTS_DIR, command_line, log, machine_note, md_table, require_site  # noqa: E402

from webli.pipeline.config import DownloadConfig  # noqa: E402
from webli.stages.dedup import descriptor, embedding  # noqa: E402
from webli.stages.dedup.edits import EDIT_CHAINS, apply_edits  # noqa: E402
from webli.stages.dedup.evalsets import ImagePart  # noqa: E402
from webli.stages.dedup.images import candidate_content, decode_candidate, normalise  # noqa: E402
from webli.stages.dedup.index import VerificationStore, assemble_image_index, build_image_part  # noqa: E402
from webli.stages.dedup.match import (  # noqa: E402
    Candidate,
    MatchSettings,
    aligned_checks,
    downloaded_candidate,
    search_neighbours,
    unaligned_checks,
)
from webli.stages.dedup.verify import Verification  # noqa: E402
from webli.stages.download import ProbingResizer  # noqa: E402

WORK = Path("/tmp/webli-dedup-bench")
WEB_COPY_MAX_SIDE = 2048  # a 5120 px wallpaper is published at most this large before being edited
SAME_PICTURE_SHARE = 0.98  # a negative agreeing with an eval image on this share of pixels is a copy of it
SAME_PICTURE_LEVELS = 16  # per-channel tolerance of that pixel agreement
SAME_PICTURE_SIDE = 256  # the comparison's height at most


SPLITS = {"bench": is_bench_family, "validation": lambda family: not is_bench_family(family)}


def cache_file(kind: str, split: str, count: int) -> Path:
    """A cached file of the benchmark (split "bench") or of the validation benchmark."""
    return WORK / (f"{kind}-{count}.pkl" if split == "bench" else f"{kind}-{split}-{count}.pkl")


def pick_eval(corpus, count: int, split: str = "bench", seed: int = 0) -> list:
    """Wallpapers and the Taj Mahal photo first (benchmark split), then one random image of random families."""
    rng = random.Random(seed)
    bench = [image for image in corpus if SPLITS[split](image.family)]
    by_family = defaultdict(list)
    for image in bench:
        by_family[image.family].append(image)
    chosen = []
    for family in sorted(f for f in by_family if f.startswith("wallpaper/") and "/gnome/" not in f):
        main = [i for i in by_family[family] if "/images/" in i.path and i.width >= i.height]
        chosen.append(max(main or by_family[family], key=lambda i: (i.width * i.height, i.path)))
    chosen += [i for i in by_family["gimp/taj"] if i.path.endswith("taj_orig.jpg")][:1]
    others = sorted(f for f in by_family if not f.startswith("wallpaper/") and f != "gimp/taj")
    rng.shuffle(others)
    for family in others[:max(0, count - len(chosen))]:
        chosen.append(rng.choice(sorted(by_family[family], key=lambda i: i.path)))
    return chosen


def web_copy(path: str) -> Image.Image:
    """The eval image as it would be published (huge wallpapers downscaled first)."""
    return Image.fromarray(load_rgb(path, max_side=WEB_COPY_MAX_SIDE))


def downloaded(resizer: ProbingResizer, data: bytes) -> tuple[bytes, int, int] | None:
    """What the download stage stores: (KEY.jpg bytes, original width, original height), or None if refused."""
    image, _, _, width, height, error = resizer(io.BytesIO(data))
    return None if error else (image, width, height)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def build_benchmark(eval_count: int, split: str = "bench") -> dict:
    """Eval images, positives and negatives (cached under /tmp/webli-dedup-bench)."""
    cache = cache_file("benchmark", split, eval_count)
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    corpus = scan_corpus()
    evals = pick_eval(corpus, eval_count, split)
    resizer = ProbingResizer(DownloadConfig(min_image_size=0, max_aspect_ratio=10))
    candidates = []
    for index, image in enumerate(evals):
        original = web_copy(image.path)
        for chain_index, (chain, names) in enumerate(EDIT_CHAINS.items()):
            edited = apply_edits(original, names, seed=index * 100 + chain_index)
            sample = downloaded(resizer, png_bytes(edited))
            if sample:
                candidates.append({"sample": sample, "label": index, "kind": chain, "path": image.path})
    eval_paths, eval_families = {i.path for i in evals}, {i.family for i in evals}
    for image in corpus:
        if SPLITS[split](image.family) and image.path not in eval_paths:
            sample = downloaded(resizer, (REALWEB_WWW / image.path).read_bytes())
            if sample:
                kind = "hard" if image.family in eval_families else "easy"
                candidates.append({"sample": sample, "label": -1, "kind": kind, "path": image.path})
    benchmark = {"evals": [i.path for i in evals], "candidates": candidates, "split": split}
    WORK.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(benchmark))
    return benchmark


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels within SAME_PICTURE_LEVELS on every channel, both resized to the smaller height."""
    height = min(a.shape[0], b.shape[0], SAME_PICTURE_SIDE)
    width = max(1, round(height * a.shape[1] / a.shape[0]))
    small = [cv2.resize(x, (width, height), interpolation=cv2.INTER_AREA).astype(np.int16) for x in (a, b)]
    return float((np.abs(small[0] - small[1]).max(2) <= SAME_PICTURE_LEVELS).mean())


def same_aspect(aspects: np.ndarray, aspect: float) -> np.ndarray:
    """Positions of the `aspects` (width / height) within 2% of `aspect`: the pairs `pixel_agreement` compares."""
    return np.nonzero(np.abs(np.log(aspects / aspect)) < 0.02)[0]


def eval_rows(benchmark: dict, index) -> list[int]:
    """The index row of each of the benchmark's eval images (-1: not in the index)."""
    item_row = {index.items[r].as_py(): r for r in range(len(index))}
    return [item_row.get(p, -1) for p in benchmark["evals"]]


def eval_originals(benchmark: dict) -> list[np.ndarray]:
    """The benchmark's eval images as `same_picture` compares them (longest side at most 1024 px)."""
    return [load_rgb(p, max_side=1024) for p in benchmark["evals"]]


def eval_twins(evals: list[np.ndarray]) -> dict[int, set[int]]:
    """Eval images (`eval_originals`) that are copies of one another by `same_picture`'s criterion: eval position
    -> the positions of its twins. A copy of one is a copy of the other, so a positive flagged with a twin of its
    own eval image is flagged right (the stage may name either)."""
    aspects = np.array([e.shape[1] / e.shape[0] for e in evals])
    twins = defaultdict(set)
    for first in range(len(evals)):
        for second in same_aspect(aspects, aspects[first]):
            if second > first and pixel_agreement(evals[first], evals[second]) >= SAME_PICTURE_SHARE:
                twins[first].add(int(second))
                twins[int(second)].add(first)
    return dict(twins)


def mark_twins(benchmark: dict, outcomes: list[dict], label_row: list[int], twins: dict[int, set[int]]) -> None:
    """Set each outcome's `twin_rows`: the index rows (`label_row`: per eval image) of its eval image's twins
    (`eval_twins`), which `names_true_item` also counts as right."""
    for candidate, outcome in zip(benchmark["candidates"], outcomes):
        outcome["twin_rows"] = {label_row[twin] for twin in twins.get(candidate["label"], ())}


def names_true_item(outcome: dict, row: int) -> bool:
    """Whether a flag with eval row `row` names the positive's own eval image or a twin of it (`eval_twins`)."""
    return row >= 0 and (row == outcome["true_row"] or row in outcome.get("twin_rows", ()))


def same_picture(benchmark: dict, evals: list[np.ndarray]) -> dict[int, tuple[str, float]]:
    """Negatives that are an eval image (`eval_originals`) at another size or encoding: candidate index -> (eval
    path, agreement).

    Every negative is compared with every eval image of the same aspect ratio (within 2%); cached.
    """
    cache = cache_file("same-picture", benchmark.get("split", "bench"), len(benchmark["evals"]))
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    aspects = np.array([e.shape[1] / e.shape[0] for e in evals])
    found = {}
    for position, candidate in enumerate(benchmark["candidates"]):
        if candidate["label"] >= 0:
            continue
        image = load_rgb(candidate["path"], max_side=1024)
        aspect = image.shape[1] / image.shape[0]
        scores = [(pixel_agreement(image, evals[j]), benchmark["evals"][j])
                  for j in same_aspect(aspects, aspect)]
        best = max(scores, default=(0.0, ""))
        if best[0] >= SAME_PICTURE_SHARE:
            found[position] = (best[1], best[0])
    cache.write_bytes(pickle.dumps(found))
    return found


def bench_candidate(sample: tuple[bytes, int, int]) -> Candidate:
    """The stage's candidate of a downloaded sample (bytes, original width, height), pictures under the stage's
    smallest size included: the benchmark scores them."""
    data, width, height = sample
    return downloaded_candidate(candidate_content(decode_candidate(data), "border", width, height), "border",
                                width, height)


def candidate_image(candidate: dict) -> np.ndarray:
    """The normalised picture of a benchmark candidate."""
    return bench_candidate(candidate["sample"]).image


# --- the matcher and its parts --------------------------------------------------------------------------


def build_index(eval_paths: list[str]):
    """The stage's own index over the eval images (one part), with its build time."""
    started = time.perf_counter()
    part = ImagePart("files", tuple(str(REALWEB_WWW / p) for p in eval_paths), str(REALWEB_WWW))
    features = build_image_part(part)
    index, verification = assemble_image_index([features])
    return index, VerificationStore(**verification), time.perf_counter() - started


def run_matcher(benchmark: dict, index, store, settings: MatchSettings) -> tuple[list[dict], dict]:
    """Every candidate through decode -> views -> search -> check of each neighbour.

    The check runs with no agreement, local-change or verifier threshold and its numbers are kept per neighbour
    and orientation (`oriented_check`), so `decide` can apply any thresholds afterwards as the stage would.
    """
    label_row = eval_rows(benchmark, index)
    timings = Counter()
    started = time.perf_counter()
    prepared = [bench_candidate(c["sample"]) for c in benchmark["candidates"]]
    images = [candidate.image for candidate in prepared]
    timings["decode"] = time.perf_counter() - started
    started = time.perf_counter()
    views = [descriptor.query_views(image) for image in images]
    timings["descriptor"] = time.perf_counter() - started
    started = time.perf_counter()
    learned = embedding.query_vectors(images)
    timings["embedding"] = time.perf_counter() - started
    started = time.perf_counter()
    neighbours = search_neighbours(images, index, store, settings, views, learned)
    timings["search"] = time.perf_counter() - started
    hash_top = index.search(views, 1, settings.probe, -1.0)
    loose = MatchSettings(**{**settings.__dict__, "min_agreement": 0.0, "max_local_change": 0,
                             "min_verifier_score": 0.0})  # the verifier scores every pair and refuses none
    outcomes = []
    started = time.perf_counter()
    for candidate, found, hashed in zip(benchmark["candidates"], neighbours, hash_top):
        true_row = label_row[candidate["label"]] if candidate["label"] >= 0 else -1
        query = prepared.pop(0)  # off the list, so its features are freed after its checks
        checks = [(row, similarity, tuple(map(oriented_check, aligned_checks(query, store.entry(row), loose),
                                              unaligned_checks(query, store.entry(row), 0, 0.0))))
                  for row, similarity in found]
        rows = [r for r, _ in found]
        outcomes.append({
            "kind": candidate["kind"], "positive": true_row >= 0, "true_row": true_row,
            "top_row": rows[0] if rows else -1, "top_similarity": found[0][1] if found else -1.0,
            "true_rank": rows.index(true_row) if true_row in rows else None,
            "true_similarity": next((s for r, s in found if r == true_row), None), "checks": checks,
            "hash_top": hashed[0] if hashed else (-1, -1.0)})
    timings["verify"] = time.perf_counter() - started
    timings["verified_candidates"] = sum(1 for o in outcomes if o["checks"])
    return outcomes, timings


class Oriented(NamedTuple):
    """One orientation of a candidate checked against one eval image with no agreement, local-change or verifier
    threshold (`oriented_check`): what `decide` needs to apply any of them afterwards as the stage would."""

    path: str | None  # "orb" or "template": aligned (colour plausible), else None
    inliers: int
    agreement: float
    local_change: int
    fit: float
    score: float | None  # the pair verifier's
    unaligned: bool  # compared without a transform and accepted at verify.UNALIGNED_MIN_AGREEMENT
    unaligned_agreement: float
    unaligned_local_change: int
    unaligned_fit: float
    unaligned_score: float | None


def oriented_check(aligned: Verification, unaligned: Verification) -> tuple:
    """An `Oriented` (as a plain tuple, so the pickled outcomes load anywhere) from one orientation's checks
    (`match.aligned_checks`, `match.unaligned_checks`) run with nothing refused but at the inlier threshold
    (the verifier scores every pair that aligns)."""
    path = {"match": "orb", "match_template": "template"}.get(aligned.reason) if aligned.accepted else None
    return (path, aligned.inliers, aligned.agreement, aligned.local_change, aligned.fit, aligned.verifier_score,
            unaligned.accepted, unaligned.agreement, unaligned.local_change, unaligned.fit, unaligned.verifier_score)


def passing_key(check: tuple, min_inliers: int, min_agreement: float, max_local_change: int,
                min_verifier_score: float | None = None) -> tuple | None:
    """The sort key (best fit first) of a recorded neighbour check that passes these thresholds, else None, as
    `match.check_neighbour` decides: the orientation that fits best of those aligned by ORB (enough inliers)
    or by template matching with enough agreement; else, compared without a transform, the one that agrees
    most. Either way its largest group of disagreeing cells under `max_local_change`, unless that is 0, and its
    verifier score at least `min_verifier_score`, unless that is None."""
    row, similarity, orientations = check
    orientations = [Oriented(*o) for o in orientations]

    def passes(group: int, score: float | None) -> bool:
        small = not max_local_change or group < max_local_change
        return small and (min_verifier_score is None or (score is not None and score >= min_verifier_score))

    aligned = [o.fit for o in orientations
               if (o.path == "template" or (o.path == "orb" and o.inliers >= min_inliers))
               and o.agreement >= min_agreement and passes(o.local_change, o.score)]
    if aligned:
        return -max(aligned), -similarity, row
    unaligned = [o for o in orientations if o.unaligned and passes(o.unaligned_local_change, o.unaligned_score)]
    if unaligned:
        return -max(unaligned, key=lambda o: o.unaligned_agreement).unaligned_fit, -similarity, row
    return None


def decide(outcomes: list[dict], min_inliers: int, min_agreement: float, max_local_change: int = 0,
           min_verifier_score: float | None = None) -> None:
    """Set each outcome's `match_row`: the passing neighbour the candidate fits best, as the stage decides
    (a neighbour passes aligned by ORB or by template matching at these thresholds, or else compared without
    a transform: `verify_unaligned`; either way its largest group of disagreeing cells must be under
    `max_local_change`, unless that is 0, and its verifier score at least `min_verifier_score`, unless that is
    None). The checks were recorded at the default inlier threshold, so
    `min_inliers` must be at least that (a pair under it went to template matching). At the stage's settings
    this is the stage's verdict (`match.best_match`)."""
    for o in outcomes:
        keys = [passing_key(c, min_inliers, min_agreement, max_local_change, min_verifier_score) for c in o["checks"]]
        passing = [key for key in keys if key is not None]
        o["match_row"] = min(passing)[2] if passing else -1


def precision_recall(outcomes: list[dict], copies_as_negatives: bool = False) -> tuple[float, float, int, int, int]:
    """(precision, recall, right flags, wrong-item flags, negatives flagged) of the decided verdicts.

    Copies of eval images (kind "copy", see `same_picture`) are left out unless `copies_as_negatives`.
    """
    if not copies_as_negatives:
        outcomes = [o for o in outcomes if o["kind"] != "copy"]
    positives = sum(o["positive"] for o in outcomes)
    right = sum(1 for o in outcomes if names_true_item(o, o["match_row"]))
    wrong_item = sum(1 for o in outcomes
                     if o["positive"] and o["match_row"] >= 0 and not names_true_item(o, o["match_row"]))
    false = sum(1 for o in outcomes if not o["positive"] and o["match_row"] >= 0)
    flagged = right + wrong_item + false
    return (right / flagged if flagged else 1.0), right / max(1, positives), right, wrong_item, false


def sweep(decisions: list[tuple[float, bool]], positives: int, higher_is_closer: bool = True) -> dict:
    """Over every threshold on (score, correct) top-1 decisions: best recall at precision >= 0.99 and 0.95."""
    ordered = sorted(decisions, key=lambda d: -d[0] if higher_is_closer else d[0])
    best = {0.99: 0.0, 0.95: 0.0}
    right = 0
    for flagged, (score, correct) in enumerate(ordered, start=1):
        right += correct
        nxt = ordered[flagged][0] if flagged < len(ordered) else None
        if nxt is not None and nxt == score:
            continue  # a threshold cannot split equal scores
        for level in best:
            if right / flagged >= level:
                best[level] = max(best[level], right / positives)
    top1 = sum(1 for _, correct in decisions if correct) / positives
    return {"recall_at_p99": best[0.99], "recall_at_p95": best[0.95], "top1_no_threshold": top1}


# --- baselines -------------------------------------------------------------------------------------------


def phash_bits(rgb: np.ndarray) -> np.ndarray:
    return imagehash.phash(Image.fromarray(rgb)).hash.ravel()


def thumb16(rgb: np.ndarray) -> np.ndarray:
    small = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    return small / max(float(np.linalg.norm(small)), 1e-6)


def baselines(benchmark: dict, eval_images: list[np.ndarray], candidate_images: list[np.ndarray],
              skip: set[int]) -> dict:
    """pHash (Hamming, lower is closer) and the flip-aware 16 px thumbnail (cosine), nearest eval item;
    the candidates in `skip` (copies of eval images) are left out."""
    kept = [i for i in range(len(candidate_images)) if i not in skip]
    candidate_images = [candidate_images[i] for i in kept]
    labels = [benchmark["candidates"][i]["label"] for i in kept]
    positives = sum(label >= 0 for label in labels)
    results = {}
    started = time.perf_counter()
    eval_hashes = np.array([phash_bits(e) for e in eval_images])
    for flip_aware in (False, True):
        decisions = []
        for image, label in zip(candidate_images, labels):
            views = [image, image[:, ::-1]] if flip_aware else [image]
            distances = np.min([(eval_hashes != phash_bits(np.ascontiguousarray(v))).sum(1) for v in views], axis=0)
            best = int(np.lexsort((np.arange(len(distances)), distances))[0])
            decisions.append((float(distances[best]), best == label))
        results["pHash (64 bit)" + (", flip-aware" if flip_aware else "")] = sweep(decisions, positives, False)
    eval_thumbs = np.array([thumb16(e) for e in eval_images])
    decisions = []
    for image, label in zip(candidate_images, labels):
        scores = np.max([eval_thumbs.reshape(len(eval_thumbs), -1) @ thumb16(np.ascontiguousarray(v)).ravel()
                         for v in (image, image[:, ::-1])], axis=0)
        best = int(np.argmax(scores))
        decisions.append((float(scores[best]), best == label))
    results["16 px thumbnail, flip-aware"] = sweep(decisions, positives)
    results["_seconds"] = time.perf_counter() - started
    return results


# --- report ----------------------------------------------------------------------------------------------


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def per_kind_table(outcomes: list[dict], settings: MatchSettings) -> str:
    """Recall per edit chain: search (true item among the neighbours) and the full matcher."""
    rows = []
    for kind in EDIT_CHAINS:
        group = [o for o in outcomes if o["kind"] == kind]
        if not group:
            continue
        found = sum(1 for o in group if o["true_rank"] is not None and o["true_similarity"] >= settings.min_similarity)
        right = sum(1 for o in group if names_true_item(o, o["match_row"]))
        rows.append([kind, len(group), pct(found / len(group)), pct(right / len(group))])
    return md_table(["edit chain", "positives", f"search: true item among the neighbours checked (DCT top "
                     f"{settings.neighbours} + learned top {settings.learned_neighbours}, learned cosine >= "
                     f"{settings.min_similarity})",
                     "matcher: flagged with the right item"], rows)


def negatives_table(outcomes: list[dict]) -> str:
    rows = []
    kinds = (("easy", "easy (other families)"), ("hard", "hard (same family: other edit / language / crop)"),
             ("copy", "copy of an eval image (not scored; a flag is right)"))
    for kind, label in kinds:
        group = [o for o in outcomes if o["kind"] == kind]
        flagged = sum(1 for o in group if o["match_row"] >= 0)
        rows.append([label, len(group), flagged, pct(flagged / max(1, len(group)))])
    return md_table(["negatives", "images", "flagged", "false-positive rate"], rows)


def flagged_negatives_table(outcomes: list[dict], benchmark: dict) -> str:
    """The negatives flagged at the defaults, by what they are (their family in the corpus)."""
    groups: Counter = Counter()
    for outcome, candidate in zip(outcomes, benchmark["candidates"]):
        if outcome["kind"] in ("easy", "hard") and outcome["match_row"] >= 0:
            family = family_of(candidate["path"])
            if outcome["kind"] == "easy":
                group = "another image of the same manual (other family)"
            elif family == "gimp/taj":
                group = "another GIMP filter output of the Taj Mahal photo"
            elif family.startswith("wallpaper/"):
                group = "another file of the same wallpaper (preview screenshot, dark or portrait version)"
            else:
                group = "the same screenshot in another language, or another version of it"
            groups[group] += 1
    return md_table(["negatives flagged at the defaults", "count"], [[g, n] for g, n in groups.most_common()])


def losses_table(outcomes: list[dict], settings: MatchSettings) -> str:
    """Per edit chain, what the check did with each positive's true eval image at the default thresholds."""
    columns = ("accepted", "not aligned (ORB and template) or colour", f"agreement < {settings.min_agreement}",
               f"local change >= {settings.max_local_change} strong cells",
               f"verifier < {settings.min_verifier_score}", "not among the neighbours")
    structure_only = (settings.min_inliers, settings.min_agreement, settings.max_local_change)
    counts: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        if not o["positive"]:
            continue
        check = next((c for c in o["checks"] if c[0] == o["true_row"]), None)
        if check is None:
            verdict = columns[5]
        elif passing_key(check, *structure_only, settings.min_verifier_score):
            verdict = columns[0]
        elif passing_key(check, *structure_only):
            verdict = columns[4]
        else:
            orientations = [Oriented(*x) for x in check[2]]
            if any(x.unaligned or (x.path and x.agreement >= settings.min_agreement) for x in orientations):
                verdict = columns[3]
            elif any(x.path for x in orientations):
                verdict = columns[2]
            else:
                verdict = columns[1]
        counts[o["kind"]][verdict] += 1
    total = sum(counts.values(), Counter())
    rows = [[kind, *(counts[kind][c] for c in columns)] for kind in EDIT_CHAINS if kind in counts]
    return md_table(["edit chain", *columns], rows + [["total", *(total[c] for c in columns)]])


def psnr(candidate: np.ndarray, reference: np.ndarray) -> float | None:
    """PSNR (dB) of a candidate against a reference image resized to it; None when the aspect ratios differ."""
    height, width = candidate.shape[:2]
    if abs(np.log((width / height) / (reference.shape[1] / reference.shape[0]))) >= 0.02:
        return None
    resized = cv2.resize(reference, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
    error = float(((candidate.astype(np.float64) - resized) ** 2).mean())
    return 10 * np.log10(255.0 ** 2 / max(error, 1e-9))


def closeness_table(benchmark: dict, outcomes: list[dict], eval_images: list[np.ndarray],
                    candidate_images: list[np.ndarray], listed: int = 15) -> str:
    """How close the flagged negatives are to the eval image they were flagged with, against how close the
    tolerated `jpeg` and `resize` copies are to theirs (PSNR, same-aspect pairs only)."""
    row_of = {path: row for row, path in enumerate(benchmark["evals"])}
    tolerated: dict[str, list[float]] = defaultdict(list)
    flagged = []
    for outcome, candidate, image in zip(outcomes, benchmark["candidates"], candidate_images):
        if outcome["kind"] in ("jpeg", "resize"):
            value = psnr(image, eval_images[row_of[candidate["path"]]])
            if value is not None:
                tolerated[outcome["kind"]].append(value)
        elif outcome["kind"] in ("easy", "hard") and outcome["match_row"] >= 0:
            value = psnr(image, eval_images[outcome["match_row"]])
            if value is not None:
                flagged.append((value, candidate["path"], benchmark["evals"][outcome["match_row"]]))
    floor = float(np.percentile(tolerated["jpeg"], 10))
    lines = [md_table(["tolerated copies", "pairs", "PSNR 10th / 50th / 90th percentile (dB)"],
                      [[kind, len(values), " / ".join(f"{v:.1f}" for v in np.percentile(values, [10, 50, 90]))]
                       for kind, values in sorted(tolerated.items())]),
             "",
             f"Of the {len(flagged)} flagged negatives with their eval image's aspect ratio, "
             f"{sum(v >= floor for v, _, _ in flagged)} are at least as close to it as the 10th percentile of "
             f"the `jpeg` copies ({floor:.1f} dB). The closest {listed}:",
             "",
             md_table(["negative flagged", "eval image", "PSNR (dB)"],
                      [[f"`{negative}`", f"`{evaluated}`", f"{value:.1f}"]
                       for value, negative, evaluated in sorted(flagged, reverse=True)[:listed]])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", type=int, default=300, help="eval images")
    parser.add_argument("--split", choices=sorted(SPLITS), default="bench",
                        help="bench: the benchmark's families (the report); validation: the training families, "
                             "to choose settings on without looking at the benchmark")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--build-only", action="store_true", help="only build (and cache) the benchmark")
    parser.add_argument("--reuse-outcomes", action="store_true",
                        help="reuse the matcher outcomes of the last run (to re-report with other thresholds)")
    arguments = parser.parse_args()
    out = arguments.out or RESULTS_DIR / ("dedup.md" if arguments.split == "bench" else f"dedup_{arguments.split}.md")
    outcomes_file = cache_file("outcomes", arguments.split, arguments.eval)
    require_site()
    started = time.perf_counter()
    benchmark = build_benchmark(arguments.eval, arguments.split)
    log(f"benchmark: {len(benchmark['evals'])} eval images, {len(benchmark['candidates'])} candidates "
        f"({time.perf_counter() - started:.0f} s)")
    if arguments.build_only:
        return
    settings = MatchSettings()
    index, store, build_seconds = build_index(benchmark["evals"])
    log(f"index of {len(index)} eval images built in {build_seconds:.1f} s")
    if arguments.reuse_outcomes:
        outcomes, timings = pickle.loads(outcomes_file.read_bytes())
        if any(len(check) != 3 for o in outcomes for check in o["checks"]):
            raise SystemExit(f"{outcomes_file} holds checks of an older format: run without --reuse-outcomes")
    else:
        outcomes, timings = run_matcher(benchmark, index, store, settings)
        outcomes_file.write_bytes(pickle.dumps((outcomes, timings)))
    originals = eval_originals(benchmark)
    copies = same_picture(benchmark, originals)
    for position, outcome in enumerate(outcomes):
        if position in copies:
            outcome["kind"] = "copy"
    log(f"{len(copies)} negatives are copies of an eval image (not scored)")
    twins = eval_twins(originals)
    mark_twins(benchmark, outcomes, eval_rows(benchmark, index), twins)
    log(f"{len(twins)} eval images have a twin in the eval set")
    grid = threshold_grid(outcomes, settings)
    verifier_grid = verifier_table(outcomes, settings)
    decide(outcomes, settings.min_inliers, settings.min_agreement, settings.max_local_change,
           settings.min_verifier_score)
    precision, recall, right, wrong_item, false = precision_recall(outcomes)
    original_labels = precision_recall(outcomes, copies_as_negatives=True)
    positives = sum(o["positive"] for o in outcomes)
    log(f"matcher: precision {precision:.4f} recall {recall:.4f} ({right} right, {wrong_item} wrong item, "
        f"{false} negatives flagged)")
    scored = [o for o in outcomes if o["kind"] != "copy"]
    alone = {
        "DCT views alone (top-1, best view cosine)": sweep(
            [(o["hash_top"][1], names_true_item(o, o["hash_top"][0])) for o in scored], positives),
        "learned embedding alone (top-1 cosine)": sweep(
            [(o["top_similarity"], names_true_item(o, o["top_row"])) for o in scored], positives),
    }
    reached = [o for o in outcomes if o["positive"] and o["true_rank"] is not None
               and o["true_similarity"] >= settings.min_similarity]
    check_rate = sum(names_true_item(o, o["match_row"]) for o in reached) / max(1, len(reached))
    eval_images = [normalise(original) for original in originals]
    candidate_images = [candidate_image(c) for c in benchmark["candidates"]]
    hashes = baselines(benchmark, eval_images, candidate_images, set(copies))
    analysis = [losses_table(outcomes, settings), closeness_table(benchmark, outcomes, eval_images, candidate_images)]
    report(out, benchmark, settings, outcomes, timings, build_seconds, hashes, alone,
           check_rate, (precision, recall, right, wrong_item, false), grid, original_labels, copies,
           analysis + [verifier_grid])
    print(out.read_text())


def threshold_grid(outcomes: list[dict], settings: MatchSettings) -> str:
    """Precision and recall of the check's thresholds around the defaults: agreement x the largest group of
    disagreeing cells allowed (inliers at the default, the threshold the checks were recorded at)."""
    rows = []
    points = [(settings.min_inliers, a, c) for a in (0.5, 0.6, 0.7, 0.8, 0.9) for c in (0, 2, 3, 4, 6)]
    for min_inliers, min_agreement, max_local_change in points:
        decide(outcomes, min_inliers, min_agreement, max_local_change, settings.min_verifier_score)
        precision, recall, _, wrong_item, false = precision_recall(outcomes)
        rows.append([min_inliers, min_agreement, max_local_change or "no limit", f"{precision:.4f}",
                     f"{recall:.4f}", wrong_item, false])
    return md_table(["min inliers", "min agreement", "max local change (cells)", "precision", "recall",
                     "wrong item", "negatives flagged"], rows)


def verifier_table(outcomes: list[dict], settings: MatchSettings) -> str:
    """Precision, recall and flag counts of the pair verifier's thresholds (off, then rising up to 0.99) at the
    default structure thresholds, and the highest precision among them."""
    rows = []
    for threshold in (None, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.97, 0.99):
        decide(outcomes, settings.min_inliers, settings.min_agreement, settings.max_local_change, threshold)
        precision, recall, right, wrong_item, false = precision_recall(outcomes)
        rows.append(["off" if threshold is None else threshold, f"{precision:.4f}", f"{recall:.4f}", right,
                     wrong_item, false])
    best = max(rows, key=lambda row: float(row[1]))
    return "\n".join([
        md_table(["min verifier score", "precision", "recall", "right", "wrong item", "negatives flagged"], rows),
        "",
        f"The highest precision of these thresholds is {best[1]}, at {best[0]} (recall {best[2]}, "
        f"{best[4] + best[5]} wrong flags).",
    ])


def report(path: Path, benchmark: dict, settings: MatchSettings, outcomes: list[dict], timings: Counter,
           build_seconds: float, hashes: dict, alone: dict, check_rate: float, totals: tuple,
           grid: str, original_labels: tuple, copies: dict, analysis: list[str]) -> None:
    precision, recall, right, wrong_item, false = totals
    n = len(outcomes)
    positives = sum(o["positive"] for o in outcomes)
    twinned = {o["true_row"] for o in outcomes if o.get("twin_rows")}
    twin_flags = sum(1 for o in outcomes if o["match_row"] != o["true_row"] and names_true_item(o, o["match_row"]))
    copy_rows = [[benchmark["candidates"][i]["path"], path, f"{share:.3f}"]
                 for i, (path, share) in sorted(copies.items())]
    method_rows = [[name, pct(r["recall_at_p99"]), pct(r["recall_at_p95"]), pct(r["top1_no_threshold"])]
                   for name, r in hashes.items() if not name.startswith("_")]
    method_rows += [[name, pct(r["recall_at_p99"]), pct(r["recall_at_p95"]), pct(r["top1_no_threshold"])]
                    for name, r in alone.items()]
    per_core = n / sum(timings[k] for k in ("decode", "descriptor", "embedding", "search", "verify"))
    lines = [
        "# Eval-set image dedup: real images, tolerated edits, hard negatives",
        "",
        f"Command: `{command_line()}`",
        "",
        machine_note(("opencv-python-headless", "numpy", "ImageHash", "img2dataset")),
        "",
        "Single run (deterministic counts; only the timings vary with the machine's load).",
        "",
        f"Benchmark (see `benchmarks/bench_dedup.py`): {len(benchmark['evals'])} eval images from the realweb "
        f"corpus's {'benchmark' if benchmark.get('split', 'bench') == 'bench' else 'training (validation split)'} "
        f"families, {positives:,} positives (each eval image under "
        f"{len(EDIT_CHAINS)} edit chains, then the download stage's resizer: 256 px, white border, JPEG 95), "
        f"{n - positives - len(copies):,} negatives (every other image of those families, through the same "
        f"resizer) and {len(copies)} copies of eval images found among the corpus images (not scored; see below).",
        "",
        "## The stage's matcher (default settings)",
        "",
        md_table(["precision", "recall", "flagged right", "flagged with a wrong eval item", "negatives flagged"],
                 [[f"{precision:.4f}", f"{recall:.4f}", right, wrong_item, false]]),
        "",
        f"Flagged right with a twin of their eval image (`eval_twins`: {len(twinned)} eval images are copies of "
        f"another one): {twin_flags}.",
        "",
        f"With the original labels (the {len(copies)} copies counted as negatives): precision "
        f"{original_labels[0]:.4f}, recall {original_labels[1]:.4f}, {original_labels[4]} negatives flagged.",
        "",
        per_kind_table(outcomes, settings),
        "",
        negatives_table(outcomes),
        "",
        flagged_negatives_table(outcomes, benchmark),
        "",
        "Where the positives are lost: the check on each positive's true eval image, at the defaults (accepted "
        "includes positives whose flag went to another item):",
        "",
        analysis[0],
        "",
        "How close the flagged negatives are to the eval image they were flagged with, against the tolerated "
        "copies (PSNR of the downloaded candidate against the eval image resized to it, same aspect ratio only):",
        "",
        analysis[1],
        "",
        f"The check alone: of the positives whose eval image the search returned, {pct(check_rate)} were "
        "accepted with the right item.",
        "",
        f"Copies of eval images among the corpus images (at least {SAME_PICTURE_SHARE:.0%} of the pixels within "
        f"{SAME_PICTURE_LEVELS} levels at a common size), taken out of the negatives:",
        "",
        "<details><summary>list</summary>",
        "",
        md_table(["corpus image", "eval image", "pixel agreement"], copy_rows),
        "",
        "</details>",
        "",
        f"The check's thresholds at `dedup.image_min_inliers` {settings.min_inliers} (`dedup.image_min_agreement` "
        "applies to pairs aligned by ORB + RANSAC or by template matching, pairs compared without a transform "
        "keep their fixed threshold, `verify.UNALIGNED_MIN_AGREEMENT`; `dedup.image_max_local_change`, the "
        "largest group of neighbouring disagreeing cells allowed, applies to all; the pair verifier at its "
        "default):",
        "",
        grid,
        "",
        f"The learned pair verifier's threshold (`dedup.image_min_verifier_score`, default "
        f"{settings.min_verifier_score}, chosen on held-out training families: "
        "`benchmarks/results/dedup_verifier_train.md`) at the default structure thresholds:",
        "",
        analysis[2],
        "",
        "## Against global hashes (same benchmark, nearest eval item, threshold swept)",
        "",
        md_table(["method", "recall at precision >= 0.99", "recall at precision >= 0.95",
                  "top-1 right, no threshold"], method_rows),
        "",
        "## Cost",
        "",
        md_table(["part", "seconds", "per candidate"], [
            [k, f"{timings[k]:.1f}", f"{1000 * timings[k] / n:.2f} ms"]
            for k in ("decode", "descriptor", "embedding", "search", "verify")]),
        "",
        f"{per_core:,.0f} candidates/s on one core end to end (decode included); "
        f"{timings['verified_candidates']:,} of {n:,} candidates had a neighbour worth checking. The check's time "
        "includes the pair verifier on every pair that aligns (the benchmark records its score for any threshold; "
        "the stage runs it only on pairs that passed the structure test). "
        f"Index build: {build_seconds:.1f} s for {len(benchmark['evals'])} eval images (decode of the originals "
        "included). Baselines took {:.1f} s.".format(hashes["_seconds"]),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
