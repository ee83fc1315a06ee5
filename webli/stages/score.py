"""Score stage: CLIP cosine similarity of every downloaded image and its alt text.

Pure functions over one download shard: its table (the successful rows give
key, uid and alt text) and the image bytes of its tar, streamed in tar order.
Images are decoded, preprocessed and encoded in batches, alt texts tokenised
and encoded in the same batches; the score is the cosine similarity of the two
normalised embeddings (not multiplied by the logit scale). Nothing is dropped:
a sample whose image is missing or does not decode gets a null score and a
counted problem. No Dask here; `webli.pipeline.score` runs it per shard.

The scorer is one model (`ClipScorer`) or a cross-fitted set (`FoldScorers`,
the bootstrap filters): then each pair is scored by the model of its fold
(a salted hash of its uid), the one that never trained on it, and the shard
stats count the pairs each fold's model scored.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from PIL import Image, UnidentifiedImageError

from webli import schemas
from webli.schemas.score import MODEL_ID, PROBLEM, SCORE, SCORE_SIDECAR
from webli.stages.train.data import fold_of

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


@dataclass
class ClipScorer:
    """A loaded CLIP model with its eval preprocessing and tokenizer."""

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: torch.device
    model_id: str

    @torch.inference_mode()
    def similarities(self, images: torch.Tensor, texts: list[str]) -> np.ndarray:
        """Cosine similarity of each image (preprocessed, stacked) with the text at the same index."""
        image_features = self.model.encode_image(images.to(self.device), normalize=True)
        text_features = self.model.encode_text(self.tokenizer(texts).to(self.device), normalize=True)
        return (image_features * text_features).sum(dim=-1).float().cpu().numpy()


@dataclass
class FoldScorers:
    """Cross-fitted models: `scorers[k]` scores the pairs of fold k (`fold_of(uid, K)`), which it never trained on."""

    scorers: tuple[ClipScorer, ...]
    model_id: str

    def route(self, keys: list[str], uids: list[str]) -> dict[str, int]:
        """key -> the index of the model that scores it (its uid's fold)."""
        return {key: fold_of(uid, len(self.scorers)) for key, uid in zip(keys, uids)}


def members(scorer: ClipScorer | FoldScorers) -> tuple[ClipScorer, ...]:
    """The models behind a scorer: one, or one per fold."""
    return scorer.scorers if isinstance(scorer, FoldScorers) else (scorer,)


def iter_tar_images(fileobj: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """(key, image bytes) of every `KEY.jpg|png|webp` member of a WebDataset tar, streamed in tar order.

    Other members (`KEY.txt`, `KEY.json`, `KEY.large.jpg`) are skipped unread.
    """
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, extension = member.name.rsplit("/", 1)[-1].partition(".")
            if extension.lower() in IMAGE_EXTENSIONS:
                yield key, tar.extractfile(member).read()


def decode_rgb(data: bytes) -> Image.Image | None:
    """The image as RGB, or None if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


@dataclass
class ShardScores:
    """Scores and problems collected over one shard."""

    scores: dict[str, float] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    unindexed: int = 0  # images in the tar with no successful row in the table
    repeated: int = 0  # a key met twice in the tar (the first image counts)
    scored_by: Counter = field(default_factory=Counter)  # model index -> pairs it scored


def _flush(batch: list[tuple[str, torch.Tensor]], captions: dict[str, str], scorers: tuple[ClipScorer, ...],
           index: int, result: ShardScores) -> None:
    """Score one model's batch with that model; empty the batch."""
    if not batch:
        return
    keys = [key for key, _ in batch]
    values = scorers[index].similarities(torch.stack([pixels for _, pixels in batch]), [captions[k] for k in keys])
    for key, value in zip(keys, values.tolist()):
        if np.isfinite(value):
            result.scores[key] = value
            result.scored_by[index] += 1
        else:
            result.problems[key] = "non_finite_score"
    batch.clear()


def score_images(images: Iterable[tuple[str, bytes]], captions: dict[str, str], scorer: ClipScorer | FoldScorers,
                 batch_size: int, route: dict[str, int] | None = None) -> ShardScores:
    """Score every image whose key has a caption, in batches of `batch_size` per model.

    `route` maps keys to the model that scores them (a `FoldScorers` index); without it, model 0 scores all.
    """
    scorers = members(scorer)
    result = ShardScores()
    batches: list[list[tuple[str, torch.Tensor]]] = [[] for _ in scorers]
    seen: set[str] = set()
    for key, data in images:
        if key not in captions:
            result.unindexed += 1
            continue
        if key in seen:
            result.repeated += 1
            continue
        seen.add(key)
        image = decode_rgb(data)
        if image is None:
            result.problems[key] = "decode_error"
            continue
        index = route[key] if route else 0
        batches[index].append((key, scorers[index].preprocess(image)))
        if len(batches[index]) >= batch_size:
            _flush(batches[index], captions, scorers, index, result)
    for index, batch in enumerate(batches):
        _flush(batch, captions, scorers, index, result)
    for key in captions.keys() - seen:
        result.problems[key] = "missing_image"
    return result


def successful_rows(download: pa.Table) -> pa.Table:
    """The rows of a download table whose image was stored, sorted by key."""
    return download.filter(pc.equal(download.column(schemas.STATUS), "success")).sort_by(schemas.KEY)


def scores_table(rows: pa.Table, result: ShardScores, model_id: str) -> pa.Table:
    """The sidecar table: one row per successful download row, in key order."""
    keys = rows.column(schemas.KEY).to_pylist()
    return schemas.conform(pa.table({
        schemas.KEY: keys,
        schemas.UID: rows.column(schemas.UID),
        SCORE: pa.array([result.scores.get(k) for k in keys], pa.float32()),
        MODEL_ID: [model_id] * len(keys),
        PROBLEM: pa.array([result.problems.get(k) for k in keys], pa.string()),
    }), SCORE_SIDECAR)


def score_shard(download: pa.Table, images: Iterable[tuple[str, bytes]], scorer: ClipScorer | FoldScorers,
                batch_size: int) -> tuple[pa.Table, dict]:
    """Score one download shard: (sidecar table, stats).

    `download` is the shard's download table (key, uid, caption, status at
    least); `images` its tar's (key, bytes), e.g. from `iter_tar_images`.
    With `FoldScorers`, each pair goes to its fold's model and the stats
    count the pairs each fold's model scored (`scored_by_fold`).
    """
    started = time.time()
    rows = successful_rows(download)
    keys = rows.column(schemas.KEY).to_pylist()
    captions = dict(zip(keys, rows.column(schemas.CAPTION).to_pylist()))
    folded = isinstance(scorer, FoldScorers)
    route = scorer.route(keys, rows.column(schemas.UID).to_pylist()) if folded else None
    result = score_images(images, captions, scorer, batch_size, route)
    table = scores_table(rows, result, scorer.model_id)
    problems = Counter(result.problems.values())
    stats = {
        "stage": "score",
        "total": table.num_rows,
        "forwarded": table.num_rows,
        "dropped_by_reason": {},
        "scored": len(result.scores),
        "problems_by_reason": dict(sorted(problems.items())),
        "tar_images_without_row": result.unindexed,
        "tar_images_repeated": result.repeated,
        "model_id": scorer.model_id,
        **({"scored_by_fold": {str(k): result.scored_by[k] for k in range(len(scorer.scorers))}} if folded else {}),
        "duration_s": round(time.time() - started, 3),
    }
    return table, stats
