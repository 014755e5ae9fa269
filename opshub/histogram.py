"""LatencyHistogram: log-linear buckets (16 per power of two, ~6 % wide), mergeable.

Recording is one bit_length and a dict increment, cheap enough for every delivery
in a load test; percentiles come from the bucket counts, never from a sorted list.
"""

from __future__ import annotations

from collections import Counter

_SUB = 4  # 2**4 sub-buckets per power of two


def bucket(v: int) -> int:
    """Bucket index of a non-negative integer value (values < 16 are exact)."""
    if v < (1 << _SUB):
        return max(v, 0)
    b = v.bit_length()
    return (b << _SUB) | ((v >> (b - _SUB - 1)) & ((1 << _SUB) - 1))


def bucket_value(idx: int) -> float:
    """The middle of a bucket's range."""
    if idx < (1 << _SUB):
        return float(idx)
    b, m = idx >> _SUB, idx & ((1 << _SUB) - 1)
    low = ((1 << _SUB) | m) << (b - _SUB - 1)
    width = 1 << (b - _SUB - 1)
    return low + width / 2


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.total = 0
        self.max = 0

    def record(self, v: int) -> None:
        self.record_n(v, 1)

    def record_n(self, v: int, n: int) -> None:
        """Record ``n`` observations of the same value."""
        self.counts[bucket(v)] += n
        self.total += n
        if v > self.max:
            self.max = v

    def merge(self, other: LatencyHistogram | dict[int, int]) -> None:
        counts = other.counts if isinstance(other, LatencyHistogram) else other
        for k, n in counts.items():
            self.counts[int(k)] += n
            self.total += n
        if isinstance(other, LatencyHistogram):
            self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float:
        """Value at percentile ``p`` (0-100); 0.0 for an empty histogram."""
        if self.total == 0:
            return 0.0
        rank = p / 100 * self.total
        seen = 0
        for idx in sorted(self.counts):
            seen += self.counts[idx]
            if seen >= rank:
                return bucket_value(idx)
        return bucket_value(max(self.counts))
