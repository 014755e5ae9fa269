"""What a replay prints as it goes: one line per message at a speed a person can follow
(else the engine's per-day summaries), and a progress line (percent of the planned
messages, virtual clock, time left) throttled for a terminal or a log.

Pure: it reads no clock and prints nothing; the engine passes the real seconds since it
started driving the agenda, and prints what comes back.
"""

from __future__ import annotations

#: Most messages per real second, on average over the operation at the chosen speed,
#: that are printed one line each; above, a line per message floods a terminal faster
#: than anyone reads it, and the replay prints one summary per virtual day. (cocair-v
#: averages 6 a second at --speed 600 and 37 at --speed 3600.)
MAX_RATE = 10.0
#: Seconds between progress lines rewritten in place on a terminal.
TTY_EVERY = 0.2
#: Seconds between progress lines in a log (not a terminal): few enough to read.
LOG_EVERY = 5.0
#: A printed line is cut to this many characters.
WIDTH = 140


def clock(at: float) -> tuple[int, str]:
    """Virtual seconds since the first day's 00:00 UTC -> (day from 1, "HH:MM")."""
    minutes = int(at // 60)
    return minutes // 1440 + 1, f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def message_line(at: float, sender: str, kind: str, summary: str, *, dated: bool) -> str:
    """One message: virtual time, sender, type and its one-line summary. ``dated`` puts
    the virtual day in the label column (a line of its own); without it the line sits
    under its day's summary, indented."""
    day, hhmm = clock(at)
    label = f"day {day}" if dated else ""
    line = f"{label:<8} {hhmm}  {sender:<16} {kind.replace('_', ' '):<23} {summary}"
    return line if len(line) <= WIDTH else line[: WIDTH - 3] + "..."


def percent(sent: int, planned: int) -> int:
    """Whole percent of ``planned`` sent, rounded down (100 only once all are sent)."""
    return 100 if planned <= 0 else min(100, sent * 100 // planned)


def time_left(*, sent: int, planned: int, virtual: float, end: float, real: float,
              speed: float | None) -> float | None:
    """Real seconds until the replay ends, or None before there is anything to go by.

    At a speed factor, from the virtual clock: what is left of it until ``end`` at the
    pace the clock has kept so far, never faster than ``speed`` (agents slower than the
    factor slow the clock). At max, from the messages sent per real second so far."""
    if speed is not None:
        pace = min(speed, virtual / real) if real > 0 and virtual > 0 else speed
        return max(0.0, end - virtual) / pace
    if sent <= 0 or real <= 0:
        return None
    return max(0, planned - sent) * real / sent


def duration(seconds: float) -> str:
    """4.23 -> '4.2 s', 42.5 -> '42 s', 250 -> '4 min 10 s', 4000 -> '1 h 06 min'."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def status_line(*, sent: int, planned: int, virtual: float, left: float | None,
                done: float | None = None) -> str:
    """The progress line: percent and count of the planned messages, the virtual clock,
    and the time left (or, once ``done``, the real time it took)."""
    day, hhmm = clock(virtual)
    if done is not None:
        when = f"done in {duration(done)}"
    elif left is None:
        when = "time left unknown"
    else:
        when = f"about {duration(left)} left"
    return (f"progress {percent(sent, planned):>3} %  {sent} of {planned} messages  "
            f"day {day} {hhmm}  {when}")


class ProgressView:
    """What one replay prints: whether each message gets a line, and when a progress
    line is due. Holds only the real time of the last progress line."""

    def __init__(self, *, planned: int, end: float, speed: float | None,
                 max_rate: float = MAX_RATE) -> None:
        """``planned`` messages over ``end`` virtual seconds (the last planned window's
        end) at ``speed`` (None: max)."""
        self.planned = planned
        self.end = end
        self.speed = speed
        #: see MAX_RATE
        self.max_rate = max_rate
        self._last = 0.0

    @property
    def rate(self) -> float | None:
        """Messages per real second on average at the speed factor (None at max)."""
        if self.speed is None:
            return None
        return self.planned / max(self.end, 1.0) * self.speed

    @property
    def per_message(self) -> bool:
        """Each message gets a line as it happens (else: one summary per virtual day)."""
        rate = self.rate
        return rate is not None and rate <= self.max_rate

    def status(self, *, sent: int, virtual: float, real: float, tty: bool,
               final: bool = False) -> str | None:
        """The progress line at ``real`` seconds since the replay started driving, or
        None if one was shown less than TTY_EVERY (on a terminal, where it is rewritten
        in place) or LOG_EVERY (in a log) ago. The ``final`` line is always due."""
        if not final and real - self._last < (TTY_EVERY if tty else LOG_EVERY):
            return None
        self._last = real
        left = time_left(sent=sent, planned=self.planned, virtual=virtual, end=self.end,
                         real=real, speed=self.speed)
        return status_line(sent=sent, planned=self.planned, virtual=virtual, left=left,
                           done=real if final else None)
