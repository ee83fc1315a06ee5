"""Train the dedup stage's learned search descriptor (webli/stages/dedup/embedding.py) on the realweb corpus.

    .venv/bin/python benchmarks/train_dedup_embedding.py [--steps 2400] [--batch 128]

Data: the *training* families of the realweb corpus only (bench_dedup_corpus:
60% of the families by a hash of their name; no wallpaper, no Taj Mahal photo,
nothing the dedup benchmark scores). Per image: its clean normalised copy (what
an eval index holds) and VIEWS edited copies, each a random chain of the
tolerated edits (each of crop, rotate, jitter, banner, resize, jpeg with
probability 0.55, in the order of the benchmark's `all` chain; the mirror is
left to the query) passed through the download stage's resizer and
normalised, as a crawled copy reaches the stage. 10% of the training families
are held out to report retrieval top-1 while training.

Loss: symmetric InfoNCE (temperature TAU) between clean copies and one edited
copy each; a batch takes two images per family where it can, so the other
language of the same dialog is a negative in the same batch. AdamW, one-cycle
learning rate. The weights are written as float16 to webli/models/WEIGHTS and a
report to benchmarks/results/dedup_embedding_train.md. Seeded; one run took
about 20 min on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import pickle
import random
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dedup_corpus import is_bench_family, load_rgb, scan_corpus  # noqa: E402
from common import RESULTS_DIR, command_line, log, machine_note, md_table  # noqa: E402

from webli.pipeline.config import DownloadConfig  # noqa: E402
from webli.stages.dedup import embedding  # noqa: E402
from webli.stages.dedup.edits import apply_edits  # noqa: E402
from webli.stages.dedup.images import candidate_content, decode_candidate, normalise  # noqa: E402
from webli.stages.download import ProbingResizer  # noqa: E402

POOL = Path("/tmp/webli-dedup-bench/embedding-pool.pkl")
VIEWS = 8
STORED_SIDE = 96  # the pool keeps this size; training shrinks to embedding.SIDE
CHAIN_ORDER = ("crop", "rotate", "jitter", "banner", "resize", "jpeg")
EDIT_PROBABILITY = 0.55
TAU = 0.05
LEARNING_RATE = 2e-3
VALIDATION_SHARE = 10  # one family in this many is held out
WEIGHTS_PATH = Path(__file__).resolve().parent.parent / "webli" / "models" / embedding.WEIGHTS

_resizer = ProbingResizer(DownloadConfig(min_image_size=0, max_aspect_ratio=10))


def stored(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (STORED_SIDE, STORED_SIDE), interpolation=cv2.INTER_AREA)


def edited_copies(job: tuple[str, int]) -> tuple[str, np.ndarray] | None:
    """(path, (1 + VIEWS) x STORED_SIDE^2 x 3): the clean copy, then the edited copies as downloaded."""
    path, seed = job
    rng = random.Random(seed)
    try:
        original = Image.fromarray(load_rgb(path, max_side=2048))
        copies = [stored(normalise(load_rgb(path, max_side=1024)))]
    except Exception:  # noqa: BLE001 - a file Pillow refuses is left out of the pool
        return None
    for view in range(VIEWS):
        names = [n for n in CHAIN_ORDER if rng.random() < EDIT_PROBABILITY] or [rng.choice(CHAIN_ORDER)]
        buffer = io.BytesIO()
        apply_edits(original, names, seed=seed * 1000 + view).save(buffer, format="PNG", compress_level=1)
        image, _, _, width, height, error = _resizer(io.BytesIO(buffer.getvalue()))
        if not error:
            copies.append(stored(normalise(candidate_content(decode_candidate(image), "border", width, height))))
    return (path, np.stack(copies)) if len(copies) == 1 + VIEWS else None


def build_pool() -> dict:
    """The edited copies of every training-family image (cached; about 6 min on 2 cores)."""
    if POOL.is_file():
        return pickle.loads(POOL.read_bytes())
    corpus = [image for image in scan_corpus() if not is_bench_family(image.family)]
    family = {image.path: image.family for image in corpus}
    with Pool(2) as pool:
        made = [r for r in pool.imap(edited_copies, [(c.path, i) for i, c in enumerate(corpus)], chunksize=8) if r]
    data = {"paths": [p for p, _ in made], "families": [family[p] for p, _ in made], "views": [v for _, v in made]}
    POOL.parent.mkdir(parents=True, exist_ok=True)
    POOL.write_bytes(pickle.dumps(data))
    return data


def shrink(images: np.ndarray) -> np.ndarray:
    """The pool's images (any leading shape) at the network's input size, as `embedding.square` makes it."""
    flat = images.reshape(-1, *images.shape[-3:])
    return np.stack([embedding.square(x) for x in flat]).reshape(*images.shape[:-3], embedding.SIDE, embedding.SIDE, 3)


def retrieval_top1(model, views: np.ndarray, held_out: np.ndarray) -> float:
    """Share of the held-out edited copies whose nearest clean held-out image (either orientation) is their own."""
    model.eval()
    anchors = embedding.embed(views[held_out, 0], model)
    edited = views[held_out, 1:].reshape(-1, embedding.SIDE, embedding.SIDE, 3)
    similarity = np.maximum(embedding.embed(edited, model) @ anchors.T,
                            embedding.embed(np.ascontiguousarray(edited[:, :, ::-1]), model) @ anchors.T)
    model.train()
    truth = np.repeat(np.arange(len(held_out)), views.shape[1] - 1)
    return float((similarity.argmax(1) == truth).mean())


def batch_members(by_family: dict[str, list[int]], families: list[str], size: int, rng: random.Random) -> np.ndarray:
    """`size` distinct images, two per randomly drawn family where the family has two."""
    chosen: list[int] = []
    while len(chosen) < size:
        members = by_family[rng.choice(families)]
        chosen += [i for i in rng.sample(members, min(2, len(members))) if i not in chosen]
    return np.array(chosen[:size])


def train(steps: int, batch: int, seed: int = 0) -> list[list]:
    """Train, save the weights, and return the progress rows (step, loss, held-out top-1, seconds)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    pool = build_pool()
    views = shrink(np.stack(pool["views"]))
    families = sorted(set(pool["families"]))
    rng.shuffle(families)
    held_out_families = set(families[:len(families) // VALIDATION_SHARE])
    by_family: dict[str, list[int]] = {}
    for position, family in enumerate(pool["families"]):
        if family not in held_out_families:
            by_family.setdefault(family, []).append(position)
    held_out = np.array([i for i, f in enumerate(pool["families"]) if f in held_out_families])
    training_families = sorted(by_family)
    log(f"{len(views)} images: {len(training_families)} training families, {len(held_out)} held-out images")
    model = embedding.network()
    optimiser = torch.optim.AdamW(model.parameters(), LEARNING_RATE, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, LEARNING_RATE, total_steps=steps, pct_start=0.1)
    target = torch.arange(batch)
    progress, started = [], time.perf_counter()
    for step in range(steps):
        members = batch_members(by_family, training_families, batch, rng)
        anchors = views[members, 0]
        edited = views[members, [rng.randint(1, VIEWS) for _ in members]]
        mirror = np.array([rng.random() < 0.5 for _ in members])[:, None, None, None]
        anchors, edited = (np.where(mirror, x[:, :, ::-1], x) for x in (anchors, edited))
        vectors = model(embedding.model_input(np.concatenate([anchors, edited])))
        logits = vectors[:batch] @ vectors[batch:].T / TAU
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            top1 = retrieval_top1(model, views, held_out)
            progress.append([step, f"{loss.item():.3f}", f"{top1:.3f}", f"{time.perf_counter() - started:.0f}"])
            log(f"step {step}: loss {loss.item():.3f}, held-out top-1 {top1:.3f}")
    state = {name: tensor.half() for name, tensor in model.state_dict().items()}
    torch.save(state, WEIGHTS_PATH)
    return progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "dedup_embedding_train.md")
    arguments = parser.parse_args()
    progress = train(arguments.steps, arguments.batch)
    lines = ["# Training the dedup stage's learned search descriptor", "", f"Command: `{command_line()}`", "",
             machine_note(("torch", "opencv-python-headless")), "",
             f"Weights: `webli/models/{embedding.WEIGHTS}` (float16, sha256 `{embedding.weights_digest()}`).", "",
             "Held-out top-1: edited copies of images from held-out training families, nearest clean copy among "
             "those families' images (both orientations of the query).", "",
             md_table(["step", "loss", "held-out top-1", "seconds"], progress)]
    arguments.out.write_text("\n".join(lines) + "\n")
    print(arguments.out.read_text())


if __name__ == "__main__":
    main()
