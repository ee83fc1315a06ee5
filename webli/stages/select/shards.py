"""The final shards: planned from per-input-shard counts, written as WebDataset tars with a Parquet index.

Selected samples are numbered in input order (download shard id, then key)
and cut into output shards of near-equal size, planned before any is written:
the same selection always gives the same shards, byte for byte (fixed tar
member metadata, sorted JSON keys). Small outputs still get `min_shards`
shards (one sample each at least) so that every data-loader worker of
open_clip's trainer has a shard to read.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
import webdataset as wds

from webli import schemas
from webli.schemas.select import SHARD
from webli.stages.score import IMAGE_EXTENSIONS

TAR_MTIME = 0.0  # fixed member times: reproducible tars


@dataclass(frozen=True)
class Piece:
    """A run of one input shard's selected samples (positions in key order) that goes into an output shard."""

    input_shard: int
    start: int
    stop: int
    of: int  # how many samples that input shard has selected in all (checked when the piece is written)


def output_sizes(total: int, shard_size: int, min_shards: int) -> list[int]:
    """Near-equal sizes of the output shards: at most `shard_size` each, at least `min_shards` shards
    when there are that many samples, never an empty shard."""
    if total == 0:
        return []
    count = max(math.ceil(total / shard_size), min(min_shards, total))
    base, extra = divmod(total, count)
    return [base + 1 if i < extra else base for i in range(count)]


def plan_output_shards(selected: list[tuple[int, int]], shard_size: int, min_shards: int) -> list[list[Piece]]:
    """The pieces of every output shard, from (input shard id, selected count) in input order."""
    ids = [shard_id for shard_id, _ in selected]
    starts = np.concatenate([[0], np.cumsum([count for _, count in selected], dtype=np.int64)])
    plan, begin = [], 0
    for size in output_sizes(int(starts[-1]), shard_size, min_shards):
        end, pieces = begin + size, []
        first = int(np.searchsorted(starts, begin, side="right")) - 1
        for i in range(first, len(ids)):
            if starts[i] >= end:
                break
            start, stop = max(begin, starts[i]) - starts[i], min(end, starts[i + 1]) - starts[i]
            if stop > start:
                pieces.append(Piece(ids[i], int(start), int(stop), int(starts[i + 1] - starts[i])))
        plan.append(pieces)
        begin = end
    return plan


def tar_image_members(fileobj: IO[bytes]) -> dict[str, tarfile.TarInfo]:
    """key -> member of each main image (`KEY.jpg|png|webp`) of a seekable tar, headers only."""
    found = {}
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:
        for member in tar.getmembers():
            key, _, extension = member.name.rsplit("/", 1)[-1].partition(".")
            if member.isfile() and extension.lower() in IMAGE_EXTENSIONS:
                found.setdefault(key, member)
    return found


def read_images(fileobj: IO[bytes], keys: Iterable[str]) -> Iterator[tuple[str, str, bytes]]:
    """(key, extension, bytes) of each key's image, in the order of `keys`; one image in memory at a time."""
    members = tar_image_members(fileobj)
    fileobj.seek(0)
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:
        for key in keys:
            member = members.get(key)
            if member is None:
                raise RuntimeError(f"sample {key} was scored but its image is not in its download tar: "
                                   "the download shard changed after scoring")
            yield key, member.name.rsplit("/", 1)[-1].partition(".")[2].lower(), tar.extractfile(member).read()


def sample_metadata(row: dict) -> bytes:
    """The sample's `json`: every index column (an Arrow row as Python values) but the output shard number."""
    record = {name: value for name, value in row.items() if name != SHARD}
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8")


def tar_sample(row: dict, extension: str, image: bytes) -> dict:
    """The WebDataset sample: the image, `txt` = alt text, `json` = every metadata field."""
    return {"__key__": row[schemas.KEY], extension: image, "txt": row[schemas.CAPTION].encode("utf-8"),
            "json": sample_metadata(row)}


def write_tar(fileobj: IO[bytes], samples: Iterable[dict]) -> int:
    """Write samples to a tar with fixed member metadata; returns how many."""
    written = 0
    with wds.TarWriter(fileobj, mtime=TAR_MTIME) as writer:
        for sample in samples:
            writer.write(sample)
            written += 1
    return written
