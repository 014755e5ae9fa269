"""Message framing: the padding buckets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from client.e2ee.message import bucket


def test_message_bucket_known_sizes() -> None:
    """Small messages pad to 256 bytes; larger ones follow Padmé."""
    assert [bucket(n) for n in (1, 73, 256, 257, 1092, 4100, 70_000)] == [
        256, 256, 256, 272, 1152, 4352, 71_680]


@given(st.integers(min_value=1, max_value=1 << 24))
def test_message_bucket_bounds(n: int) -> None:
    """A bucket holds its input, costs at most 12 % (above 256 bytes) and never shrinks
    as the input grows."""
    b = bucket(n)
    assert b >= n
    assert b <= max(256, n * 1.12)
    assert bucket(n + 1) >= b
