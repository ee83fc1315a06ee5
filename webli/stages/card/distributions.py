"""Mergeable value counts: exact quantiles and histograms in bounded memory.

The card reads a run shard by shard. A numeric column is folded into a
`Distribution`, a Counter of its values rounded to a fixed number of
decimals: integers (pixels, words) are kept exactly, floats (scores, aspect
ratios) to the printed precision. Memory grows with the number of distinct
rounded values, not with the number of samples, so a billion-row run is read
the same way as the demo.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Distribution:
    """Counts of values rounded to `decimals` places (0: integers)."""

    decimals: int = 0
    counts: Counter = field(default_factory=Counter)

    def add(self, values) -> None:
        """Fold an array (or list) of numbers in; NaN and None are skipped (count them upstream)."""
        array = np.asarray(values, dtype=np.float64)
        array = np.round(array[np.isfinite(array)], self.decimals)
        unique, counts = np.unique(array, return_counts=True)
        for value, count in zip(unique.tolist(), counts.tolist()):
            self.counts[int(value) if self.decimals == 0 else value] += count

    def merge(self, other: Distribution) -> None:
        self.counts.update(other.counts)

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def sorted_values(self) -> tuple[np.ndarray, np.ndarray]:
        """(values ascending, their counts) as arrays."""
        if not self.counts:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        values = np.array(sorted(self.counts))
        return values, np.array([self.counts[v] for v in values.tolist()], dtype=np.int64)

    def quantile(self, q: float) -> float | None:
        """The lower q-quantile (the value at rank ceil(q * n), 1-based); None when empty."""
        values, counts = self.sorted_values()
        if not len(values):
            return None
        rank = max(1, int(np.ceil(q * counts.sum())))
        return values[np.searchsorted(np.cumsum(counts), rank)].item()

    def mean(self) -> float | None:
        values, counts = self.sorted_values()
        return float(np.dot(values, counts) / counts.sum()) if len(values) else None

    def summary(self) -> dict | None:
        """count, min, p10, median, p90, max, mean; None when empty."""
        if not self.counts:
            return None
        quantiles = {name: self.quantile(q) for name, q in
                     (("min", 0.0), ("p10", 0.1), ("median", 0.5), ("p90", 0.9), ("max", 1.0))}
        return {"count": self.count, **quantiles, "mean": round(self.mean(), max(self.decimals, 2))}
