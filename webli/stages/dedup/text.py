"""Caption near-duplicates: MinHash LSH candidates (datasketch), confirmed by exact shingle Jaccard.

Texts are normalised (NFKC, case-folded, punctuation to spaces, whitespace
collapsed) and cut into overlapping character shingles, which works for
scripts written without spaces (Japanese, Chinese, Thai) as well as for
others. `MinHash.bulk` hashes many texts at once into `LeanMinHash`es;
`MinHashLSH` returns the eval captions whose estimated Jaccard similarity may
pass the threshold, and the exact Jaccard of the shingle sets decides, so
the reported similarity is exact and LSH only has to be a fast filter.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

PUNCTUATION = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class TextMatch:
    """The best eval caption a text matched: its item id and the Jaccard similarity."""

    item: str
    similarity: float


def normalise(text: str) -> str:
    """NFKC, case-folded, every run of punctuation or space turned into one space."""
    return PUNCTUATION.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def shingles(text: str, size: int) -> frozenset[str]:
    """Overlapping character shingles of the normalised text (the whole text if shorter)."""
    clean = normalise(text)
    if len(clean) <= size:
        return frozenset([clean]) if clean else frozenset()
    return frozenset(clean[i:i + size] for i in range(len(clean) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def minhashes(shingle_sets: list[frozenset[str]], num_perm: int) -> list[LeanMinHash]:
    """LeanMinHashes of many shingle sets at once (datasketch's bulk path), fixed seed."""
    encoded = [[s.encode("utf-8") for s in sorted(shingle_set)] for shingle_set in shingle_sets]
    return MinHash.bulk(encoded, num_perm=num_perm, seed=1)


class CaptionIndex:
    """The eval set's captions: their shingles, item ids, and an LSH over their MinHashes.

    Pickles as a whole (datasketch's in-memory storage), which is how it is
    cached on disk and broadcast to the workers.
    """

    def __init__(self, items: list[str], captions: list[str], threshold: float, shingle_size: int, num_perm: int):
        self.threshold, self.shingle_size, self.num_perm = threshold, shingle_size, num_perm
        sets = [shingles(c, shingle_size) for c in captions]
        keep = [i for i, s in enumerate(sets) if s]
        self.items = [items[i] for i in keep]
        self.shingles = [sets[i] for i in keep]
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        with self.lsh.insertion_session() as session:
            for position, minhash in enumerate(minhashes(self.shingles, num_perm)):
                session.insert(position, minhash, check_duplication=False)

    def __len__(self) -> int:
        return len(self.items)

    def match(self, texts: list[str | None]) -> list[TextMatch | None]:
        """The most similar eval caption at or above the threshold for each text (ties: lowest index)."""
        sets = [shingles(t, self.shingle_size) if t else frozenset() for t in texts]
        present = [i for i, s in enumerate(sets) if s]
        results: list[TextMatch | None] = [None] * len(texts)
        if not present or not self.items:
            return results
        for i, minhash in zip(present, minhashes([sets[i] for i in present], self.num_perm)):
            candidates = sorted(self.lsh.query(minhash))
            if not candidates:
                continue
            scores = np.array([jaccard(sets[i], self.shingles[c]) for c in candidates])
            best = int(np.argmax(scores))
            if scores[best] >= self.threshold:
                results[i] = TextMatch(self.items[candidates[best]], float(scores[best]))
        return results
