"""ExerciseEngine: an exercise's decisions as a sans-I/O state machine (DESIGN.md 8).

Events in (``handle``): a clock tick, the director's controls (resume, pause, step, speed,
deliver now, an ad-hoc inject, cancel, skip, end, reset) and "met" from the expectation
rules (client/exercise/expectations.py) or the director. Actions out: send this inject,
a new run began, the exercise ended, and a notification for the console each time what it
shows changes. The runtime (client/exercise/runtime.py) encrypts and sends, and pushes the
notifications to the browsers. No asyncio, no sockets, no clock: every event carries the
wall time (monotonic seconds) and the virtual time is computed from it (clock.py).

The rules it keeps (tests/client/exercise/test_engine.py checks each over any sequence of
events, with hypothesis):

- each inject is delivered at most once per run; a scheduled one goes at its own virtual
  time (ticks may come late, the time it goes does not depend on them), "deliver now" at
  the current virtual time, whatever pauses came before;
- nothing goes and no deadline passes while the clock is paused;
- the virtual time never goes back, except by a reset;
- a reset starts a new run equal to a fresh engine's: the same events after it give the
  same actions at the same times;
- the end always comes: a running clock reaches it, and so does a step from the last
  inject; the director's "end" works in any state. After the end only reset counts.

The director's mistakes (an unknown inject, one that already went, pause when paused, an
event after the end) are answered with ``Refused``, never raised: the state is unchanged.
An event that cannot be built (a wall time that is not a number) raises UsageError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, assert_never

from client.exercise.clock import VirtualClock, speed_problem
from client.exercise.model import (
    ExpectationRecord,
    ExpectationState,
    Inject,
    InjectRecord,
    InjectState,
    Status,
)
from protocol.errors import UsageError

#: Virtual seconds the exercise runs on after its last inject's longest expectation,
#: unless the scenario says when it ends.
DEFAULT_MARGIN = 3600.0


def _finite(what: str, value: float) -> None:
    if not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number, not {value!r}")


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Timed:
    """``now``: the wall time (monotonic seconds) the event happened at."""

    now: float

    def __post_init__(self) -> None:
        _finite("now", self.now)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick(_Timed):
    """Time passed: what is due goes, deadlines that passed are missed, the end comes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(_Timed):
    """Start the clock (READY), or resume it (PAUSED), from the virtual time reached."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause(_Timed):
    """Stop the clock: nothing goes and no deadline passes until it resumes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step(_Timed):
    """Jump to the next pending inject and deliver it (with any due at the same time), or
    to the end if none is pending. A running clock runs on from there; a stopped one stays
    stopped (READY becomes PAUSED)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSpeed(_Timed):
    speed: float  # virtual seconds per wall second

    def __post_init__(self) -> None:
        _Timed.__post_init__(self)  # zero-argument super() fails in a slots dataclass
        problem = speed_problem(self.speed)
        if problem is not None:
            raise UsageError(problem)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverNow(_Timed):
    """Deliver a pending inject at once, at the current virtual time."""

    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddInject(_Timed):
    """An inject written during play, with a number no inject of the run has. It goes at
    its ``at``, or at the current virtual time if that has passed; not after the end."""

    inject: Inject


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(_Timed):
    """Withdraw a pending inject: it will not go in this run."""

    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Skip(_Timed):
    """Pass over a pending inject: it will not go in this run."""

    number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Met(_Timed):
    """An expectation was met at virtual time ``at`` (None: now), by ``by`` (a seat, or
    the director), ``how`` (the rule, or the director's words). A time ahead of the clock
    counts as now. One already marked missed is met if ``at`` is within its deadline (the
    message was decrypted after the deadline passed); after it, it stays missed and
    keeps the first late time (``ExpectationRecord.late``)."""

    expectation: str
    by: str
    how: str = ""
    at: float | None = None

    def __post_init__(self) -> None:
        _Timed.__post_init__(self)
        if self.at is not None:
            _finite("at", self.at)


@dataclass(frozen=True, slots=True, kw_only=True)
class End(_Timed):
    """The director ends the exercise, in any state; ending again changes nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset(_Timed):
    """Back to the start, in any state: a new run (NewRun), everything as if just built."""


Event = (Tick | Resume | Pause | Step | SetSpeed | DeliverNow | AddInject | Cancel | Skip
         | Met | End | Reset)


# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendInject:
    """Encrypt and send ``inject``'s message, dated virtual time ``at``."""

    inject: Inject
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NewRun:
    """A reset: start the operation's traffic afresh under a new operation id for ``run``;
    everything the console shows starts over (fetch ``state()``)."""

    run: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    """The exercise ended at virtual time ``at``; once per run."""

    at: float
    by_director: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockChanged:
    """The clock changed (resume, pause, speed, step, end). While RUNNING the console
    shows ``virtual + (wall_now - wall) * speed``: ticks do not notify."""

    status: Status
    virtual: float
    speed: float
    wall: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectChanged:
    record: InjectRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectationChanged:
    record: ExpectationRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """``event`` changed nothing, for ``reason`` (to show the director)."""

    event: Event
    reason: str


Action = (SendInject | NewRun | Ended | ClockChanged | InjectChanged | ExpectationChanged
          | Refused)


# --- the engine ------------------------------------------------------------------------


def number_key(number: str) -> tuple[tuple[int, int, str], ...]:
    """Orders inject numbers as directors do: "2" < "2a" < "10"."""
    return tuple((0, int(part), "") if part[0] in "0123456789" else (1, 0, part)
                 for part in re.split(r"([0-9]+)", number) if part)


def _order(record: InjectRecord) -> tuple[float, tuple[tuple[int, int, str], ...], str]:
    return (record.inject.at, number_key(record.inject.number), record.inject.number)


def msel_problems(injects: Iterable[Inject]) -> list[str]:
    """What makes an inject list unusable by the engine (the MSEL import reports the rows
    and columns first; this is the engine's own guard)."""
    problems: list[str] = []
    numbers: set[str] = set()
    ids: set[str] = set()
    for inject in injects:
        n = inject.number
        if not n:
            problems.append("an inject has an empty number")
        if n in numbers:
            problems.append(f"inject number {n!r} is used twice")
        numbers.add(n)
        if not math.isfinite(inject.at) or inject.at < 0:
            problems.append(f"inject {n!r}: at must be a finite time >= 0, not {inject.at!r}")
        for e in inject.expectations:
            if e.id in ids:
                problems.append(f"expectation id {e.id!r} is used twice")
            ids.add(e.id)
            if e.inject != n:
                problems.append(f"expectation {e.id!r} names inject {e.inject!r} but is "
                                f"raised by inject {n!r}")
            if not math.isfinite(e.within) or e.within < 0:
                problems.append(f"expectation {e.id!r}: within must be a finite time >= 0, "
                                f"not {e.within!r}")
    return problems


def default_end(injects: Iterable[Inject], margin: float = DEFAULT_MARGIN) -> float:
    """The last moment an inject or its longest expectation reaches, plus ``margin``."""
    horizon = max((i.at + max((e.within for e in i.expectations), default=0.0)
                   for i in injects), default=0.0)
    return horizon + margin


class ExerciseEngine:
    """One exercise, run after run. Raises UsageError if the inject list is unusable
    (``msel_problems``), an inject is after ``end``, or ``speed`` is not above 0."""

    def __init__(self, injects: Iterable[Inject], *, end: float | None = None,
                 speed: float = 1.0) -> None:
        self.msel = tuple(injects)
        problems = msel_problems(self.msel)
        self.end = default_end(self.msel) if end is None else end
        if not math.isfinite(self.end) or self.end < 0:
            problems.append(f"the end must be a finite time >= 0, not {self.end!r}")
        problems += [f"inject {i.number!r} at {i.at} is after the end at {self.end}"
                     for i in self.msel if i.at > self.end]
        if problems:
            raise UsageError("; ".join(problems))
        self._speed = speed
        self.clock = VirtualClock(speed=speed)
        self.run = 0
        self._out: list[Action] = []
        self._start_run()

    def _start_run(self) -> None:
        self.run += 1
        self.clock = VirtualClock(speed=self._speed)
        self.status = Status.READY
        self.virtual = 0.0  # as of the last event
        self.wall: float | None = None  # the latest wall time an event brought
        self.ended: Ended | None = None
        self._injects = {i.number: InjectRecord(inject=i) for i in self.msel}
        self._expectations = {e.id: ExpectationRecord(expectation=e)
                              for i in self.msel for e in i.expectations}

    # --- reading ---------------------------------------------------------------------------

    def injects(self) -> list[InjectRecord]:
        """Every inject of the run, in the order they go: by time, then number."""
        return sorted(self._injects.values(), key=_order)

    def inject(self, number: str) -> InjectRecord | None:
        return self._injects.get(number)

    def expectations(self) -> list[ExpectationRecord]:
        """Every expectation of the run, in the order of their injects in the MSEL."""
        return list(self._expectations.values())

    def expectation(self, id: str) -> ExpectationRecord | None:
        return self._expectations.get(id)

    def state(self) -> dict[str, Any]:
        """The console's view of the run, as plain JSON-able data."""
        records = self.expectations()
        return {
            "run": self.run, "status": self.status.value, "virtual": self.virtual,
            "wall": self.wall, "speed": self.clock.speed, "end": self.end,
            "ended": None if self.ended is None else {
                "at": self.ended.at, "by_director": self.ended.by_director},
            "injects": [r.to_json() for r in self.injects()],
            "expectations": [r.to_json() for r in records],
            "score": {"points": sum(r.points for r in records),
                      "possible": sum(r.expectation.score for r in records)},
        }

    # --- events ----------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; the actions it causes, in order."""
        if isinstance(event, Reset):
            self._start_run()
            self._seen(event.now)
            self._out.append(NewRun(run=self.run))
        else:
            if self.status is not Status.ENDED:
                self._advance(event.now)
            if self.status is Status.ENDED:
                if not isinstance(event, Tick | End):  # both are no-ops after the end
                    self._refuse(event, "the exercise has ended; only a reset restarts it")
            else:
                self._apply(event)
                self._advance(event.now)  # what the event made due goes now
        out, self._out = self._out, []
        return out

    def _apply(self, event: Event) -> None:
        match event:
            case Tick():
                pass
            case Resume():
                self._resume(event)
            case Pause():
                self._pause(event)
            case Step():
                self._step(event)
            case SetSpeed():
                self.clock.set_speed(event.speed, event.now)
                self._clock_changed()
            case DeliverNow():
                record = self._pending(event, event.number)
                if record is not None:
                    self._deliver(record, self.virtual)
            case AddInject():
                self._add(event)
            case Cancel():
                self._withdraw(event, event.number, InjectState.CANCELLED)
            case Skip():
                self._withdraw(event, event.number, InjectState.SKIPPED)
            case Met():
                self._met(event)
            case End():
                self._end(by_director=True)
            case Reset():
                raise UsageError("a reset is handled before any other event")
            case _:
                assert_never(event)

    def _refuse(self, event: Event, reason: str) -> None:
        self._out.append(Refused(event=event, reason=reason))

    def _seen(self, wall: float) -> None:
        self.wall = wall if self.wall is None else max(self.wall, wall)

    def _clock_changed(self) -> None:
        assert self.wall is not None  # every event brings one
        self._out.append(ClockChanged(status=self.status, virtual=self.virtual,
                                      speed=self.clock.speed, wall=self.wall))

    # --- the clock -------------------------------------------------------------------------

    def _advance(self, wall: float) -> None:
        """Bring the run to ``wall``: while running, deliver what fell due, miss what
        expired, in time order, and end at the end."""
        self._seen(wall)
        virtual = self.clock.read(wall)
        if self.status is not Status.RUNNING:
            return
        self._run_until(min(virtual, self.end))
        if virtual >= self.end:
            self._end(by_director=False)

    def _run_until(self, target: float) -> None:
        """Deliver every pending inject due by ``target`` and miss every open expectation
        whose deadline is before it, in time order (an inject before a deadline at the
        same time: the deadline has not passed yet)."""
        while True:
            due = [r for r in self._injects.values()
                   if r.state is InjectState.PENDING and r.inject.at <= target]
            expired = [(r.deadline, r) for r in self._expectations.values()
                       if r.state is ExpectationState.OPEN and r.deadline is not None
                       and r.deadline < target]
            first = min(due, key=_order, default=None)
            late = min(expired, key=lambda pair: pair[0], default=None)
            if first is not None and (late is None or first.inject.at <= late[0]):
                self.virtual = max(self.virtual, first.inject.at)
                self._deliver(first, self.virtual)
            elif late is not None:
                self.virtual = max(self.virtual, late[0])
                self._expectation(late[1], state=ExpectationState.MISSED)
            else:
                break
        self.virtual = max(self.virtual, target)

    def _resume(self, event: Resume) -> None:
        if self.status is Status.RUNNING:
            self._refuse(event, "the clock is already running")
            return
        self.clock.start(event.now)
        self.status = Status.RUNNING
        self._clock_changed()

    def _pause(self, event: Pause) -> None:
        if self.status is not Status.RUNNING:
            self._refuse(event, f"the clock is {self.status.value}, not running")
            return
        self.clock.pause(event.now)
        self.status = Status.PAUSED
        self._clock_changed()

    def _step(self, event: Step) -> None:
        pending = [r.inject.at for r in self._injects.values()
                   if r.state is InjectState.PENDING]
        target = max(min(pending, default=self.end), self.virtual)
        self.clock.jump(target, event.now)
        if self.status is Status.READY:
            self.status = Status.PAUSED
        self._run_until(target)
        if target >= self.end:
            self._end(by_director=False)
        else:
            self._clock_changed()

    def _end(self, *, by_director: bool) -> None:
        """Stop the clock for good; what is open is missed, what never opened is void."""
        self.clock.stop(self.virtual)
        self.status = Status.ENDED
        for record in self.expectations():
            if record.state is ExpectationState.OPEN:
                self._expectation(record, state=ExpectationState.MISSED)
            elif record.state is ExpectationState.PENDING:
                self._expectation(record, state=ExpectationState.VOID)
        self._clock_changed()
        self.ended = Ended(at=self.virtual, by_director=by_director)
        self._out.append(self.ended)

    # --- injects ---------------------------------------------------------------------------

    def _pending(self, event: Event, number: str) -> InjectRecord | None:
        record = self._injects.get(number)
        if record is None:
            self._refuse(event, f"no inject {number!r} in this exercise")
        elif record.state is not InjectState.PENDING:
            self._refuse(event, f"inject {number!r} is {record.state.value}, not pending")
        else:
            return record
        return None

    def _deliver(self, record: InjectRecord, at: float) -> None:
        inject = record.inject
        self._inject(record, state=InjectState.DELIVERED, delivered_at=at)
        self._out.append(SendInject(inject=inject, at=at))
        for e in inject.expectations:
            self._expectation(self._expectations[e.id], state=ExpectationState.OPEN,
                              opened_at=at, deadline=at + e.within)

    def _withdraw(self, event: Cancel | Skip, number: str, state: InjectState) -> None:
        record = self._pending(event, number)
        if record is None:
            return
        self._inject(record, state=state)
        for e in record.inject.expectations:
            self._expectation(self._expectations[e.id], state=ExpectationState.VOID)

    def _add(self, event: AddInject) -> None:
        inject = event.inject
        problems = msel_problems([inject])
        if inject.number in self._injects:
            problems.append(f"inject number {inject.number!r} is taken")
        problems += [f"expectation id {e.id!r} is taken" for e in inject.expectations
                     if e.id in self._expectations]
        if inject.at > self.end:
            problems.append(f"inject {inject.number!r} at {inject.at} is after the end at "
                            f"{self.end}")
        if problems:
            self._refuse(event, "; ".join(problems))
            return
        # A time already passed (a row copied during a pause) means "as soon as the clock
        # runs", never "too old to go".
        record = InjectRecord(inject=replace(inject, at=max(inject.at, self.virtual)),
                              adhoc=True)
        self._injects[inject.number] = record
        self._out.append(InjectChanged(record=record))
        for e in inject.expectations:
            self._expectations[e.id] = ExpectationRecord(expectation=e)
            self._out.append(ExpectationChanged(record=self._expectations[e.id]))

    def _inject(self, record: InjectRecord, **changes: Any) -> None:
        new = replace(record, **changes)
        self._injects[record.inject.number] = new
        self._out.append(InjectChanged(record=new))

    # --- expectations ----------------------------------------------------------------------

    def _met(self, event: Met) -> None:
        record = self._expectations.get(event.expectation)
        if record is None:
            self._refuse(event, f"no expectation {event.expectation!r} in this run")
            return
        at = self.virtual if event.at is None else min(event.at, self.virtual)
        name = event.expectation
        if record.state not in (ExpectationState.OPEN, ExpectationState.MISSED):
            self._refuse(event, f"expectation {name!r} is {record.state.value}, not open")
            return
        # both are set when it opens
        assert record.opened_at is not None
        assert record.deadline is not None
        if at < record.opened_at:
            self._refuse(event, f"expectation {name!r} opened at {record.opened_at}, "
                                f"after {at}")
        elif at <= record.deadline:
            self._expectation(record, state=ExpectationState.MET, met_at=at, by=event.by,
                              how=event.how)
        elif record.met_at is None:  # late: it stays missed, the review shows the time
            self._expectation(record, met_at=at, by=event.by, how=event.how)
        else:
            self._refuse(event, f"expectation {name!r} was missed, and met late at "
                                f"{record.met_at} already")

    def _expectation(self, record: ExpectationRecord, **changes: Any) -> None:
        new = replace(record, **changes)
        self._expectations[record.expectation.id] = new
        self._out.append(ExpectationChanged(record=new))
