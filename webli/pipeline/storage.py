"""Shard I/O under the output root: atomic writes, stats JSON as done marker.

Every file of a shard is first written under a temporary name and renamed
when complete; the shard's `NNNNN_stats.json` is written last, so its presence
means every other file of the shard is whole. A stage skips shards that have
one, which makes a killed run resume where it stopped and a re-run a no-op.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from webli.schemas import conform

SHARD_DIGITS = 5
TMP_MARK = ".tmp-"


def shard_name(shard_id: int) -> str:
    """img2dataset's shard numbering: 00000, 00001, ..."""
    return f"{shard_id:0{SHARD_DIGITS}d}"


def check_stats(stats: dict) -> dict:
    """Check the stats vocabulary: total = forwarded + sum of drops by reason."""
    dropped = sum(stats.get("dropped_by_reason", {}).values())
    if stats["total"] != stats["forwarded"] + dropped:
        raise ValueError(
            f"stats do not add up: total {stats['total']} != forwarded {stats['forwarded']} + dropped {dropped}")
    return {**stats, "dropped": dropped}


@dataclass(frozen=True)
class StageDir:
    """The folder `<output>/<stage>/` of one stage, on any fsspec file system."""

    root: str
    stage: str

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.core.url_to_fs(self.root)[0]

    @property
    def path(self) -> str:
        root = fsspec.core.url_to_fs(self.root)[1]
        return f"{root.rstrip('/')}/{self.stage}"

    def file(self, name: str) -> str:
        """Path of a file in this stage's folder."""
        return f"{self.path}/{name}"

    def url(self, name: str) -> str:
        """fsspec URL of a file in this stage's folder (protocol kept)."""
        protocol = fsspec.core.split_protocol(self.root)[0]
        return f"{protocol}://{self.file(name)}" if protocol else self.file(name)

    def stats_path(self, shard_id: int) -> str:
        return self.file(f"{shard_name(shard_id)}_stats.json")

    def is_done(self, shard_id: int) -> bool:
        """True when the shard's stats JSON (its done marker) exists."""
        return self.fs.exists(self.stats_path(shard_id))

    def done_shards(self) -> set[int]:
        """Ids of every finished shard."""
        if not self.fs.exists(self.path):
            return set()
        names = (p.rsplit("/", 1)[-1] for p in self.fs.ls(self.path, detail=False))
        return {int(n[:SHARD_DIGITS]) for n in names if n.endswith("_stats.json") and n[:SHARD_DIGITS].isdigit()}

    def makedirs(self) -> None:
        self.fs.makedirs(self.path, exist_ok=True)

    @contextmanager
    def atomic_path(self, name: str) -> Iterator[str]:
        """Yield a temporary path; on success it is renamed to `name`."""
        final = self.file(name)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        temporary = f"{final}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        try:
            yield temporary
            self.fs.mv(temporary, final)
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file atomically."""
        with self.atomic_path(name) as tmp, self.fs.open(tmp, "wb") as out:
            out.write(data)

    def write_json(self, name: str, obj) -> None:
        self.write_bytes(name, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True).encode())

    def read_json(self, name: str):
        with self.fs.open(self.file(name), "rb") as f:
            return json.load(f)

    def write_table(self, name: str, table: pa.Table, schema: pa.Schema) -> None:
        """Check `table` against `schema` and write it as Parquet, atomically."""
        table = conform(table, schema)
        with self.atomic_path(name) as tmp, self.fs.open(tmp, "wb") as out:
            pq.write_table(table, out, compression="zstd")

    def read_table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(self.file(name), "rb") as f:
            return pq.read_table(f, columns=columns)

    def write_stats(self, shard_id: int, stats: dict) -> None:
        """Write the shard's stats JSON: call it last, it marks the shard done."""
        self.write_json(f"{shard_name(shard_id)}_stats.json", check_stats(stats))

    def read_all_stats(self) -> dict[int, dict]:
        """Stats of every finished shard, by shard id."""
        return {i: self.read_json(f"{shard_name(i)}_stats.json") for i in sorted(self.done_shards())}

    def remove_stale_temporaries(self) -> int:
        """Delete temporaries left by killed tasks; returns how many."""
        if not self.fs.exists(self.path):
            return 0
        stale = [p for p in self.fs.find(self.path) if TMP_MARK in p.rsplit("/", 1)[-1]]
        for path in stale:
            self.fs.rm(path, recursive=True)
        return len(stale)


def sum_counts(stats: list[dict], field: str) -> Counter:
    """A per-name count field of shard stats (e.g. `dropped_by_reason`), summed over the shards."""
    total: Counter = Counter()
    for record in stats:
        total.update(record.get(field, {}))
    return total


def sum_stats(stats: list[dict]) -> dict:
    """Sum per-shard stats (totals and drops by reason) into one record."""
    total = {"shards": len(stats), **{field: sum(r.get(field, 0) for r in stats)
                                      for field in ("total", "forwarded", "dropped")}}
    dropped = sum_counts(stats, "dropped_by_reason")
    total["dropped_by_reason"] = dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])))
    return total
