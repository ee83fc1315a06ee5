"""Evaluation of a CLIP model on held-out pairs and on labelled image folders.

- Retrieval: image->text and text->image recall@1/5/10 over the held-out pool
  (the rank of the true partner among all candidates; ties are not counted
  against it).
- Pair AUC: the probability that a true pair scores above a shuffled pair
  (each image against another held-out caption, by a seeded derangement):
  how well the model, used as a filter, tells matching pairs from random ones.
- Zero-shot: an image folder with one sub-folder per class (torchvision's
  ImageFolder layout); class names are the folder names, prompts from templates.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from scipy.stats import mannwhitneyu

from webli.stages.train.data import Batch, StreamCounts

log = logging.getLogger(__name__)

RECALL_AT = (1, 5, 10)
SIMILARITY_CHUNK = 1024
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
DEFAULT_TEMPLATES = ("a photo of a {}.", "{}")


@dataclass
class Embeddings:
    """L2-normalised image and text embeddings of the same pairs, row by row."""

    images: torch.Tensor
    texts: torch.Tensor
    keys: list[str]
    counts: StreamCounts

    def __len__(self) -> int:
        return len(self.keys)


@torch.no_grad()
def embed_pairs(model: torch.nn.Module, batches: Iterable[Batch], device: torch.device) -> Embeddings:
    """Encode every pair of `batches` (model in eval mode), keeping the stream counts."""
    model.eval()
    images, texts, keys, counts = [], [], [], StreamCounts()
    for batch in batches:
        counts.add(batch.counts)
        if batch.images is None:
            continue
        images.append(model.encode_image(batch.images.to(device), normalize=True).float().cpu())
        texts.append(model.encode_text(batch.texts.to(device), normalize=True).float().cpu())
        keys += batch.keys
    empty = torch.empty(0, 0)
    return Embeddings(torch.cat(images) if images else empty, torch.cat(texts) if texts else empty, keys, counts)


def true_partner_ranks(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """For row i, how many candidates score strictly above candidate i (0 = ranked first); chunked."""
    ranks = []
    for start in range(0, len(queries), SIMILARITY_CHUNK):
        chunk = queries[start:start + SIMILARITY_CHUNK]
        scores = chunk @ candidates.T
        rows = torch.arange(len(chunk))
        true_scores = scores[rows, rows + start]
        ranks.append((scores > true_scores[:, None]).sum(dim=1))
    return torch.cat(ranks)


def retrieval_recall(embeddings: Embeddings, ks: Sequence[int] = RECALL_AT) -> dict:
    """{'image_to_text_recall': {'1': r, ...}, 'text_to_image_recall': {...}, 'pool': n}."""
    image_ranks = true_partner_ranks(embeddings.images, embeddings.texts)
    text_ranks = true_partner_ranks(embeddings.texts, embeddings.images)
    return {"pool": len(embeddings),
            "image_to_text_recall": {str(k): float((image_ranks < k).float().mean()) for k in ks},
            "text_to_image_recall": {str(k): float((text_ranks < k).float().mean()) for k in ks}}


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point: a random cycle through all n items (n >= 2)."""
    order = np.random.default_rng(seed).permutation(n)
    partner = np.empty(n, dtype=np.int64)
    partner[order] = np.roll(order, -1)
    return partner


def shuffled_pair_auc(embeddings: Embeddings, seed: int = 0) -> dict:
    """AUC of true-pair cosine against shuffled-pair cosine (Mann-Whitney U / n^2), with both means."""
    if len(embeddings) < 2:
        return {"auc": None, "pairs": len(embeddings)}
    partner = torch.from_numpy(derangement(len(embeddings), seed))
    true_scores = (embeddings.images * embeddings.texts).sum(dim=1).numpy()
    shuffled_scores = (embeddings.images * embeddings.texts[partner]).sum(dim=1).numpy()
    u_statistic = mannwhitneyu(true_scores, shuffled_scores, alternative="two-sided").statistic
    return {"auc": float(u_statistic) / (len(true_scores) * len(shuffled_scores)), "pairs": len(embeddings),
            "true_pair_cosine_mean": float(true_scores.mean()),
            "shuffled_pair_cosine_mean": float(shuffled_scores.mean())}


def heldout_metrics(embeddings: Embeddings, seed: int = 0) -> dict:
    """Retrieval recall@k and shuffled-pair AUC of held-out embeddings."""
    if len(embeddings) == 0:
        return {"pool": 0, "auc": None}
    return {**retrieval_recall(embeddings), **shuffled_pair_auc(embeddings, seed)}


@dataclass(frozen=True)
class LabelledImages:
    """An ImageFolder-style eval set: class names and (path, label) items."""

    classnames: list[str]
    items: list[tuple[Path, int]]


def read_image_folder(folder: str | Path) -> LabelledImages:
    """Class folders sorted by name ('_' read as a space); image files sorted within each."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"zero-shot image folder {folder} does not exist")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    items = [(path, label) for label, class_dir in enumerate(class_dirs)
             for path in sorted(class_dir.rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]
    return LabelledImages([d.name.replace("_", " ") for d in class_dirs], items)


def labelled_batches(items: list[tuple[Path, int]], preprocess: Callable, batch_size: int,
                     dropped: Counter) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches; unreadable images counted in `dropped` under 'decode_error'."""
    images, labels = [], []
    for path, label in items:
        try:
            with Image.open(path) as image:
                images.append(preprocess(image.convert("RGB")))
                labels.append(label)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            dropped["decode_error"] += 1
            continue
        if len(images) == batch_size:
            yield torch.stack(images), torch.tensor(labels)
            images, labels = [], []
    if images:
        yield torch.stack(images), torch.tensor(labels)


@torch.no_grad()
def zero_shot_accuracy(model: torch.nn.Module, tokenizer: Callable, preprocess: Callable, folder: str | Path,
                       templates: Sequence[str] = DEFAULT_TEMPLATES, batch_size: int = 64,
                       device: torch.device | str = "cpu") -> dict:
    """Top-1 (and top-5 with 5+ classes) zero-shot accuracy on an image folder."""
    data = read_image_folder(folder)
    if len(data.classnames) < 2:
        raise ValueError(f"zero-shot image folder {folder} needs at least 2 class sub-folders")
    model.eval()
    classifier = open_clip.build_zero_shot_classifier(model, tokenizer, data.classnames, list(templates),
                                                      device=device)
    dropped: Counter = Counter()
    correct: Counter = Counter()
    seen = 0
    top = [k for k in (1, 5) if k <= len(data.classnames)]
    for images, labels in labelled_batches(data.items, preprocess, batch_size, dropped):
        logits = model.encode_image(images.to(device), normalize=True).float() @ classifier.float()
        best = logits.topk(max(top), dim=1).indices.cpu()
        for k in top:
            correct[k] += int((best[:, :k] == labels[:, None]).any(dim=1).sum())
        seen += len(labels)
    return {"classes": len(data.classnames), "samples": seen, "dropped_by_reason": dict(dropped),
            **{f"top{k}": correct[k] / seen if seen else None for k in top}}
