"""The exercise's virtual clock: wall time scaled by a speed, started, paused, resumed and
jumped forward, never back (a reset makes a new clock). It reads no clock itself: the wall
time (monotonic seconds) comes in with every call.

At speed ``s`` a wall second is ``s`` virtual seconds (1: real time, 3600: an hour a
second). Virtual time is the time at the last anchor plus the wall time since it times the
speed; every change (start, pause, speed, jump) re-anchors, so a change never moves the time
already reached.
"""

from __future__ import annotations

import math

from protocol.errors import UsageError


def speed_problem(speed: float) -> str | None:
    """Why ``speed`` cannot pace a clock, or None if it can."""
    if not math.isfinite(speed) or speed <= 0:
        return f"speed must be a finite number above 0, not {speed!r}"
    return None


class VirtualClock:
    """Starts stopped at virtual 0."""

    def __init__(self, *, speed: float = 1.0) -> None:
        problem = speed_problem(speed)
        if problem is not None:
            raise UsageError(problem)
        self.speed = speed
        self.running = False
        self._at = 0.0  # virtual time at the anchor
        self._wall = 0.0  # wall time of the anchor (meaningful while running)
        self._seen = -math.inf  # the latest wall time seen

    def read(self, wall: float) -> float:
        """Virtual time at ``wall``. A wall time earlier than one seen before counts as that
        one, so the clock never goes back even if its caller's times do."""
        self._seen = max(self._seen, wall)
        if not self.running:
            return self._at
        return self._at + (self._seen - self._wall) * self.speed

    def start(self, wall: float) -> None:
        """Run from the time reached (start, or resume after a pause)."""
        self._anchor(self.read(wall))
        self.running = True

    def pause(self, wall: float) -> None:
        self._at = self.read(wall)
        self.running = False

    def set_speed(self, speed: float, wall: float) -> None:
        """Raises UsageError if ``speed`` is not a finite number above 0."""
        problem = speed_problem(speed)
        if problem is not None:
            raise UsageError(problem)
        self._anchor(self.read(wall))
        self.speed = speed

    def jump(self, to: float, wall: float) -> None:
        """Move forward to ``to`` (a time already passed leaves the clock where it is);
        running or paused, the clock stays so."""
        self._anchor(max(to, self.read(wall)))

    def stop(self, at: float) -> None:
        """Stop for good at ``at``: the exercise's end caps the time the clock may reach."""
        self._at = at
        self.running = False

    def _anchor(self, at: float) -> None:
        self._at = at
        self._wall = self._seen
