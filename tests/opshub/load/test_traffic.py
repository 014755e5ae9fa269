"""The open-loop schedule: intended times at 1/rate, and the lag of a late publisher."""

from __future__ import annotations

from opshub.load.traffic import Schedule, read_stamp, stamp


def test_schedule_hands_out_what_is_due() -> None:
    """Times are due at start + i/rate; a late caller gets every overdue one at once."""
    s = Schedule(1_000, 1_000 + 1_000_000_000, 10.0)
    assert s.take(1_000, 100) == [1_000]
    assert s.take(1_000 + 250_000_000, 100) == [100_001_000, 200_001_000]
    assert s.lag_ns(1_000 + 450_000_000) == 150_000_000  # 300 ms was due 150 ms ago
    assert len(s.take(10**12, 100)) == 7  # the rest of the second, never beyond its end
    assert s.next_ns is None


def test_stamp_round_trip() -> None:
    """A payload carries its intended and actual send times."""
    assert read_stamp(stamp(5, 7) + b"filler") == (5, 7)
    assert read_stamp(b"short") is None
