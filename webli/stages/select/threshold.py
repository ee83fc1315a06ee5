"""The exact global top-k by score, ties broken by key, with bounded memory: radix selection on counts.

Samples are ordered by score descending, then key ascending. A sample's score
becomes a *code*, a uint32 that sorts ascending when the float32 score sorts
descending; its key is compared as UTF-8 bytes (the same order as Python's
`str`). The k-th sample in that order is the threshold: a sample is kept when
its code is lower, or equal with a key no greater.

The threshold is found one digit at a time. In each round every shard counts
its candidates per value of the next digit, within the prefix fixed so far,
for each group still searched (one group, or one per language); the driver
adds the counts (a histogram is mergeable: the sum over shards is the
histogram of the union) and fixes the digit holding the k-th sample:

1. `high`: the code's high 16 bits, over every shard (65,536 bins);
2. `low`: its low 16 bits within that bin, over every shard: the exact score.
   If every sample at that score is kept, this is the end;
3. `census`: which shards hold samples at exactly that score;
4. `key`: one byte of the key per round (257 bins: end of key, then each byte
   value), over those shards only, until the key ends.

No approximation: the result is the exact k-th sample. Memory per worker is
one shard's candidates; the driver holds one histogram per group (at most
65,536 counts) and the ids of the shards that hold ties.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import pyarrow as pa

from webli import schemas
from webli.schemas.score import SCORE

ALL = "*"  # the one group of global selection (language codes never look like this)
HIGH, LOW, CENSUS, KEY, DONE = "high", "low", "census", "key", "done"
SIGN = 0x80000000
MASK32 = 0xFFFFFFFF


def score_codes(scores: np.ndarray) -> np.ndarray:
    """uint32 codes that sort ascending as the float32 scores sort descending (-0.0 and 0.0 share one)."""
    values = np.asarray(scores, dtype=np.float32) + np.float32(0.0)
    bits = values.view(np.uint32)
    ascending = np.where(bits & np.uint32(SIGN), ~bits, bits | np.uint32(SIGN))
    return (~ascending).astype(np.uint32)


def code_score(code: int) -> float:
    """The float32 score of a code, as a Python float."""
    ascending = MASK32 - code
    bits = ascending ^ SIGN if ascending & SIGN else MASK32 - ascending
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def keep_count(eligible: int, fraction: float, round_up: bool = False) -> int:
    """How many of `eligible` samples the fraction keeps: floor (or ceil) of the exact product.

    The fraction is read as the decimal written (0.29 × 100 = 29, not 28.999…).
    """
    exact = Fraction(repr(float(fraction))) * eligible
    return min(eligible, math.ceil(exact) if round_up else math.floor(exact))


@dataclass(frozen=True)
class Threshold:
    """The cut of one group: keep everything (keep = eligible), nothing (keep = 0), or up to (code, key)."""

    eligible: int
    keep: int
    code: int | None = None
    key: str | None = None  # None with a code: every sample at exactly that score is kept

    def mask(self, codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Which of these samples (codes and keys of one group) are kept."""
        if self.keep == 0:
            return np.zeros(len(codes), dtype=bool)
        if self.keep == self.eligible:
            return np.ones(len(codes), dtype=bool)
        kept = codes < self.code
        tied = np.flatnonzero(codes == self.code)
        kept[tied] = [self.key is None or keys[i] <= self.key for i in tied]
        return kept

    def to_json(self) -> dict:
        score = None if self.code is None else code_score(self.code)
        return {"eligible": self.eligible, "keep": self.keep, "score": score, "score_code": self.code,
                "key": self.key}

    @classmethod
    def from_json(cls, record: dict) -> Threshold:
        return cls(record["eligible"], record["keep"], record["score_code"], record["key"])


def pick_digit(counts: Counter, rank: int) -> tuple[int, int]:
    """(the digit holding the rank-th sample, its rank within that digit's samples); rank is 1-based."""
    before = 0
    for digit in sorted(counts):
        if before + counts[digit] >= rank:
            return digit, rank - before
        before += counts[digit]
    raise RuntimeError(f"the shards hold {before} candidates in this range but rank {rank} was sought: "
                       "the candidates changed during the search")


@dataclass
class GroupSearch:
    """The radix search of one group's threshold, advanced one round at a time."""

    eligible: int
    keep: int
    phase: str
    rank: int
    code: int = 0
    prefix: bytes = b""
    key: str | None = None
    tie_shards: set[int] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)

    @classmethod
    def start(cls, eligible: int, keep: int) -> GroupSearch:
        return cls(eligible, keep, DONE if keep in (0, eligible) else HIGH, keep)

    def query(self) -> tuple[str, int, bytes]:
        """What each shard counts for this group this round: (phase, code so far, key prefix so far)."""
        return self.phase, self.code, self.prefix

    def absorb(self, shard_id: int, counts: dict[int, int]) -> None:
        """Add one shard's counts of this round."""
        self.counts.update(counts)
        if self.phase == CENSUS and counts:
            self.tie_shards.add(shard_id)

    def advance(self) -> None:
        """Fix the next digit from the summed counts of the round."""
        counts, self.counts = self.counts, Counter()
        if self.phase == CENSUS:
            self.phase = KEY
            return
        digit, self.rank = pick_digit(counts, self.rank)
        if self.phase == HIGH:
            self.code, self.phase = digit << 16, LOW
        elif self.phase == LOW:
            self.code |= digit
            self.phase = DONE if self.rank == counts[digit] else CENSUS
        elif digit == 0:
            self.key, self.phase = self.prefix.decode("utf-8"), DONE
        else:
            self.prefix += bytes([digit - 1])

    def threshold(self) -> Threshold:
        if self.keep in (0, self.eligible):
            return Threshold(self.eligible, self.keep)
        return Threshold(self.eligible, self.keep, self.code, self.key)


@dataclass(frozen=True)
class ShardCandidates:
    """One shard's candidates as arrays: codes, keys, groups (languages, or None for global selection)."""

    codes: np.ndarray
    keys: np.ndarray
    groups: np.ndarray | None

    @classmethod
    def from_table(cls, table: pa.Table, per_language: bool) -> ShardCandidates:
        groups = table.column(schemas.LANGUAGE).to_numpy(zero_copy_only=False) if per_language else None
        return cls(score_codes(table.column(SCORE).to_numpy(zero_copy_only=False)),
                   table.column(schemas.KEY).to_numpy(zero_copy_only=False), groups)

    def in_group(self, group: str) -> np.ndarray:
        return np.ones(len(self.codes), dtype=bool) if self.groups is None else self.groups == group


def key_digit(key: bytes, depth: int) -> int:
    """The key's digit at byte `depth`: 0 if the key ends there, else the byte value + 1."""
    return 0 if len(key) == depth else key[depth] + 1


def digit_counts(shard: ShardCandidates, query: tuple[str, int, bytes], rows: np.ndarray) -> dict[int, int]:
    """Counts per digit of this round, among `rows` (the group's samples)."""
    phase, code, prefix = query
    if phase == HIGH:
        digits = shard.codes[rows] >> 16
    elif phase == LOW:
        digits = shard.codes[rows & (shard.codes >> 16 == code >> 16)] & 0xFFFF
    elif phase == CENSUS:
        tied = int(np.count_nonzero(rows & (shard.codes == code)))
        return {0: tied} if tied else {}
    else:
        tied = (k.encode("utf-8") for k in shard.keys[rows & (shard.codes == code)])
        digits = np.array([key_digit(k, len(prefix)) for k in tied if k.startswith(prefix)], dtype=np.int64)
    values, counts = np.unique(digits, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def shard_counts(shard: ShardCandidates, queries: dict[str, tuple[str, int, bytes]]) -> dict[str, dict[int, int]]:
    """One shard's counts for every group searched this round (groups it lacks are left out)."""
    result = {}
    for group, query in queries.items():
        counts = digit_counts(shard, query, shard.in_group(group))
        if counts:
            result[group] = counts
    return result


def start_searches(eligible_by_group: dict[str, int], fraction: float, per_language: bool) -> dict[str, GroupSearch]:
    """One search per group; per language, the kept count is rounded up (a language keeps at least one)."""
    return {group: GroupSearch.start(n, keep_count(n, fraction, round_up=per_language))
            for group, n in sorted(eligible_by_group.items())}


CountRound = Callable[[dict[str, tuple[str, int, bytes]], list[int]], Iterable[tuple[int, dict]]]


def search_thresholds(searches: dict[str, GroupSearch], shard_ids: list[int],
                      count_round: CountRound) -> tuple[dict[str, Threshold], int]:
    """Run rounds until every group's threshold is fixed: (thresholds, rounds run).

    `count_round(queries, shard_ids)` yields (shard id, `shard_counts(...)`)
    for each shard asked: in memory for tests, on Dask for the stage.
    """
    rounds = 0
    while active := {g: s for g, s in searches.items() if s.phase != DONE}:
        queries = {g: s.query() for g, s in active.items()}
        if any(s.phase != KEY for s in active.values()):
            asked = shard_ids
        else:
            asked = sorted(set().union(*(s.tie_shards for s in active.values())))
        for shard_id, counts in count_round(queries, asked):
            for group, group_counts in counts.items():
                active[group].absorb(shard_id, group_counts)
        for search in active.values():
            search.advance()
        rounds += 1
    return {g: s.threshold() for g, s in searches.items()}, rounds


def selection_mask(shard: ShardCandidates, thresholds: dict[str, Threshold]) -> np.ndarray:
    """Which of a shard's candidates are kept."""
    if len(shard.codes) == 0:
        return np.zeros(0, dtype=bool)
    if shard.groups is None:
        return thresholds[ALL].mask(shard.codes, shard.keys)
    kept = np.zeros(len(shard.codes), dtype=bool)
    for group in np.unique(shard.groups):
        rows = shard.groups == group
        kept[rows] = thresholds[group].mask(shard.codes[rows], shard.keys[rows])
    return kept
