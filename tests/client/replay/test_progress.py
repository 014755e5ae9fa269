"""What a replay prints as it goes, without a clock: message lines, the progress line
(percent, virtual clock, time left), when each message gets a line, and throttling."""

from __future__ import annotations

import pytest

from client.replay.progress import (
    LOG_EVERY,
    TTY_EVERY,
    WIDTH,
    ProgressView,
    duration,
    message_line,
    percent,
    status_line,
    time_left,
)

#: cocair-v: 8,000 messages planned over nine virtual days
COCAIR = {"planned": 8000, "end": 9 * 86400.0}


def test_percent_rounds_down_until_every_planned_message_is_sent() -> None:
    """Percent is whole and rounded down, so 100 % means every planned message is sent."""
    assert percent(0, 120) == 0
    assert percent(44, 120) == 36
    assert percent(119, 120) == 99
    assert percent(120, 120) == 100
    assert percent(130, 120) == 100


def test_time_left_at_max_speed_comes_from_the_rate_so_far() -> None:
    """At max speed the time left is the messages left at the real rate so far."""
    assert time_left(sent=2000, planned=8000, virtual=3 * 86400, end=9 * 86400, real=10.0,
                     speed=None) == pytest.approx(30.0)


def test_time_left_at_max_speed_is_unknown_before_any_message() -> None:
    """Before the first message is sent at max speed there is no rate to go by."""
    assert time_left(sent=0, planned=8000, virtual=0, end=9 * 86400, real=1.0,
                     speed=None) is None


def test_time_left_at_a_speed_factor_comes_from_the_virtual_clock() -> None:
    """At a speed factor the time left is the virtual time left divided by the factor."""
    assert time_left(sent=10, planned=8000, virtual=3600.0, end=7200.0, real=6.0,
                     speed=600.0) == pytest.approx(6.0)


def test_time_left_at_a_speed_factor_follows_agents_slower_than_it() -> None:
    """When the agents kept the virtual clock at half the factor, the estimate uses the
    pace actually kept."""
    assert time_left(sent=10, planned=8000, virtual=3600.0, end=7200.0, real=12.0,
                     speed=600.0) == pytest.approx(12.0)


def test_duration_reads_as_seconds_minutes_or_hours() -> None:
    """Durations read as seconds, minutes and seconds, or hours and minutes."""
    assert [duration(s) for s in (4.23, 42.5, 250, 4000)] == [
        "4.2 s", "42 s", "4 min 10 s", "1 h 06 min"]


def test_status_line_shows_percent_count_clock_and_time_left() -> None:
    """The progress line names percent, messages sent of planned, the virtual day and
    time, and the time left."""
    line = status_line(sent=44, planned=120, virtual=86400 + 14 * 3600 + 5 * 60, left=75.0)
    assert line == "progress  36 %  44 of 120 messages  day 2 14:05  about 1 min 15 s left"


def test_status_line_when_done_shows_the_time_taken() -> None:
    """The final progress line shows 100 % and the real time the replay took."""
    line = status_line(sent=120, planned=120, virtual=2 * 86400, left=None, done=1.4)
    assert line == "progress 100 %  120 of 120 messages  day 3 00:00  done in 1.4 s"


def test_message_line_shows_day_time_sender_type_and_summary() -> None:
    """A message's own line carries its virtual day and time, sender, type and summary
    in the columns of the day summaries' lines."""
    at = 8 * 3600 + 30 * 60
    dated = message_line(at, "OCU-MINI", "warning", "passenger to TG-CUSTOMS", dated=True)
    under_day = message_line(at, "OCU-MINI", "warning", "passenger to TG-CUSTOMS",
                             dated=False)
    assert dated == ("day 1    08:30  OCU-MINI         warning                 "
                     "passenger to TG-CUSTOMS")
    assert under_day == " " * 9 + dated[9:]


def test_message_line_is_cut_to_the_width() -> None:
    """A long summary is cut with an ellipsis so the line stays within WIDTH."""
    line = message_line(0, "OCU-MINI", "situation_report", "x" * 300, dated=True)
    assert len(line) == WIDTH
    assert line.endswith("...")


@pytest.mark.parametrize(("speed", "per_message"), [
    (60.0, True), (600.0, True), (3600.0, False), (86400.0, False), (None, False)])
def test_progress_view_prints_each_message_only_at_a_speed_a_person_can_follow(
        speed: float | None, per_message: bool) -> None:
    """Each message gets a line at speeds averaging at most 10 messages a real second
    (cocair-v at 60x and 600x); faster, and at max, the day summaries are kept."""
    assert ProgressView(**COCAIR, speed=speed).per_message is per_message


def test_progress_view_in_a_log_prints_a_line_at_most_every_few_seconds() -> None:
    """Not on a terminal, a progress line is due at most every LOG_EVERY seconds, the
    first one LOG_EVERY after the start."""
    view = ProgressView(**COCAIR, speed=None)
    due = [real for real in (0.1, 1.0, LOG_EVERY, LOG_EVERY + 1, 2 * LOG_EVERY + 0.5)
           if view.status(sent=100, virtual=3600, real=real, tty=False) is not None]
    assert due == [LOG_EVERY, 2 * LOG_EVERY + 0.5]


def test_progress_view_on_a_terminal_updates_the_line_often() -> None:
    """On a terminal, where the line is rewritten in place, it is due every TTY_EVERY."""
    view = ProgressView(**COCAIR, speed=None)
    due = [real for real in (0.1, TTY_EVERY, TTY_EVERY + 0.1, 2 * TTY_EVERY + 0.1)
           if view.status(sent=100, virtual=3600, real=real, tty=True) is not None]
    assert due == [TTY_EVERY, 2 * TTY_EVERY + 0.1]


def test_progress_view_final_line_is_always_printed() -> None:
    """The final line is printed however recent the last one, with 100 %."""
    view = ProgressView(planned=120, end=2 * 86400, speed=None)
    assert view.status(sent=60, virtual=86400, real=LOG_EVERY, tty=False) is not None
    final = view.status(sent=120, virtual=2 * 86400, real=LOG_EVERY + 0.1, tty=False,
                        final=True)
    assert final is not None
    assert final.startswith("progress 100 %  120 of 120 messages")
