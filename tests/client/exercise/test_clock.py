"""client.exercise.clock.VirtualClock, read at plain wall times: no clock, no event loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.exercise.clock import VirtualClock
from protocol.errors import UsageError


def test_clock_starts_stopped_at_zero() -> None:
    """A new clock reads 0 whatever the wall time, until started."""
    clock = VirtualClock(speed=60)
    assert clock.read(1000.0) == 0.0
    assert not clock.running


def test_clock_jump_moves_forward_and_keeps_running() -> None:
    """A jump sets the time reached; a running clock runs on from there at its speed."""
    clock = VirtualClock(speed=2)
    clock.start(10.0)
    clock.jump(100.0, 12.0)
    assert clock.read(13.0) == 102.0


def test_clock_jump_to_a_passed_time_does_not_go_back() -> None:
    """A jump to a time already passed leaves the clock where it is."""
    clock = VirtualClock()
    clock.start(0.0)
    clock.jump(5.0, 50.0)
    assert clock.read(50.0) == 50.0


def test_clock_stop_freezes_it_for_good() -> None:
    """A stopped clock reads the time it was stopped at, however much wall time passes."""
    clock = VirtualClock()
    clock.start(0.0)
    clock.stop(30.0)
    assert clock.read(500.0) == 30.0


@pytest.mark.parametrize("speed", [0.0, -2.0, float("nan"), float("inf")])
def test_clock_refuses_a_speed_not_above_zero(speed: float) -> None:
    """Neither a new clock nor a running one takes a speed that is not above 0."""
    with pytest.raises(UsageError, match="speed must be"):
        VirtualClock(speed=speed)
    clock = VirtualClock()
    with pytest.raises(UsageError, match="speed must be"):
        clock.set_speed(speed, 0.0)


@given(st.lists(st.tuples(st.sampled_from(["read", "start", "pause", "speed", "jump"]),
                          st.floats(-100, 100), st.floats(0.1, 1000)), max_size=30))
def test_clock_never_goes_back(ops: list[tuple[str, float, float]]) -> None:
    """Whatever is done to it, at wall times that may even go back, it never reads less
    than it read before."""
    clock = VirtualClock()
    last = clock.read(0.0)
    wall = 0.0
    for op, dt, value in ops:
        wall += dt
        if op == "start":
            clock.start(wall)
        elif op == "pause":
            clock.pause(wall)
        elif op == "speed":
            clock.set_speed(value, wall)
        elif op == "jump":
            clock.jump(value, wall)
        now = clock.read(wall)
        assert now >= last
        last = now
