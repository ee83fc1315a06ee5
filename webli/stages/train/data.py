"""WebDataset loading in open_clip's style, with every sample accounted for.

The stream, per epoch: shard list shuffled with a seed that depends on the
epoch, split over DataLoader workers (by shard when there are enough shards,
else by sample), tar members read through fsspec (any output root), samples
of the wanted split kept, shuffled in a seeded buffer, decoded, batched.

The held-out split is a pure function of each sample's `uid` (a salted hash),
so it does not depend on sharding, worker count or the order of shards, and a
pair is held out by the trainer and the bootstrap filter alike. The bootstrap
filter is cross-fitted: a third, independent salted hash puts each pair in
one of K folds, and filter k trains on the other folds (`fold_split_of`).

Nothing is lost silently: each batch carries the counts of samples read,
dropped (by reason) and skipped since the previous batch, and the last item
of each worker's stream carries what remained (a partial batch that training
leaves out, by open_clip's rule).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import fsspec
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import get_worker_info
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSION = "txt"
META_EXTENSION = "json"
WANTED_EXTENSIONS = frozenset((*IMAGE_EXTENSIONS, CAPTION_EXTENSION, META_EXTENSION))
HELDOUT_SALT = b"webli-heldout-v1"
SUBSET_SALT = b"webli-subset-v1"
FOLD_SALT = b"webli-fold-v1"
TRAIN, EVAL, UNUSED = "train", "eval", "unused"
SCORED = "scored"  # a fold filter's own fold, not held out for its AUC: it only scores those pairs
MIN_BATCH = 2  # a contrastive batch needs a negative


def uid_position(uid: str, salt: bytes) -> float:
    """A uniform number in [0, 1) fixed by the uid and the salt."""
    digest = hashlib.blake2b(uid.encode("utf-8"), digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "big") / 2**64


def in_subset(uid: str, subset_fraction: float) -> bool:
    """Whether the pair is in the subset (e.g. the bootstrap split) of that share, by uid hash."""
    return subset_fraction >= 1.0 or uid_position(uid, SUBSET_SALT) < subset_fraction


def split_of(uid: str, eval_fraction: float, subset_fraction: float = 1.0) -> str:
    """'unused' outside the subset (e.g. the bootstrap split), else 'eval' for held-out pairs, else 'train'.

    The two draws are independent, so the held-out share is the same inside any subset.
    """
    if not in_subset(uid, subset_fraction):
        return UNUSED
    return EVAL if uid_position(uid, HELDOUT_SALT) < eval_fraction else TRAIN


def fold_of(uid: str, folds: int) -> int:
    """The cross-fitting fold (0 .. folds-1) of a pair: a salted uid hash independent of the other draws."""
    return min(int(uid_position(uid, FOLD_SALT) * folds), folds - 1)


def fold_split_of(uid: str, eval_fraction: float, subset_fraction: float, fold: int, folds: int) -> str:
    """What the filter of fold `fold` (of `folds`) does with a pair.

    'unused' outside the subset; 'train' for a pair of another fold; for a
    pair of its own fold, which it scores and never trains on: 'eval' when
    held out for its AUC (the held-out hash, as in `split_of`), else 'scored'.
    """
    if not in_subset(uid, subset_fraction):
        return UNUSED
    if fold_of(uid, folds) != fold:
        return TRAIN
    return EVAL if uid_position(uid, HELDOUT_SALT) < eval_fraction else SCORED


@dataclass
class StreamCounts:
    """What a stream did with the samples it read, mergeable across batches and workers."""

    read: int = 0  # samples of the wanted split read from the shards
    skipped: Counter = field(default_factory=Counter)  # samples of the other splits, by split
    used: int = 0  # decoded into a batch (or into the left-out partial batch)
    unbatched: int = 0  # decoded but left in a partial last batch (training only)
    dropped: Counter = field(default_factory=Counter)  # reason -> samples
    problems: Counter = field(default_factory=Counter)  # reason -> occurrences (shard read errors, no uid)

    def add(self, other: StreamCounts) -> None:
        self.read += other.read
        self.skipped.update(other.skipped)
        self.used += other.used
        self.unbatched += other.unbatched
        self.dropped.update(other.dropped)
        self.problems.update(other.problems)

    def take(self) -> StreamCounts:
        """A copy of the counts so far; the counts restart from zero."""
        taken = StreamCounts(self.read, Counter(self.skipped), self.used, self.unbatched, Counter(self.dropped),
                             Counter(self.problems))
        self.__init__()
        return taken

    def as_dict(self) -> dict:
        return {"read": self.read, "skipped_by_split": dict(sorted(self.skipped.items())), "used": self.used,
                "unbatched": self.unbatched,
                "dropped_by_reason": dict(sorted(self.dropped.items())),
                "problems_by_reason": dict(sorted(self.problems.items()))}


@dataclass
class Batch:
    """Decoded tensors (None in a counts-only item) and the stream counts since the previous item."""

    images: torch.Tensor | None
    texts: torch.Tensor | None
    keys: list[str]
    counts: StreamCounts

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class StreamSpec:
    """Everything a worker needs to rebuild the stream of one epoch (picklable)."""

    urls: tuple[str, ...]
    split: str  # TRAIN or EVAL
    eval_fraction: float
    batch_size: int
    subset_fraction: float = 1.0
    seed: int = 0
    epoch: int = 0
    shuffle: bool = True
    shuffle_buffer: int = 2000
    drop_partial: bool = True
    fold: int | None = None  # cross-fitting: the fold whose filter this stream feeds (None: no folds)
    folds: int = 1


def stream_split(uid: str, spec: StreamSpec) -> str:
    """The split of a pair in this stream: `split_of`, or `fold_split_of` for a cross-fitting fold."""
    if spec.fold is None:
        return split_of(uid, spec.eval_fraction, spec.subset_fraction)
    return fold_split_of(uid, spec.eval_fraction, spec.subset_fraction, spec.fold, spec.folds)


class ReadErrorCounter:
    """A webdataset `handler=`: count and log each read error, then continue with the next member or shard."""

    def __init__(self, counts: StreamCounts, record: bool = True):
        self.counts, self.record = counts, record  # record=False: another worker counts the same errors

    def __call__(self, exn: Exception) -> bool:
        if self.record:
            self.counts.problems[f"shard_read_error:{type(exn).__name__}"] += 1
            log.warning("skipping unreadable tar content: %r", exn)
        return True


def worker_slot() -> tuple[int, int]:
    """(this DataLoader worker's id, number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def epoch_shards(spec: StreamSpec) -> list[str]:
    """The shard order of this epoch: seeded by (seed, epoch) when shuffling, else as given."""
    urls = list(spec.urls)
    if spec.shuffle:
        random.Random(f"shards-{spec.seed}-{spec.epoch}").shuffle(urls)
    return urls


def open_shards(urls: Iterable[str], handler: Callable[[Exception], bool]) -> Iterator[dict]:
    """webdataset's opener stage on fsspec: {'url', 'stream'} per readable shard."""
    for url in urls:
        try:
            stream = fsspec.open(url, "rb").open()
        except (OSError, ValueError) as err:
            handler(err)
            continue
        try:
            yield {"url": url, "stream": stream}
        finally:
            stream.close()


def wanted_member(name: str) -> bool:
    """Only images, captions and metadata are read (a `KEY.large.jpg` copy is skipped unread)."""
    extension = base_plus_ext(name)[1]
    return extension is not None and extension.lower() in WANTED_EXTENSIONS


def raw_samples(urls: Iterable[str], handler: Callable[[Exception], bool]) -> Iterator[dict]:
    """{'__key__', 'jpg', 'txt', 'json', ...} samples of the given tar shards, in order."""
    files = tar_file_expander(open_shards(urls, handler), handler=handler, select_files=wanted_member)
    return group_by_keys(files, handler=handler)


def sample_uid(sample: dict, counts: StreamCounts) -> str:
    """The pair's uid from `KEY.json`, else its key (counted as a problem: the split then depends on keys)."""
    try:
        uid = json.loads(sample[META_EXTENSION]).get("uid")
    except (KeyError, ValueError, AttributeError):
        uid = None
    if isinstance(uid, str) and uid:
        return uid
    counts.problems["no_uid"] += 1
    return sample["__key__"]


def of_split(samples: Iterable[dict], spec: StreamSpec, counts: StreamCounts) -> Iterator[dict]:
    """Samples of `spec.split` (counted as read); the others counted as skipped, by split."""
    for sample in samples:
        split = stream_split(sample_uid(sample, counts), spec)
        if split == spec.split:
            counts.read += 1
            yield sample
        else:
            counts.skipped[split] += 1


def decode_image(sample: dict) -> tuple[Image.Image | None, str | None]:
    """(the sample's RGB image, None) or (None, why it has none)."""
    data = next((sample[e] for e in IMAGE_EXTENSIONS if e in sample), None)
    if data is None:
        return None, "missing_image"
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB"), None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None, "decode_error"


def decode_caption(sample: dict) -> tuple[str | None, str | None]:
    """(the sample's caption, None) or (None, 'missing_caption' / 'caption_bad_encoding' / 'empty_caption')."""
    if CAPTION_EXTENSION not in sample:
        return None, "missing_caption"
    try:
        text = sample[CAPTION_EXTENSION].decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "caption_bad_encoding"
    return (text, None) if text else (None, "empty_caption")


@dataclass(frozen=True)
class Pair:
    key: str
    image: torch.Tensor
    text: torch.Tensor


def decode_pairs(samples: Iterable[dict], preprocess: Callable, tokenizer: Callable,
                 counts: StreamCounts) -> Iterator[Pair]:
    """Decoded (image tensor, token ids) pairs; undecodable samples counted by reason (image checked first)."""
    for sample in samples:
        image, image_problem = decode_image(sample)
        caption, caption_problem = decode_caption(sample)
        if image_problem or caption_problem:
            counts.dropped[image_problem or caption_problem] += 1
            continue
        yield Pair(sample["__key__"], preprocess(image), tokenizer([caption])[0])


def batched(pairs: Iterable[Pair], batch_size: int, drop_partial: bool, counts: StreamCounts) -> Iterator[Batch]:
    """Batches carrying the counts since the previous one; a last counts-only item closes the stream.

    With `drop_partial`, the last partial batch is left out (open_clip's rule), unless the stream had no
    full batch at all: a data set smaller than one batch still trains, on one batch of 2+ pairs per epoch.
    """
    buffer: list[Pair] = []
    full_batches = 0
    for pair in pairs:
        buffer.append(pair)
        counts.used += 1
        if len(buffer) == batch_size:
            yield stack(buffer, counts.take())
            buffer, full_batches = [], full_batches + 1
    if buffer and (not drop_partial or (full_batches == 0 and len(buffer) >= MIN_BATCH)):
        yield stack(buffer, counts.take())
        buffer = []
    counts.unbatched += len(buffer)
    yield Batch(None, None, [], counts.take())


def stack(pairs: list[Pair], counts: StreamCounts) -> Batch:
    return Batch(torch.stack([p.image for p in pairs]), torch.stack([p.text for p in pairs]),
                 [p.key for p in pairs], counts)


def stream_batches(spec: StreamSpec, preprocess: Callable, tokenizer: Callable) -> Iterator[Batch]:
    """One worker's batches for one epoch (runs inside a DataLoader worker, or in the main process)."""
    worker, workers = worker_slot()
    counts = StreamCounts()
    shards = epoch_shards(spec)
    split_by_shard = len(shards) >= workers
    handler = ReadErrorCounter(counts, record=split_by_shard or worker == 0)
    if split_by_shard:
        shards = shards[worker::workers]
    samples = raw_samples(shards, handler)
    if not split_by_shard:
        samples = (s for i, s in enumerate(samples) if i % workers == worker)
    samples = of_split(samples, spec, counts)
    if spec.shuffle:
        rng = random.Random(f"samples-{spec.seed}-{spec.epoch}-{worker}")
        samples = wds.shuffle(spec.shuffle_buffer, min(spec.shuffle_buffer, 100), rng=rng)(samples)
    pairs = decode_pairs(samples, preprocess, tokenizer, counts)
    return batched(pairs, spec.batch_size, spec.drop_partial, counts)


class EpochStream(torch.utils.data.IterableDataset):
    """An IterableDataset of one epoch's batches (each DataLoader worker builds its own part)."""

    def __init__(self, spec: StreamSpec, preprocess: Callable, tokenizer: Callable):
        super().__init__()
        self.spec, self.preprocess, self.tokenizer = spec, preprocess, tokenizer

    def __iter__(self) -> Iterator[Batch]:
        return stream_batches(self.spec, self.preprocess, self.tokenizer)


def _quiet_worker(_: int) -> None:
    torch.set_num_threads(1)  # the main process owns the cores for the model


def epoch_loader(spec: StreamSpec, preprocess: Callable, tokenizer: Callable, workers: int) -> Iterable[Batch]:
    """The batches of one epoch: built in the main process (workers=0) or by DataLoader worker processes."""
    dataset = EpochStream(spec, preprocess, tokenizer)
    if workers == 0:
        return dataset
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers, worker_init_fn=_quiet_worker)


def count_tar_samples(url: str) -> int:
    """Samples (distinct keys) in a tar shard, reading its headers through fsspec."""
    keys = set()
    with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        for member in tar:
            key = base_plus_ext(member.name)[0] if member.isreg() else None
            if key is not None:
                keys.add(key)
    return len(keys)
