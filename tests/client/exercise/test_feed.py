"""The console's feed keeps the latest messages by exercise time, not by reading order."""

from __future__ import annotations

import pytest

from client.exercise.feed import Feed


def test_backlog_read_late_does_not_push_a_seats_message_off() -> None:
    """The operation's days before the start are read after a seat's first message (a
    busy machine): the seat's message stays, the oldest of the backlog falls off."""
    feed = Feed(200)
    feed.show(300.0, {"id": "SEAT.1"})
    for i in range(250):
        feed.show(-86_400.0 + i, {"id": f"BACKLOG.{i}"})
    shown = [m["id"] for _, _, m in feed]
    assert len(feed) == 200
    assert shown[0] == "SEAT.1"
    assert shown[-1] == "BACKLOG.51"
    assert "BACKLOG.50" not in shown


def test_newest_first_and_seqs_unique_in_reading_order() -> None:
    feed = Feed(3)
    for i, at in enumerate([5.0, 1.0, 5.0, 9.0, 0.0]):
        feed.show(at, {"id": str(i)})
    assert [(seq, at, m["id"]) for seq, at, m in feed] == [
        (3, 9.0, "3"), (2, 5.0, "2"), (0, 5.0, "0")]


def test_a_feed_shows_something() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Feed(0)
