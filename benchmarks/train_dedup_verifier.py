"""Train the dedup stage's learned pair verifier (webli/stages/dedup/verifier.py) on the realweb corpus.

    .venv/bin/python benchmarks/train_dedup_verifier.py [--epochs 12] [--rebuild]

Data: the *training* families of the realweb corpus only (bench_dedup_corpus;
nothing the dedup benchmark scores), those with at least two images. Per
family, up to EVALS_PER_FAMILY of its images serve in turn as an eval image
(the stage's own index over all of them): each gives COPIES copies under a
random edit chain of the benchmark (edits.EDIT_CHAINS) passed through the
download stage's resizer (label 1), up to OTHERS other images of its family
through the same resizer (label 0: the same dialog in another language,
another screenshot of the program), and OTHER_EDITS other edits of it
(other_edits.OTHER_EDITS: blur, sharpen, noise, oil paint, glow, ...; label
0: the same photo, another edit), each on a copy published at most
OTHER_EDIT_SIDES px large, kept when visible at the verifier's scale
(MIN_VISIBLE_CHANGE, low enough to keep faint edits). A pair is kept when the stage's check
aligns it and passes its colour test (structure thresholds off); the verifier
sees what the check then packs (verify.verifier_pair: the eval image under the
colour jitter fitted to the pair, as the candidate's source shows it).

One family in HELD_OUT is held out of training (by a hash of its name). The
threshold is chosen there, among the pairs the check accepts at the stage's
defaults: the highest score threshold under which at most MAX_COPIES_REFUSED of
those copies are refused, as they are and with candidate and eval image
swapped. A small copy's pair shows the eval image as its source shows it
(verify.seen_at_source), as the stage's check packs it. AdamW, one-cycle learning
rate; augmentation: pairs mirrored, and candidate and eval image swapped (an
eval set may hold the edited copy and the crawl the original). The weights are written as float16 to
webli/models/WEIGHTS, a report to benchmarks/results/dedup_verifier_train.md.
Seeded; one run took about 30 min on 2 cores (the pairs 7 min, training 23 min).
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import random
import sys
import time
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dedup import bench_candidate, build_index, downloaded, png_bytes, web_copy  # noqa: E402
from bench_dedup_corpus import REALWEB_WWW, is_bench_family, scan_corpus  # noqa: E402
from common import RESULTS_DIR, command_line, log, machine_note, md_table  # noqa: E402

from webli.pipeline.config import DownloadConfig  # noqa: E402
from webli.stages.dedup import verifier  # noqa: E402
from webli.stages.dedup.edits import EDIT_CHAINS, apply_edits  # noqa: E402
from webli.stages.dedup.match import MatchSettings, check_neighbour  # noqa: E402
from webli.stages.dedup.other_edits import apply_other_edit, other_edit_names, visible_change  # noqa: E402
from webli.stages.download import ProbingResizer  # noqa: E402

PAIRS = Path("/tmp/webli-dedup-bench/verifier-pairs-v7.pkl")
EVALS_PER_FAMILY = 3
COPIES = 4
OTHERS = 4
OTHER_EDITS = 3
OTHER_EDIT_SIDES = (160, 480)  # the other edits are made on a copy whose longest side is at most this (random)
MIN_VISIBLE_CHANGE = 4.0  # grey levels (other_edits.visible_change); v2 took 8, which left out faint edits
HELD_OUT = 4  # one family in this many
MAX_COPIES_REFUSED = 0.0025  # of the held-out copies the check accepts at the defaults
LEARNING_RATE = 3e-3
BATCH = 64
WEIGHTS_PATH = Path(__file__).resolve().parent.parent / "webli" / "models" / verifier.WEIGHTS
ALIGN = MatchSettings(min_agreement=0.0, max_local_change=0, min_verifier_score=None)  # keep every aligned pair
DEFAULTS = MatchSettings()

_resizer = ProbingResizer(DownloadConfig(min_image_size=0, max_aspect_ratio=10))
_store = None


def held_out(family: str) -> bool:
    return int.from_bytes(hashlib.blake2b(family.encode(), digest_size=8).digest(), "big") % HELD_OUT == 0


def aligned(sample: tuple | None, row: int) -> tuple | None:
    """(packed pair, accepted at the stage's defaults?) of a downloaded sample against eval row `row`, or None."""
    if sample is None:
        return None
    candidate = bench_candidate(sample)
    verification = check_neighbour(candidate, _store, row, ALIGN)
    if not verification.accepted or verification.pair is None:
        return None
    passes = (verification.agreement >= DEFAULTS.min_agreement
              and verification.local_change < DEFAULTS.max_local_change)
    return verification.pair, passes


def family_pairs(job: tuple[str, list[tuple[str, int]], list[str], int]) -> list[tuple]:
    """(label, family, eval path, candidate path or chain, packed pair, accepted at the defaults) of one family."""
    family, evals, members, seed = job
    rng = random.Random(seed)
    made = []
    for path, row in evals:
        for chain in rng.sample(sorted(EDIT_CHAINS), COPIES):
            edited = apply_edits(web_copy(path), EDIT_CHAINS[chain], seed=rng.randrange(1 << 30))
            found = aligned(downloaded(_resizer, png_bytes(edited)), row)
            if found:
                made.append((1, family, path, chain, *found))
        others = [m for m in members if m != path]
        for other in rng.sample(others, min(OTHERS, len(others))):
            found = aligned(downloaded(_resizer, (REALWEB_WWW / other).read_bytes()), row)
            if found:
                made.append((0, family, path, other, *found))
        for name in other_edit_names(rng, OTHER_EDITS):
            published = published_copy(web_copy(path), rng)
            edited = apply_other_edit(published, name, rng.randrange(1 << 30))
            if visible_change(published, edited) < MIN_VISIBLE_CHANGE:
                continue  # too faint to tell from a copy at the verifier's scale: it would teach noise
            found = aligned(downloaded(_resizer, png_bytes(edited)), row)
            if found:
                made.append((0, family, path, "edit:" + name, *found))
    return made


def published_copy(image: Image.Image, rng: random.Random) -> Image.Image:
    """The image as published for another edit: its longest side at most a random size in OTHER_EDIT_SIDES."""
    side = rng.randint(*OTHER_EDIT_SIDES)
    scale = min(1.0, side / max(image.size))
    return image.resize((max(8, round(image.width * scale)), max(8, round(image.height * scale))),
                        Image.Resampling.LANCZOS) if scale < 1 else image


def build_pairs() -> list[tuple]:
    """Every family's pairs (cached in PAIRS; about 5 min on 2 cores)."""
    global _store
    if PAIRS.is_file():
        return pickle.loads(PAIRS.read_bytes())
    by_family = defaultdict(list)
    for image in scan_corpus():
        if not is_bench_family(image.family):
            by_family[image.family].append(image.path)
    families = sorted(f for f, members in by_family.items() if len(members) >= 2)
    rng = random.Random(0)
    chosen = {f: rng.sample(by_family[f], min(EVALS_PER_FAMILY, len(by_family[f]))) for f in families}
    eval_paths = sorted({p for paths in chosen.values() for p in paths})
    index, _store, _ = build_index(eval_paths)
    row_of = {index.items[r].as_py().split("/www/", 1)[-1]: r for r in range(len(index))}
    jobs = [(f, [(p, row_of[p]) for p in chosen[f] if p in row_of], by_family[f], i) for i, f in enumerate(families)]
    log(f"verifier pairs: {len(families)} families, {len(eval_paths)} eval images")
    with Pool(2) as pool:  # forked: the workers share the store
        pairs = [pair for made in pool.imap(family_pairs, jobs, chunksize=4) for pair in made]
    PAIRS.parent.mkdir(parents=True, exist_ok=True)
    PAIRS.write_bytes(pickle.dumps(pairs))
    return pairs


def swap_sides(batch: np.ndarray, which: np.ndarray) -> np.ndarray:
    """The packed pairs with candidate and eval image swapped where `which`: an eval set may hold the edited copy
    (a banner drawn on the eval image, the candidate uncropped) and the crawl the original."""
    swapped = batch.copy()
    swapped[which, 0], swapped[which, 1] = batch[which, 1], batch[which, 0]
    return swapped


def train(pairs: np.ndarray, labels: np.ndarray, epochs: int, seed: int = 0):
    """The verifier trained on packed pairs (binary cross-entropy); per epoch (epoch, mean loss, seconds)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = verifier.network()
    optimiser = torch.optim.AdamW(model.parameters(), LEARNING_RATE, weight_decay=1e-4)
    steps = epochs * ((len(pairs) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=steps)
    loss_function = torch.nn.BCEWithLogitsLoss()
    progress = []
    for epoch in range(epochs):
        started, total = time.perf_counter(), 0.0
        model.train()
        order = rng.permutation(len(pairs))
        for start in range(0, len(pairs), BATCH):
            members = order[start:start + BATCH]
            batch = pairs[members]
            if rng.random() < 0.5:
                batch = batch[:, :, :, ::-1]  # both sides mirrored: still the same pair
            batch = swap_sides(batch, rng.random(len(batch)) < 0.5)
            loss = loss_function(model(verifier.model_input(batch)),
                                 torch.as_tensor(labels[members], dtype=torch.float32))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(members)
        progress.append([epoch + 1, round(total / len(pairs), 4), round(time.perf_counter() - started, 1)])
        log(f"verifier epoch {epoch + 1}: loss {total / len(pairs):.4f}")
    return model.eval(), progress


def threshold_table(scores: np.ndarray, swapped: np.ndarray, labels: np.ndarray, accepted: np.ndarray,
                    edited: np.ndarray) -> tuple[float, list[list]]:
    """The chosen threshold and, per candidate threshold, the held-out pairs the check accepts at the defaults
    that the verifier would refuse: copies (as they are, and with the sides swapped), other images and other
    edits (`edited`)."""
    copies = accepted & (labels == 1)
    others, other_edits = accepted & (labels == 0) & ~edited, accepted & (labels == 0) & edited
    rows, chosen = [], 0.0
    for threshold in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
        refused, refused_swapped = (int((copies & (s < threshold)).sum()) for s in (scores, swapped))
        if max(refused, refused_swapped) <= MAX_COPIES_REFUSED * copies.sum():
            chosen = threshold
        rows.append([threshold, f"{refused} of {int(copies.sum())}", f"{refused_swapped} of {int(copies.sum())}",
                     *(f"{int((kind & (scores < threshold)).sum())} of {int(kind.sum())}"
                       for kind in (others, other_edits))])
    return chosen, rows


def edit_table(candidates: list[str], accepted: np.ndarray, scores: np.ndarray, threshold: float) -> str:
    """Per other edit (held-out pairs): aligned, accepted by the check at the defaults, refused by the verifier."""
    rows = []
    for name in sorted({c for c in candidates if c.startswith("edit:")}):
        kind = np.array([c == name for c in candidates])
        passed = kind & accepted
        rows.append([name.removeprefix("edit:"), int(kind.sum()), int(passed.sum()),
                     int((passed & (scores < threshold)).sum())])
    return md_table(["other edit", "aligned", "accepted by the check", "refused by the verifier"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--rebuild", action="store_true", help="make the pairs again (else the cached ones)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "dedup_verifier_train.md")
    arguments = parser.parse_args()
    if arguments.rebuild:
        PAIRS.unlink(missing_ok=True)
    import torch

    torch.set_num_threads(1)  # one thread while building the pairs: the forked workers then cannot inherit a
    cv2.setNumThreads(1)  # thread pool that is held by a thread not forked with them (which hangs them)
    made = build_pairs()
    torch.set_num_threads(2)
    labels = np.array([m[0] for m in made])
    pairs = np.stack([m[4] for m in made])
    accepted = np.array([m[5] for m in made])
    test = np.array([held_out(m[1]) for m in made])
    model, progress = train(pairs[~test], labels[~test], arguments.epochs)
    scores = verifier.scores(pairs[test], model)
    swapped = verifier.scores(swap_sides(pairs[test], np.ones(int(test.sum()), bool)), model)
    edited = np.array([str(m[3]).startswith("edit:") for m in made])
    chosen, table = threshold_table(scores, swapped, labels[test], accepted[test], edited[test])
    WEIGHTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    torch.save({name: tensor.half() for name, tensor in model.state_dict().items()}, WEIGHTS_PATH)
    families = len({m[1] for m in made})
    lines = ["# Training the dedup stage's pair verifier", "", f"Command: `{command_line()}`", "",
             machine_note(("torch", "opencv-python-headless")), "",
             f"Weights: `webli/models/{verifier.WEIGHTS}` (float16).", "",
             f"Pairs: {len(made)} from {families} training families ({int(labels.sum())} copies, "
             f"{int(((labels == 0) & ~edited).sum())} other images of the family, {int(edited.sum())} other "
             f"edits); trained on {int((~test).sum())}, "
             f"held out {int(test.sum())} (one family in {HELD_OUT}).", "",
             md_table(["epoch", "loss", "seconds"], progress), "",
             "Held out: of the pairs the check accepts at the stage's defaults, how many the verifier refuses "
             f"below each threshold. Chosen: **{chosen}** (the highest refusing at most "
             f"{MAX_COPIES_REFUSED:.2%} of those copies either way round; `dedup.image_min_verifier_score`).", "",
             md_table(["threshold", "copies refused", "copies refused, sides swapped", "other images refused",
                       "other edits refused"], table), "",
             "Held out, per other edit: the pairs the check aligns, those it accepts at the stage's defaults "
             "(before the verifier), and those the verifier then refuses at the chosen threshold.", "",
             edit_table([m[3] for m, held in zip(made, test) if held], accepted[test], scores, chosen)]
    arguments.out.write_text("\n".join(lines) + "\n")
    print(arguments.out.read_text())


if __name__ == "__main__":
    main()
