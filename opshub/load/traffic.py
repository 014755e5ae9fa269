"""What a publisher sends and when: the open-loop schedule of intended send times, and each
message's size, kind (published or directed) and payload.

Pure (times are passed in, randomness is a seeded ``random.Random``). A payload starts with
STAMP: the intended send time and the actual one (CLOCK_MONOTONIC nanoseconds, the same
clock in every process of the machine), then opaque filler. Latency is measured from the
intended time: a publisher that falls behind its schedule (a pause, a full window, a slow
loop) has the delay counted, not hidden (coordinated omission); the actual time gives the
uncorrected figure beside it, to show the difference.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

from opshub.load.spec import MAX_SIZE, SizeSpec

STAMP = struct.Struct(">QQ")


def stamp(intended_ns: int, sent_ns: int) -> bytes:
    return STAMP.pack(intended_ns, sent_ns)


def read_stamp(payload: bytes) -> tuple[int, int] | None:
    """(intended, sent) of a load payload, None for anything shorter."""
    if len(payload) < STAMP.size:
        return None
    intended, sent = STAMP.unpack_from(payload)
    return intended, sent


#: The golden ratio's fraction: phases k * PHI mod 1 of consecutive publishers spread
#: evenly over an interval, however many there are.
PHI = 0.6180339887498949


def phase_of(seed: int) -> float:
    """A publisher's phase, in intervals (0 to 1), from its seed."""
    return (seed * PHI) % 1.0


class Schedule:
    """One publisher's intended send times in ``[start_ns, end_ns)``: one every 1/rate s,
    the first ``phase`` of an interval after the start.

    Publishers of one run are given different phases (``phase_of``): at 1 msg/s each,
    100 publishers all due at the same instant are a burst of 100 every second, not the
    steady 100/s the rate says, and the burst's queueing is all the latency measured.
    ``take`` hands out the times that are due; what it has not handed out by the time
    they were due is the publisher's lag behind its schedule."""

    def __init__(self, start_ns: int, end_ns: int, rate: float, phase: float = 0.0) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.interval_ns = 1e9 / rate
        self.phase = phase
        self.taken = 0

    def _at(self, i: int) -> int:
        return self.start_ns + round((i + self.phase) * self.interval_ns)

    @property
    def next_ns(self) -> int | None:
        """The next intended time, None when the schedule is done."""
        t = self._at(self.taken)
        return t if t < self.end_ns else None

    def take(self, now_ns: int, limit: int) -> list[int]:
        """The intended times due at ``now_ns`` and not yet taken, at most ``limit``."""
        out: list[int] = []
        while len(out) < limit:
            t = self._at(self.taken)
            if t > now_ns or t >= self.end_ns:
                break
            out.append(t)
            self.taken += 1
        return out

    def lag_ns(self, now_ns: int) -> int:
        """How late the oldest due time not yet taken is (0 when on schedule)."""
        t = self.next_ns
        return max(0, now_ns - t) if t is not None else 0


class Traffic:
    """The size and kind of each message of one publisher. ``recipients`` are the units a
    directed message may go to; a share ``directed`` of the messages goes to one of them."""

    def __init__(self, size: SizeSpec, directed: float, recipients: Sequence[str],
                 rng: random.Random) -> None:
        self.size = size
        self.directed = directed if recipients else 0.0
        self.recipients = list(recipients)
        self.rng = rng
        self._filler = bytes(MAX_SIZE)

    def next(self) -> tuple[int, str | None]:
        """(size in bytes, recipient) of the next message; recipient None: publish."""
        size = self.size.sample(self.rng)
        if self.directed and self.rng.random() < self.directed:
            return size, self.rng.choice(self.recipients)
        return size, None

    def payload(self, size: int, intended_ns: int, sent_ns: int) -> bytes:
        return stamp(intended_ns, sent_ns) + self._filler[: max(0, size - STAMP.size)]
