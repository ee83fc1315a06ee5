"""The card's sample grid: a few kept and rejected images with their alt texts, drawn reproducibly.

Samples are drawn from the download shards in shard order, until the grid
is full: in each shard, from its first rows in key order (a window of
`WINDOW_PER_SAMPLE` rows per grid place; the download plan orders rows by
uid, a hash, so these are already a random subset, and their images sit
near the start of the tar, which is read only that far), ranked by a seeded
hash of their uid. Kept means
"in the final shards" once select has run (by uid, in the select index) and
"downloaded" before. Rejected images are downloaded samples that select left
out, with select's own reason (its `drop_reason` rule re-applied to the
joined shard; `below_threshold` for eligible ones). Rows that failed to
download have no image and are listed with their alt text and drop reason.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from webli.schemas.score import MODEL_ID, PROBLEM, SCORE
from webli.schemas.select import DEDUP_COLUMNS
from webli.stages.card.outputs import RunOutputs
from webli.stages.select.join import drop_reasons, join_shard

IMAGE_EXTENSIONS = ("jpg", "png", "webp")
# kept: in the final shards (or downloaded, before select runs); rejected: downloaded, not selected;
# failed: not downloaded (no image).
GROUPS = ("kept", "rejected", "failed")
BELOW_THRESHOLD = "below_threshold"  # eligible, but under the selection threshold
SAMPLE_COLUMNS = ["key", "uid", "caption", "language", "status", "drop_reason"]
WINDOW_PER_SAMPLE = 25


@dataclass
class Sample:
    """One sample shown on the card."""

    key: str
    uid: str
    caption: str
    language: str
    group: str  # one of GROUPS
    reason: str | None = None  # why it was rejected or failed
    score: float | None = None
    image: bytes | None = None  # the thumbnail, JPEG

    def as_dict(self) -> dict:
        return {"key": self.key, "uid": self.uid, "caption": self.caption, "language": self.language,
                "group": self.group, "reason": self.reason, "score": self.score, "has_image": self.image is not None}


def ranked(table: pa.Table, seed: int) -> pa.Table:
    """Rows ordered by a seeded hash of their uid: a reproducible shuffle."""
    order = [hashlib.blake2b(f"{seed}:{uid}".encode(), digest_size=8).hexdigest()
             for uid in table.column("uid").to_pylist()]
    return table.append_column("_rank", pa.array(order)).sort_by("_rank").drop_columns(["_rank"])


def selected_uids(outputs: RunOutputs, candidates: Iterable[str]) -> set[str] | None:
    """Which candidate uids are in the select index (None when select has not run)."""
    if not outputs.exists("select", "selection.json"):
        return None
    wanted, found = pa.array(sorted(set(candidates)), pa.string()), set()
    for name in outputs.list_files("select", "shards", ".parquet"):
        uids = outputs.read_table("select", f"shards/{name}", ["uid"]).column("uid")
        found.update(uids.filter(pc.is_in(uids, value_set=wanted)).to_pylist())
    return found


def sidecar_values(outputs: RunOutputs, stage: str, shard_id: int, column: str) -> dict[str, object]:
    """key -> a sidecar column's value for one shard ({} if the sidecar is absent)."""
    name = f"{shard_id:05d}.parquet"
    if not outputs.exists(stage, name):
        return {}
    table = outputs.read_table(stage, name, ["key", column])
    return dict(zip(table.column("key").to_pylist(), table.column(column).to_pylist()))


def select_reasons(outputs: RunOutputs, shard_id: int) -> dict[str, str | None]:
    """key -> why select could not keep the sample (its own rule, `drop_reason`), None if it was eligible."""
    name = f"{shard_id:05d}.parquet"
    selection = outputs.read_json("select", "selection.json") or {}
    used_dedup = selection.get("inputs", {}).get("dedup", False)
    download = outputs.store("download").read_table(name)
    score = outputs.read_table("score", name, ["key", SCORE, MODEL_ID, PROBLEM])
    dedup = outputs.read_table("dedup", name, ["key"], optional=tuple(DEDUP_COLUMNS)) if used_dedup else None
    joined = join_shard(download, score, None, dedup)
    return dict(zip(joined.column("key").to_pylist(), drop_reasons(joined)))


def thumbnails(tar: io.BufferedIOBase, keys: set[str], size: int) -> dict[str, bytes]:
    """JPEG thumbnails (longest side `size`) of the given keys' main image in a WebDataset tar."""
    found = {}
    with tarfile.open(fileobj=tar, mode="r|*") as stream:
        for member in stream:
            key, _, extension = member.name.rpartition("/")[2].partition(".")
            if key in keys and extension in IMAGE_EXTENSIONS and member.isfile():
                found[key] = thumbnail(stream.extractfile(member).read(), size)
                if len(found) == len(keys):
                    break
    return found


def thumbnail(data: bytes, size: int) -> bytes:
    """A JPEG thumbnail of an encoded image, longest side at most `size`."""
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85, optimize=True)
        return out.getvalue()


def shard_samples(outputs: RunOutputs, shard_id: int, table: pa.Table) -> list[Sample]:
    """Every row of one download shard as a Sample (in the table's order), without images."""
    succeeded = pc.equal(table.column("status"), "success").to_pylist()
    selected = selected_uids(outputs, [u for u, ok in zip(table.column("uid").to_pylist(), succeeded) if ok])
    scores = sidecar_values(outputs, "score", shard_id, "score")
    reasons = select_reasons(outputs, shard_id) if selected is not None else {}
    samples = []
    for row, ok in zip(table.to_pylist(), succeeded):
        if not ok:
            group, reason = "failed", row["drop_reason"] or row["status"]
        elif selected is None or row["uid"] in selected:
            group, reason = "kept", None
        else:
            group, reason = "rejected", reasons.get(row["key"]) or BELOW_THRESHOLD
        samples.append(Sample(row["key"], row["uid"], row["caption"], row["language"], group, reason,
                              scores.get(row["key"])))
    return samples


def draw_samples(outputs: RunOutputs, per_group: int, size: int, seed: int) -> dict[str, list[Sample]] | None:
    """Up to `per_group` samples of each group, drawn shard by shard; kept and rejected ones with thumbnails.

    None when nothing has been downloaded."""
    if not outputs.store("download").done_shards():
        return None
    groups: dict[str, list[Sample]] = {group: [] for group in GROUPS}
    for shard in outputs.shard_tables("download", SAMPLE_COLUMNS):
        if all(len(members) >= per_group for members in groups.values()):
            break
        chosen, window = [], shard.table.sort_by("key").slice(0, WINDOW_PER_SAMPLE * per_group * len(GROUPS))
        for sample in shard_samples(outputs, shard.shard_id, ranked(window, seed)):
            if len(groups[sample.group]) < per_group:
                groups[sample.group].append(sample)
                chosen.append(sample)
        with_image = {s.key: s for s in chosen if s.group != "failed"}
        if with_image:
            with outputs.open_file("download", f"{shard.shard_id:05d}.tar") as tar:
                for key, image in thumbnails(tar, set(with_image), size).items():
                    with_image[key].image = image
    return groups
