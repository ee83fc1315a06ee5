"""Read a run's output tree for the card: stats, shard tables and JSON files, stage by stage.

Only reading happens here: the card's sections (`webli.stages.card.sections`)
fold what these functions yield. Every table is read shard by shard and only
the columns a section needs, so memory does not grow with the run. A column a
section asks for but a table lacks is reported, not guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from webli.pipeline.storage import StageDir, shard_name

log = logging.getLogger(__name__)

# The stages of the flow whose outputs the card reads, in pipeline order.
STAGES = ("crawl", "download", "ocr", "dedup", "score", "select", "train")
SIDECAR_STAGES = ("ocr", "dedup", "score")
NOT_RUN, PARTIAL, COMPLETE = "not run", "partial", "complete"


@dataclass(frozen=True)
class StageProgress:
    """How far a stage got: finished shards out of those expected (None: unknown)."""

    stage: str
    shards_done: int
    shards_expected: int | None
    finished: bool = True  # the stage's final file (written after every shard) exists

    @property
    def status(self) -> str:
        if self.shards_done == 0:
            return NOT_RUN
        if not self.finished or (self.shards_expected is not None and self.shards_done < self.shards_expected):
            return PARTIAL
        return COMPLETE

    def as_dict(self) -> dict:
        return {"status": self.status, "shards_done": self.shards_done, "shards_expected": self.shards_expected}


class MissingColumns(ValueError):
    """A table lacks a column a section needs (the stage's format changed, or the file is foreign)."""


@dataclass(frozen=True)
class ShardTable:
    """The requested columns of one shard's table."""

    shard_id: int
    table: pa.Table


class RunOutputs:
    """The output tree of one run (a local path or an fsspec URL)."""

    def __init__(self, root: str):
        self.root = root

    def store(self, stage: str) -> StageDir:
        return StageDir(self.root, stage)

    def exists(self, stage: str, name: str) -> bool:
        store = self.store(stage)
        return store.fs.exists(store.file(name))

    def read_json(self, stage: str, name: str):
        """A JSON file of a stage's folder, or None if it does not exist."""
        return self.store(stage).read_json(name) if self.exists(stage, name) else None

    def shard_stats(self, stage: str) -> dict[int, dict]:
        """Stats JSON of every finished shard of a stage, by shard id."""
        return self.store(stage).read_all_stats()

    def list_files(self, stage: str, folder: str = "", suffix: str = "") -> list[str]:
        """Names of the files directly in a stage's (sub)folder ending with `suffix`, sorted."""
        store = self.store(stage)
        path = store.file(folder) if folder else store.path
        if not store.fs.isdir(path):
            return []
        names = (p.rsplit("/", 1)[-1] for p in store.fs.ls(path, detail=False))
        return sorted(n for n in names if n.endswith(suffix) and ".tmp-" not in n)

    def table_columns(self, stage: str, name: str) -> pa.Schema:
        store = self.store(stage)
        with store.fs.open(store.file(name), "rb") as f:
            return pq.read_schema(f)

    def read_table(self, stage: str, name: str, columns: list[str], optional: tuple[str, ...] = ()) -> pa.Table:
        """`columns` of one Parquet file, plus those of `optional` it has; MissingColumns if it lacks one."""
        present = set(self.table_columns(stage, name).names)
        missing = [c for c in columns if c not in present]
        if missing:
            raise MissingColumns(f"{stage}/{name} lacks column(s) {missing}")
        return self.store(stage).read_table(name, [*columns, *(c for c in optional if c in present)])

    def shard_tables(self, stage: str, columns: list[str], suffix: str = ".parquet",
                     optional: tuple[str, ...] = ()) -> Iterator[ShardTable]:
        """`NNNNN<suffix>` of every finished shard of a stage, in shard order."""
        for shard_id in sorted(self.store(stage).done_shards()):
            name = f"{shard_name(shard_id)}{suffix}"
            if not self.exists(stage, name):
                raise MissingColumns(f"{stage} shard {shard_id} is marked done but has no {name}")
            yield ShardTable(shard_id, self.read_table(stage, name, columns, optional))

    def open_file(self, stage: str, name: str):
        """A binary file object of a file in a stage's folder."""
        store = self.store(stage)
        return store.fs.open(store.file(name), "rb")


def stage_progress(outputs: RunOutputs, stage: str) -> StageProgress:
    """Finished shards of a stage and how many were planned (as far as the tree tells)."""
    done = len(outputs.store(stage).done_shards())
    if stage == "crawl":
        plan = outputs.read_json("crawl", "_plan.json")
        return StageProgress(stage, done, len(plan) if plan is not None else None)
    if stage == "download":
        plan = outputs.read_json("download", "_plan/plan.json")
        return StageProgress(stage, done, plan["shards"] if plan else None)
    if stage in SIDECAR_STAGES:
        return StageProgress(stage, done, len(outputs.store("download").done_shards()))
    if stage == "select":  # one stats JSON per download shard, then selection.json last
        return StageProgress(stage, done, len(outputs.store("download").done_shards()),
                             outputs.exists("select", "selection.json"))
    if stage == "train":  # the trainer writes stats.json last, as its done marker
        return StageProgress(stage, int(outputs.exists("train", "stats.json")), 1)
    raise ValueError(f"unknown stage {stage!r}")
