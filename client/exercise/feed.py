"""The console's traffic feed: the newest messages by exercise time, however late they are
read.

The replay plays the operation's days before the exercise's start at once, and on a busy
machine those reads can still be arriving after a seat has sent its first messages. A feed
kept in reading order would let that backlog push the seat's messages off the console; this
one keeps the ``size`` latest by exercise time, so an old message read late falls off first.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any


class Feed:
    """The ``size`` messages with the latest exercise times, newest first when iterated.

    Each message shown gets a number in reading order (``seq``), unique within the feed's
    life: the console's pages key their rows on it."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a feed shows at least one message, not {size}")
        self.size = size
        self._entries: list[tuple[float, int, dict[str, Any]]] = []
        self._read = 0

    def show(self, at: float, message: dict[str, Any]) -> None:
        """Add a message read now, sent at exercise time ``at``."""
        bisect.insort(self._entries, (at, self._read, message), key=lambda x: x[:2])
        self._read += 1
        if len(self._entries) > self.size:
            del self._entries[0]  # the earliest by exercise time

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[int, float, dict[str, Any]]]:
        """(seq, at, message), the latest exercise time first; among equal times, the
        one read last first."""
        for at, seq, message in reversed(self._entries):
            yield seq, at, message
