"""client.exercise.engine.ExerciseEngine, driven with events only: wall times are plain
numbers, no event loop, no clock.

The first tests are the bug classes users of OpenEx (now OpenAEV, github.com/
OpenAEV-Platform/openaev) report; each names the report it comes from."""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.exercise import engine as e
from client.exercise.model import (
    Action,
    Expectation,
    ExpectationState,
    Inject,
    InjectState,
    Status,
)
from protocol.errors import UsageError

SEAT = "JM-CUSTOMS"


def _inject(number: str, at: float, *within: float) -> Inject:
    """Inject ``number`` at ``at``, raising one manual expectation per ``within``."""
    return Inject(number=number, at=at, sender="EXCON", to=(SEAT,),
                  message={"type": "warning", "text": f"inject {number}"},
                  expectations=tuple(
                      Expectation(id=f"{number}.{i}", inject=number, seat=SEAT,
                                  action=Action.MANUAL, within=w, score=i + 1)
                      for i, w in enumerate(within)))


def _sent(actions: Sequence[e.Action]) -> list[tuple[str, float]]:
    return [(a.inject.number, a.at) for a in actions if isinstance(a, e.SendInject)]


def _refused(actions: Sequence[e.Action]) -> list[str]:
    return [a.reason for a in actions if isinstance(a, e.Refused)]


def _state(engine: e.ExerciseEngine, number: str) -> InjectState:
    record = engine.inject(number)
    assert record is not None
    return record.state


def _expectation(engine: e.ExerciseEngine, id: str) -> Any:
    record = engine.expectation(id)
    assert record is not None
    return record


# --- the bug classes first -----------------------------------------------------------------


def test_engine_deliver_now_after_a_pause_goes_at_the_current_virtual_time() -> None:
    """Deliver-now after a 30-minute pause goes at once at the current virtual time, not
    the pause's length later (openaev#1395, "Pause on simulation delay trigger now")."""
    engine = e.ExerciseEngine([_inject("1", 100), _inject("2", 5000)])
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=50))
    engine.handle(e.Pause(now=50))
    engine.handle(e.Resume(now=50 + 1800))
    actions = engine.handle(e.DeliverNow(now=1870, number="2"))
    assert _sent(actions) == [("2", 70.0)]
    assert engine.virtual == 70.0
    assert _sent(engine.handle(e.Tick(now=1870 + 6000))) == [("1", 100.0)]


def test_engine_deliver_now_during_a_pause_goes_at_the_paused_time() -> None:
    """Deliver-now while paused goes at once, dated the virtual time the clock stopped at
    (openaev#1395)."""
    engine = e.ExerciseEngine([_inject("1", 500)])
    engine.handle(e.Resume(now=0))
    engine.handle(e.Pause(now=40))
    assert _sent(engine.handle(e.DeliverNow(now=900, number="1"))) == [("1", 40.0)]
    assert engine.status is Status.PAUSED


def test_engine_first_inject_after_a_pause_goes_once_at_its_time() -> None:
    """After a pause longer than the time left to the next inject, that inject is neither
    lost nor sent at the resume nor twice: it goes once, at its own virtual time, when the
    clock reaches it (openaev#2282, "The first inject after a pause ... doesn't get
    executed"; fixed by openaev#2320)."""
    engine = e.ExerciseEngine([_inject("1", 100), _inject("2", 200)])
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=90))
    engine.handle(e.Pause(now=90))
    sent = _sent(engine.handle(e.Tick(now=600)))
    sent += _sent(engine.handle(e.Resume(now=1000)))
    assert sent == []
    assert engine.virtual == 90.0
    sent += _sent(engine.handle(e.Tick(now=1009)))
    assert sent == []
    sent += _sent(engine.handle(e.Tick(now=1010)))
    sent += _sent(engine.handle(e.Tick(now=1500)))
    assert sent == [("1", 100.0), ("2", 200.0)]
    assert [_state(engine, n) for n in "12"] == [InjectState.DELIVERED] * 2


def test_engine_inject_duplicated_during_a_pause_goes_when_the_clock_resumes() -> None:
    """A copy of an inject made during a pause, its time long past, is not refused as too
    old: it waits for the clock and goes when it resumes (openaev#2798, "Inject duplicated
    during a pause can get in error")."""
    engine = e.ExerciseEngine([_inject("1", 10, 60)])
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=50))
    engine.handle(e.Pause(now=50))
    original = engine.inject("1")
    assert original is not None
    copy_of_1 = _inject("1b", original.inject.at, 60)
    added = engine.handle(e.AddInject(now=60, inject=copy_of_1))
    assert _refused(added) == []
    assert _sent(added) == []
    assert _sent(engine.handle(e.Tick(now=3000))) == []
    assert _state(engine, "1b") is InjectState.PENDING
    assert _sent(engine.handle(e.Resume(now=3600))) == [("1b", 50.0)]
    assert _expectation(engine, "1b.0").deadline == 110.0


def test_engine_reset_returns_every_inject_and_expectation_to_the_start() -> None:
    """After a reset every inject is pending again at its own MSEL time (deliver-now does
    not move it), ad-hoc ones are gone, expectations are pending, the clock is at 0
    (openaev#5608, "Simulation reset does not update inject state"; openaev#265,
    "Triggering the inject now change the date of the inject")."""
    msel = [_inject("1", 10, 30), _inject("2", 20), _inject("3", 30), _inject("4", 40)]
    engine = e.ExerciseEngine(msel)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=15))
    engine.handle(e.Met(now=16, expectation="1.0", by="director"))
    engine.handle(e.DeliverNow(now=17, number="2"))
    engine.handle(e.Cancel(now=18, number="3"))
    engine.handle(e.Skip(now=19, number="4"))
    engine.handle(e.AddInject(now=19, inject=_inject("5", 0, 10)))

    assert engine.handle(e.Reset(now=20)) == [e.NewRun(run=2)]
    assert [(r.inject.number, r.inject.at, r.state, r.delivered_at) for r in engine.injects()] \
        == [(i.number, i.at, InjectState.PENDING, None) for i in msel]
    assert [(r.expectation.id, r.state) for r in engine.expectations()] \
        == [("1.0", ExpectationState.PENDING)]
    assert (engine.status, engine.virtual, engine.run) == (Status.READY, 0.0, 2)
    engine.handle(e.Resume(now=100))
    assert _sent(engine.handle(e.Tick(now=200))) == [("1", 10), ("2", 20), ("3", 30), ("4", 40)]


def test_engine_without_injects_ends_at_its_end_time() -> None:
    """An exercise with no inject at all still ends, at its end time (openaev#1586,
    "Simulations never ends if no inject / disabled injects")."""
    engine = e.ExerciseEngine([], end=600)
    engine.handle(e.Resume(now=0))
    assert engine.handle(e.Tick(now=599)) == []
    actions = engine.handle(e.Tick(now=601))
    assert actions[-1] == e.Ended(at=600.0, by_director=False)
    assert engine.status is Status.ENDED


def test_engine_with_every_inject_cancelled_still_ends() -> None:
    """Injects that will never go (cancelled, skipped) do not hold the end back
    (openaev#1586, openaev#2091, "When I have some disabled inject, simulation still On
    Going")."""
    engine = e.ExerciseEngine([_inject("1", 100, 50), _inject("2", 200)], end=1000)
    engine.handle(e.Cancel(now=0, number="1"))
    engine.handle(e.Skip(now=0, number="2"))
    engine.handle(e.Resume(now=0))
    assert e.Ended(at=1000.0, by_director=False) in engine.handle(e.Tick(now=1000))


def test_engine_end_resolves_every_expectation() -> None:
    """At the end no expectation is left open or pending: open ones are missed, those of
    injects that never went are void, so nothing keeps the exercise "ongoing" (openaev#4831,
    "Simulation status remains ongoing even after all expectations are resolved")."""
    engine = e.ExerciseEngine([_inject("1", 10, 5000), _inject("2", 20, 60),
                               _inject("3", 900, 60)], end=1000)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=30))
    engine.handle(e.Met(now=31, expectation="2.0", by=SEAT))
    engine.handle(e.Cancel(now=32, number="3"))
    engine.handle(e.End(now=40))
    states = {r.expectation.id: r.state for r in engine.expectations()}
    assert states == {"1.0": ExpectationState.MISSED, "2.0": ExpectationState.MET,
                      "3.0": ExpectationState.VOID}


def test_engine_paused_does_not_end_by_itself_but_the_director_can_end_it() -> None:
    """A paused exercise stays paused past its end time; the director's end works in any
    state and comes once (openaev#4353, "In some cases the simulation never ends")."""
    engine = e.ExerciseEngine([_inject("1", 10)], end=100)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Pause(now=50))
    assert engine.handle(e.Tick(now=10_000)) == []
    actions = engine.handle(e.End(now=10_001))
    assert actions[-1] == e.Ended(at=50.0, by_director=True)
    assert engine.status is Status.ENDED
    assert engine.handle(e.End(now=10_002)) == []


# --- the clock -----------------------------------------------------------------------------


def test_engine_clock_stays_at_zero_until_started() -> None:
    """Before the first resume ticks move nothing and nothing goes."""
    engine = e.ExerciseEngine([_inject("1", 0)])
    assert engine.handle(e.Tick(now=500)) == []
    assert (engine.status, engine.virtual) == (Status.READY, 0.0)


def test_engine_clock_is_wall_time_since_start_times_speed() -> None:
    """Running, virtual time is the wall time since the start times the speed."""
    engine = e.ExerciseEngine([], end=10**6, speed=3600)
    engine.handle(e.Resume(now=1000))
    engine.handle(e.Tick(now=1002.5))
    assert engine.virtual == 9000.0


def test_engine_pause_freezes_the_clock_and_resume_goes_on_from_there() -> None:
    """A pause stops the virtual time; the resume continues from where it stopped, the
    paused wall time not counted."""
    engine = e.ExerciseEngine([], end=10**6, speed=2)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Pause(now=10))
    engine.handle(e.Tick(now=100))
    assert engine.virtual == 20.0
    engine.handle(e.Resume(now=100))
    engine.handle(e.Tick(now=105))
    assert engine.virtual == 30.0


def test_engine_set_speed_keeps_the_time_reached() -> None:
    """A new speed applies from the moment it is set; the time reached does not jump."""
    engine = e.ExerciseEngine([], end=10**6)
    engine.handle(e.Resume(now=0))
    engine.handle(e.SetSpeed(now=10, speed=60))
    assert engine.virtual == 10.0
    engine.handle(e.Tick(now=11))
    assert engine.virtual == 70.0


def test_engine_set_speed_while_paused_applies_after_the_resume() -> None:
    """A speed set during a pause neither moves the clock nor is lost."""
    engine = e.ExerciseEngine([], end=10**6)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Pause(now=5))
    engine.handle(e.SetSpeed(now=6, speed=10))
    engine.handle(e.Resume(now=20))
    engine.handle(e.Tick(now=21))
    assert engine.virtual == 15.0


@pytest.mark.parametrize("speed", [0, -1, math.nan, math.inf])
def test_engine_set_speed_refuses_a_speed_not_above_zero(speed: float) -> None:
    """A speed that is not a finite number above 0 cannot even be asked for."""
    with pytest.raises(UsageError, match="speed must be"):
        e.SetSpeed(now=0, speed=speed)


def test_engine_wall_time_going_back_never_moves_the_clock_back() -> None:
    """An event with an older wall time than one seen before leaves the clock where it is."""
    engine = e.ExerciseEngine([], end=10**6)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=100))
    engine.handle(e.Tick(now=40))
    assert engine.virtual == 100.0
    engine.handle(e.Tick(now=101))
    assert engine.virtual == 101.0


@pytest.mark.parametrize(("setup", "event", "says"), [
    ([e.Resume(now=0)], e.Resume(now=1), "already running"),
    ([], e.Pause(now=1), "ready, not running"),
    ([e.Resume(now=0), e.Pause(now=1)], e.Pause(now=2), "paused, not running"),
])
def test_engine_clock_control_in_the_wrong_state_is_refused(
        setup: list[e.Event], event: e.Event, says: str) -> None:
    """Resume while running and pause unless running are refused with the reason, and
    change nothing."""
    engine = e.ExerciseEngine([], end=1000)
    for ev in setup:
        engine.handle(ev)
    before = engine.state()
    actions = engine.handle(event)
    assert len(actions) == 1
    assert says in _refused(actions)[0]
    assert engine.state()["status"] == before["status"]


def test_engine_clock_changes_notify_the_console() -> None:
    """Resume, pause, speed and step each tell the console the clock's new state."""
    engine = e.ExerciseEngine([_inject("1", 100)], end=1000)
    changes = [a for ev in (e.Resume(now=0), e.SetSpeed(now=1, speed=2), e.Pause(now=2),
                            e.Step(now=3))
               for a in engine.handle(ev) if isinstance(a, e.ClockChanged)]
    assert changes == [
        e.ClockChanged(status=Status.RUNNING, virtual=0.0, speed=1, wall=0),
        e.ClockChanged(status=Status.RUNNING, virtual=1.0, speed=2, wall=1),
        e.ClockChanged(status=Status.PAUSED, virtual=3.0, speed=2, wall=2),
        e.ClockChanged(status=Status.PAUSED, virtual=100.0, speed=2, wall=3)]


def test_engine_step_while_paused_jumps_to_the_next_inject_and_stays_paused() -> None:
    """A step while paused delivers the next pending inject (with any at the same time) at
    its time and leaves the clock paused there."""
    engine = e.ExerciseEngine([_inject("1", 100), _inject("1a", 100), _inject("2", 300)])
    engine.handle(e.Resume(now=0))
    engine.handle(e.Pause(now=10))
    assert _sent(engine.handle(e.Step(now=20))) == [("1", 100.0), ("1a", 100.0)]
    assert (engine.status, engine.virtual) == (Status.PAUSED, 100.0)
    assert _sent(engine.handle(e.Tick(now=500))) == []


def test_engine_step_while_running_runs_on_from_the_next_inject() -> None:
    """A step while running jumps to the next inject and the clock runs on from there."""
    engine = e.ExerciseEngine([_inject("1", 100), _inject("2", 300)])
    engine.handle(e.Resume(now=0))
    assert _sent(engine.handle(e.Step(now=10))) == [("1", 100.0)]
    engine.handle(e.Tick(now=15))
    assert (engine.status, engine.virtual) == (Status.RUNNING, 105.0)


def test_engine_step_before_the_start_pauses_at_the_first_inject() -> None:
    """A step before the clock started delivers the first inject and leaves it paused."""
    engine = e.ExerciseEngine([_inject("1", 100)])
    assert _sent(engine.handle(e.Step(now=0))) == [("1", 100.0)]
    assert engine.status is Status.PAUSED


def test_engine_step_with_nothing_pending_goes_to_the_end() -> None:
    """A step when no inject is pending jumps to the end, which ends the exercise."""
    engine = e.ExerciseEngine([_inject("1", 100)], end=700)
    engine.handle(e.Step(now=0))
    actions = engine.handle(e.Step(now=1))
    assert actions[-1] == e.Ended(at=700.0, by_director=False)


def test_engine_step_misses_the_deadlines_it_jumps_over() -> None:
    """Deadlines passed by a jump are missed, in time order with the deliveries."""
    engine = e.ExerciseEngine([_inject("1", 100, 50), _inject("2", 300)])
    engine.handle(e.Step(now=0))
    actions = engine.handle(e.Step(now=1))
    kinds = [(type(a).__name__, getattr(a, "at", None)) for a in actions
             if isinstance(a, e.SendInject | e.ExpectationChanged)]
    assert kinds == [("ExpectationChanged", None), ("SendInject", 300.0)]
    assert _expectation(engine, "1.0").state is ExpectationState.MISSED


# --- injects ------------------------------------------------------------------------------


def test_engine_delivers_due_injects_in_time_then_number_order() -> None:
    """Injects due in the same tick go by time, then by number as directors count: 2
    before 10, 2 before 2a."""
    engine = e.ExerciseEngine([_inject("10", 5), _inject("2a", 5), _inject("2", 5),
                               _inject("1", 9)])
    engine.handle(e.Resume(now=0))
    assert [n for n, _ in _sent(engine.handle(e.Tick(now=10)))] == ["2", "2a", "10", "1"]


def test_engine_scheduled_inject_is_dated_its_own_time_when_the_tick_is_late() -> None:
    """A tick that comes late sends what fell due dated its own time, not the tick's."""
    engine = e.ExerciseEngine([_inject("1", 100, 60)], speed=3600)
    engine.handle(e.Resume(now=0))
    assert _sent(engine.handle(e.Tick(now=0.5))) == [("1", 100.0)]
    assert _expectation(engine, "1.0").deadline == 160.0


def test_engine_inject_at_zero_goes_when_the_clock_starts() -> None:
    """An inject at the start goes with the resume that starts the clock."""
    engine = e.ExerciseEngine([_inject("1", 0)])
    assert _sent(engine.handle(e.Resume(now=7))) == [("1", 0.0)]


@pytest.mark.parametrize(("event", "state"), [
    (e.Cancel, InjectState.CANCELLED), (e.Skip, InjectState.SKIPPED)])
def test_engine_withdrawn_inject_never_goes(event: type[e.Cancel | e.Skip],
                                            state: InjectState) -> None:
    """A cancelled or skipped inject keeps that state and is never sent."""
    engine = e.ExerciseEngine([_inject("1", 10)], end=100)
    engine.handle(event(now=0, number="1"))
    engine.handle(e.Resume(now=0))
    assert _sent(engine.handle(e.Tick(now=200))) == []
    assert _state(engine, "1") is state


@pytest.mark.parametrize("event", [e.DeliverNow, e.Cancel, e.Skip])
def test_engine_inject_already_delivered_is_refused(
        event: type[e.DeliverNow | e.Cancel | e.Skip]) -> None:
    """Deliver-now, cancel or skip of an inject that went is refused: it stays delivered
    and is never sent twice."""
    engine = e.ExerciseEngine([_inject("1", 10)])
    engine.handle(e.DeliverNow(now=0, number="1"))
    actions = engine.handle(event(now=1, number="1"))
    assert _refused(actions) == ["inject '1' is delivered, not pending"]
    assert _sent(actions) == []


@pytest.mark.parametrize("event", [e.DeliverNow, e.Cancel, e.Skip])
def test_engine_unknown_inject_is_refused(
        event: type[e.DeliverNow | e.Cancel | e.Skip]) -> None:
    """An inject number the run does not have is refused, naming it."""
    engine = e.ExerciseEngine([_inject("1", 10)])
    assert _refused(engine.handle(event(now=0, number="9"))) == [
        "no inject '9' in this exercise"]


def test_engine_deliver_now_does_not_deliver_again_at_its_time() -> None:
    """An inject delivered early is not sent again when its own time comes."""
    engine = e.ExerciseEngine([_inject("1", 100)])
    engine.handle(e.Resume(now=0))
    sent = _sent(engine.handle(e.DeliverNow(now=5, number="1")))
    sent += _sent(engine.handle(e.Tick(now=500)))
    assert sent == [("1", 5.0)]


def test_engine_adhoc_inject_with_a_past_time_goes_at_once_while_running() -> None:
    """An inject written during play with a time already passed goes at once, dated now."""
    engine = e.ExerciseEngine([], end=1000)
    engine.handle(e.Resume(now=0))
    actions = engine.handle(e.AddInject(now=30, inject=_inject("x", 0)))
    assert _sent(actions) == [("x", 30.0)]
    record = engine.inject("x")
    assert record is not None
    assert (record.adhoc, record.inject.at) == (True, 30.0)


def test_engine_adhoc_inject_with_a_later_time_waits_for_it() -> None:
    """An inject written during play for later goes at its time, not before."""
    engine = e.ExerciseEngine([], end=1000)
    engine.handle(e.Resume(now=0))
    assert _sent(engine.handle(e.AddInject(now=30, inject=_inject("x", 60)))) == []
    assert _sent(engine.handle(e.Tick(now=61))) == [("x", 60.0)]


@pytest.mark.parametrize(("inject", "says"), [
    (_inject("1", 5), "inject number '1' is taken"),
    (_inject("x", 5000), "is after the end at 1000"),
    (Inject(number="x", at=5, sender="EXCON", to=(), message={}, expectations=(
        Expectation(id="1.0", inject="x", seat=SEAT, action=Action.MANUAL, within=5),)),
     "expectation id '1.0' is taken"),
    (Inject(number="x", at=5, sender="EXCON", to=(), message={}, expectations=(
        Expectation(id="y.0", inject="y", seat=SEAT, action=Action.MANUAL, within=5),)),
     "names inject 'y'"),
    (_inject("x", math.nan), "at must be a finite time"),
])
def test_engine_adhoc_inject_that_does_not_fit_is_refused(inject: Inject, says: str) -> None:
    """An ad-hoc inject with a taken number or expectation id, a time after the end or
    no time at all is refused with the reason, and nothing is added."""
    engine = e.ExerciseEngine([_inject("1", 10, 5)], end=1000)
    actions = engine.handle(e.AddInject(now=0, inject=inject))
    assert says in _refused(actions)[0]
    assert [r.inject.number for r in engine.injects()] == ["1"]


# --- expectations ---------------------------------------------------------------------------


def test_engine_delivery_opens_expectations_with_a_deadline() -> None:
    """An inject's expectations wait until it goes, then open until delivery + within."""
    engine = e.ExerciseEngine([_inject("1", 100, 7200, 600)])
    assert _expectation(engine, "1.0").state is ExpectationState.PENDING
    engine.handle(e.Step(now=0))
    assert [(r.state, r.opened_at, r.deadline) for r in engine.expectations()] == [
        (ExpectationState.OPEN, 100.0, 7300.0), (ExpectationState.OPEN, 100.0, 700.0)]


def test_engine_met_records_who_how_the_time_taken_and_the_score() -> None:
    """A met expectation keeps when, by whom and how, the time it took and its score."""
    engine = e.ExerciseEngine([_inject("1", 100, 7200, 600)])
    engine.handle(e.Step(now=0))
    engine.handle(e.Resume(now=0))
    engine.handle(e.Met(now=300, expectation="1.1", by=SEAT, how="feedback", at=400))
    record = _expectation(engine, "1.1")
    assert (record.state, record.met_at, record.by, record.how, record.taken,
            record.points) == (ExpectationState.MET, 400.0, SEAT, "feedback", 300.0, 2)
    assert engine.state()["score"] == {"points": 2, "possible": 3}


def test_engine_met_without_a_time_or_ahead_of_the_clock_counts_as_now() -> None:
    """A director's validation (no time) and a time ahead of the clock both count as the
    current virtual time."""
    engine = e.ExerciseEngine([_inject("1", 100, 7200, 600)])
    engine.handle(e.Step(now=0))
    engine.handle(e.Met(now=1, expectation="1.0", by="director"))
    engine.handle(e.Met(now=1, expectation="1.1", by=SEAT, at=10**5))
    assert [r.met_at for r in engine.expectations()] == [100.0, 100.0]


def test_engine_expectation_is_missed_once_its_deadline_has_passed() -> None:
    """An open expectation is still open at its deadline and missed just after it."""
    engine = e.ExerciseEngine([_inject("1", 0, 60)], end=1000)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=60))
    assert _expectation(engine, "1.0").state is ExpectationState.OPEN
    actions = engine.handle(e.Tick(now=60.5))
    assert [a.record.state for a in actions if isinstance(a, e.ExpectationChanged)] == [
        ExpectationState.MISSED]


def test_engine_deadlines_do_not_pass_while_paused() -> None:
    """A paused clock leaves open expectations open, however long the pause."""
    engine = e.ExerciseEngine([_inject("1", 0, 60)], end=1000)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Pause(now=30))
    engine.handle(e.Tick(now=5000))
    assert _expectation(engine, "1.0").state is ExpectationState.OPEN


def test_engine_met_within_the_deadline_counts_even_after_it_was_missed() -> None:
    """A message sent in time but decrypted after the deadline passed still meets it."""
    engine = e.ExerciseEngine([_inject("1", 0, 60)], end=1000)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=70))
    assert _expectation(engine, "1.0").state is ExpectationState.MISSED
    engine.handle(e.Met(now=71, expectation="1.0", by=SEAT, at=59))
    assert _expectation(engine, "1.0").state is ExpectationState.MET


def test_engine_met_after_the_deadline_stays_missed_and_keeps_the_time() -> None:
    """A missed expectation met after its deadline stays missed, scores nothing, and keeps
    when, by whom and how it was met late; a second late one is refused."""
    engine = e.ExerciseEngine([_inject("1", 0, 60)], end=1000)
    engine.handle(e.Resume(now=0))
    engine.handle(e.Tick(now=70))
    engine.handle(e.Met(now=71, expectation="1.0", by=SEAT, how="feedback", at=65))
    record = _expectation(engine, "1.0")
    assert (record.state, record.late, record.taken, record.by, record.points) == (
        ExpectationState.MISSED, True, 65.0, SEAT, 0)
    actions = engine.handle(e.Met(now=72, expectation="1.0", by=SEAT, at=66))
    assert "met late at 65 already" in _refused(actions)[0]


@pytest.mark.parametrize(("setup", "met", "says"), [
    ([], e.Met(now=1, expectation="1.0", by=SEAT), "is pending, not open"),
    ([e.Cancel(now=0, number="1")], e.Met(now=1, expectation="1.0", by=SEAT),
     "is void, not open"),
    ([e.Step(now=0), e.Met(now=0, expectation="1.0", by=SEAT)],
     e.Met(now=1, expectation="1.0", by=SEAT), "is met, not open"),
    ([], e.Met(now=1, expectation="9.0", by=SEAT), "no expectation '9.0'"),
    ([e.Step(now=0)], e.Met(now=1, expectation="1.0", by=SEAT, at=50),
     "opened at 100, after 50"),
])
def test_engine_met_of_an_expectation_not_open_is_refused(
        setup: list[e.Event], met: e.Met, says: str) -> None:
    """Met for an expectation not yet open, void, already met, unknown, or before its
    inject went is refused with the reason."""
    engine = e.ExerciseEngine([_inject("1", 100, 60)])
    for ev in setup:
        engine.handle(ev)
    assert says in _refused(engine.handle(met))[0]


def test_engine_withdrawn_inject_voids_its_expectations() -> None:
    """Cancelling an inject makes its expectations void at once."""
    engine = e.ExerciseEngine([_inject("1", 100, 60)])
    engine.handle(e.Cancel(now=0, number="1"))
    assert _expectation(engine, "1.0").state is ExpectationState.VOID


# --- the end -----------------------------------------------------------------------------


def test_engine_ends_once_at_its_end_time_after_delivering_what_was_due() -> None:
    """A tick past the end delivers what was due by the end, then ends once, at the end,
    the clock stopped there."""
    engine = e.ExerciseEngine([_inject("1", 1000)], end=1000)
    engine.handle(e.Resume(now=0))
    actions = engine.handle(e.Tick(now=5000))
    assert _sent(actions) == [("1", 1000.0)]
    assert [a for a in actions if isinstance(a, e.Ended)] == [
        e.Ended(at=1000.0, by_director=False)]
    assert engine.handle(e.Tick(now=6000)) == []
    assert engine.virtual == 1000.0


@pytest.mark.parametrize("event", [
    e.Resume(now=9), e.Pause(now=9), e.Step(now=9), e.SetSpeed(now=9, speed=2),
    e.DeliverNow(now=9, number="2"), e.Cancel(now=9, number="2"),
    e.Skip(now=9, number="2"), e.AddInject(now=9, inject=_inject("x", 5)),
    e.Met(now=9, expectation="1.0", by=SEAT)])
def test_engine_events_after_the_end_are_refused(event: e.Event) -> None:
    """After the end every event but tick, end and reset is refused and changes nothing."""
    engine = e.ExerciseEngine([_inject("1", 0, 60), _inject("2", 100)])
    engine.handle(e.Resume(now=0))
    engine.handle(e.End(now=1))
    before = engine.state()
    assert _refused(engine.handle(event)) == [
        "the exercise has ended; only a reset restarts it"]
    assert engine.state() == before


def test_engine_reset_after_the_end_starts_a_new_run() -> None:
    """A reset after the end starts run 2, ready, with the MSEL pending again."""
    engine = e.ExerciseEngine([_inject("1", 0)])
    engine.handle(e.Resume(now=0))
    engine.handle(e.End(now=1))
    assert engine.handle(e.Reset(now=2)) == [e.NewRun(run=2)]
    assert _sent(engine.handle(e.Resume(now=3))) == [("1", 0.0)]


def test_engine_reset_restores_the_speed_it_was_built_with() -> None:
    """A reset forgets a speed set during the run."""
    engine = e.ExerciseEngine([], end=1000, speed=5)
    engine.handle(e.SetSpeed(now=0, speed=100))
    engine.handle(e.Reset(now=1))
    assert engine.state()["speed"] == 5


# --- building and reading -------------------------------------------------------------------


@pytest.mark.parametrize(("injects", "end", "says"), [
    ([_inject("1", 1), _inject("1", 2)], None, "inject number '1' is used twice"),
    ([_inject("1", -1)], None, "at must be a finite time >= 0"),
    ([_inject("1", 5, 1), Inject(number="2", at=5, sender="EXCON", to=(), message={},
                                 expectations=_inject("1", 5, 1).expectations)],
     None, "expectation id '1.0' is used twice"),
    ([_inject("1", 5, -3)], None, "within must be a finite time >= 0"),
    ([_inject("1", 50)], 40, "inject '1' at 50 is after the end at 40"),
    ([], math.inf, "the end must be a finite time"),
])
def test_engine_refuses_an_unusable_inject_list(
        injects: list[Inject], end: float | None, says: str) -> None:
    """An inject list the engine cannot run raises UsageError naming the problem."""
    with pytest.raises(UsageError, match=says):
        e.ExerciseEngine(injects, end=end)


def test_engine_default_end_is_the_last_deadline_plus_a_margin() -> None:
    """Without an end, the exercise ends a margin after its last inject's longest
    expectation (or its last inject)."""
    msel = [_inject("1", 100, 7200), _inject("2", 5000, 60)]
    assert e.ExerciseEngine(msel).end == 7300 + e.DEFAULT_MARGIN
    assert e.ExerciseEngine([_inject("1", 100)]).end == 100 + e.DEFAULT_MARGIN


def test_engine_state_is_plain_json() -> None:
    """state() survives a JSON round trip and shows the clock, injects and expectations."""
    engine = e.ExerciseEngine([_inject("1", 100, 60), _inject("2", 200)], end=1000)
    engine.handle(e.Step(now=0))
    state = engine.state()
    assert json.loads(json.dumps(state)) == state
    assert (state["status"], state["virtual"], state["run"]) == ("paused", 100.0, 1)
    assert [(i["number"], i["state"]) for i in state["injects"]] == [
        ("1", "delivered"), ("2", "pending")]
    assert state["expectations"][0]["state"] == "open"


def test_engine_every_inject_and_expectation_change_notifies_the_console() -> None:
    """Each change of an inject's or expectation's state comes with a notification."""
    engine = e.ExerciseEngine([_inject("1", 100, 60), _inject("2", 200)], end=1000)
    actions = engine.handle(e.Step(now=0))
    actions += engine.handle(e.Cancel(now=1, number="2"))
    actions += engine.handle(e.Met(now=2, expectation="1.0", by=SEAT))
    changes = [(a.record.inject.number, a.record.state) if isinstance(a, e.InjectChanged)
               else (a.record.expectation.id, a.record.state)
               for a in actions if isinstance(a, e.InjectChanged | e.ExpectationChanged)]
    assert changes == [("1", InjectState.DELIVERED), ("1.0", ExpectationState.OPEN),
                       ("2", InjectState.CANCELLED), ("1.0", ExpectationState.MET)]


# --- properties --------------------------------------------------------------------------

KINDS = ("tick", "pause", "resume", "step", "speed", "deliver", "cancel", "skip", "add",
         "met", "end", "reset")
MSELS = st.lists(st.tuples(st.integers(0, 600), st.lists(st.integers(0, 300), max_size=2)),
                 max_size=5)
OPS = st.lists(st.tuples(st.sampled_from(KINDS),
                         st.floats(min_value=0, max_value=300, allow_nan=False),
                         st.integers(0, 6)),
               max_size=40)
SPEEDS = (0.5, 1.0, 7.0, 60.0)


def _msel(rows: list[tuple[int, list[int]]]) -> list[Inject]:
    return [_inject(str(n), at, *within) for n, (at, within) in enumerate(rows, 1)]


def _events(msel: list[Inject], ops: list[tuple[str, float, int]]) -> list[e.Event]:
    """Events from ``ops``, wall time advancing by each op's delay; ``arg`` picks the
    inject, expectation, speed or time."""
    numbers = [i.number for i in msel] + ["nope"]
    ids = [x.id for i in msel for x in i.expectations] + ["nope"]
    events: list[e.Event] = []
    wall = 0.0
    for k, (kind, dt, arg) in enumerate(ops):
        wall += dt
        number = numbers[arg % len(numbers)]
        simple: dict[str, type[e.Tick | e.Pause | e.Resume | e.Step | e.End | e.Reset]] = {
            "tick": e.Tick, "pause": e.Pause, "resume": e.Resume, "step": e.Step,
            "end": e.End, "reset": e.Reset}
        if kind in simple:
            events.append(simple[kind](now=wall))
        elif kind == "speed":
            events.append(e.SetSpeed(now=wall, speed=SPEEDS[arg % len(SPEEDS)]))
        elif kind == "deliver":
            events.append(e.DeliverNow(now=wall, number=number))
        elif kind == "cancel":
            events.append(e.Cancel(now=wall, number=number))
        elif kind == "skip":
            events.append(e.Skip(now=wall, number=number))
        elif kind == "add":
            events.append(e.AddInject(now=wall, inject=_inject(f"a{k}", arg * 150, 30)))
        else:
            events.append(e.Met(now=wall, expectation=ids[arg % len(ids)], by=SEAT))
    return events


def _without_run(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "run"}


@settings(max_examples=300)
@given(rows=MSELS, ops=OPS)
def test_engine_any_sequence_of_events_keeps_the_invariants(
        rows: list[tuple[int, list[int]]], ops: list[tuple[str, float, int]]) -> None:
    """Whatever the director does with wall time advancing: each inject goes at most once
    per run and no earlier than the one before, a tick while the clock is not running
    changes nothing, the virtual clock never goes back except by a reset, the end comes at
    most once per run, and each run after a reset gives the same actions and state as a
    fresh engine fed the same events."""
    msel = _msel(rows)
    events = _events(msel, ops)
    engine = e.ExerciseEngine(msel)
    per_event = []
    for event in events:
        before, status = engine.virtual, engine.status
        actions = engine.handle(event)
        per_event.append((actions, engine.state()))
        if isinstance(event, e.Tick) and status is not Status.RUNNING:
            assert actions == []
        if isinstance(event, e.Reset):
            assert engine.virtual == 0.0
        else:
            assert engine.virtual >= before

    runs: list[list[e.Action]] = [[]]
    for actions, _ in per_event:
        for action in actions:
            if isinstance(action, e.NewRun):
                runs.append([])
            else:
                runs[-1].append(action)
    for run in runs:
        sent = _sent(run)
        assert len({n for n, _ in sent}) == len(sent)
        assert [t for _, t in sent] == sorted(t for _, t in sent)
        assert sum(isinstance(a, e.Ended) for a in run) <= 1

    resets = [k for k, event in enumerate(events) if isinstance(event, e.Reset)]
    for k, following in itertools.pairwise([*resets, len(events)]):
        fresh = e.ExerciseEngine(msel)
        for event, (actions, state) in zip(events[k + 1 : following],
                                           per_event[k + 1 : following], strict=True):
            assert fresh.handle(event) == actions
            assert _without_run(fresh.state()) == _without_run(state)


@settings(max_examples=200)
@given(rows=MSELS, ops=OPS, speed=st.sampled_from(SPEEDS))
def test_engine_always_ends(rows: list[tuple[int, list[int]]],
                            ops: list[tuple[str, float, int]], speed: float) -> None:
    """After any events the exercise ends: a running clock reaches the end with one tick
    late enough, and from anywhere at most one step per pending inject and one more end it;
    once ended, every expectation is met, missed or void."""
    msel = _msel(rows)
    engine = e.ExerciseEngine(msel, speed=speed)
    events = _events(msel, ops)
    for event in events:
        engine.handle(event)
    wall = events[-1].now if events else 0.0

    stepping = copy.deepcopy(engine)
    pending = sum(r.state is InjectState.PENDING for r in stepping.injects())
    for _ in range(pending + 1):
        stepping.handle(e.Step(now=wall))
    assert stepping.status is Status.ENDED

    if engine.status is not Status.ENDED:
        engine.handle(e.Resume(now=wall))
        left = (engine.end - engine.virtual) / engine.clock.speed
        engine.handle(e.Tick(now=wall + left + 1))
    assert engine.status is Status.ENDED
    assert engine.ended is not None
    assert {r.state for r in engine.expectations()} <= {
        ExpectationState.MET, ExpectationState.MISSED, ExpectationState.VOID}
