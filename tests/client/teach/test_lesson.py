"""LessonEngine and the lesson's rules, in memory: no hub, no clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.replay.scenario import Participant, load, resolve
from client.teach import lesson as le

COCAIR = load(resolve("cocair-v"))


def _engine(late: tuple[str, ...] = ()) -> le.LessonEngine:
    return le.LessonEngine(le.lesson_items(COCAIR, late=late), COCAIR.ocu, COCAIR.participants)


def _carry_all(engine: le.LessonEngine, actions: list[le.Action], epoch: int = 0
               ) -> list[int]:
    """Report every Carry as done (the runtime's part); the indexes carried, in order."""
    carried = []
    pending = [a for a in actions if isinstance(a, le.Carry)]
    while pending:
        carry = pending.pop(0)
        carried.append(carry.index)
        if isinstance(carry.item, le.MembershipItem) and carry.item.action != "create":
            epoch += 1
        pending += [a for a in engine.handle(le.Carried(index=carry.index, epoch=epoch))
                    if isinstance(a, le.Carry)]
    return carried


def _refusals(actions: list[le.Action]) -> list[str]:
    return [a.reason for a in actions if isinstance(a, le.Refused)]


def test_lesson_items_open_the_channel_then_every_storyline_step_in_time_order() -> None:
    """The first item opens the channel to every participant but the OCU; then each
    storyline message once, in time order."""
    items = le.lesson_items(COCAIR)
    first = items[0]
    assert isinstance(first, le.MembershipItem)
    assert first.action == "create"
    assert set(first.units) == set(COCAIR.participants) - {COCAIR.ocu}
    messages = [i for i in items[1:] if isinstance(i, le.MessageItem)]
    assert len(messages) == len(COCAIR.steps) == len(items) - 1
    assert [m.at for m in messages] == sorted(m.at for m in messages)
    assert {m.message["id"] for m in messages} == {s.message["id"] for s in COCAIR.steps}


def test_lesson_items_leave_late_units_out_of_the_opening() -> None:
    first = le.lesson_items(COCAIR, late=["NG-NDLEA-LOS"])[0]
    assert isinstance(first, le.MembershipItem)
    assert "NG-NDLEA-LOS" not in first.units


def test_lesson_forward_carries_one_item_at_a_time_and_shows_it() -> None:
    """Forward past what was carried out asks for the next item only; the cursor moves
    when the runtime reports it carried out."""
    engine = _engine()
    actions = engine.handle(le.Forward())
    assert [a.index for a in actions if isinstance(a, le.Carry)] == [0]
    assert engine.cursor == -1
    assert engine.moving
    assert _refusals(engine.handle(le.Forward())) == ["still carrying out the previous step"]
    engine.handle(le.Carried(index=0, epoch=0))
    assert (engine.cursor, engine.done, engine.epoch) == (0, 1, 0)
    assert not engine.moving


def test_lesson_back_moves_the_cursor_only_and_forward_returns_without_carrying() -> None:
    engine = _engine()
    _carry_all(engine, engine.handle(le.Jump(index=3)))
    assert (engine.cursor, engine.done) == (3, 4)
    assert engine.handle(le.Back()) == [le.Changed()]
    assert engine.cursor == 2
    assert engine.handle(le.Forward()) == [le.Changed()]  # shown, not carried again
    assert (engine.cursor, engine.done) == (3, 4)


def test_lesson_back_from_the_first_item_is_refused() -> None:
    engine = _engine()
    _carry_all(engine, engine.handle(le.Forward()))
    assert _refusals(engine.handle(le.Back())) == ["this is the first item"]


def test_lesson_jump_ahead_carries_every_item_before_it_in_order() -> None:
    engine = _engine()
    assert _carry_all(engine, engine.handle(le.Jump(index=6))) == list(range(7))
    assert engine.cursor == 6


def test_lesson_jump_outside_the_items_is_refused_naming_the_range() -> None:
    engine = _engine()
    refused = _refusals(engine.handle(le.Jump(index=len(engine.items))))
    assert refused
    assert f"0 to {len(engine.items) - 1}" in refused[0]


def test_lesson_play_moves_forward_at_its_pace_and_stops_at_the_end() -> None:
    engine = _engine()
    _carry_all(engine, engine.handle(le.Forward()))
    engine.handle(le.SetPace(seconds=2.0))
    engine.handle(le.Play(now=100.0))
    assert engine.handle(le.Tick(now=101.0)) == []
    carried = _carry_all(engine, engine.handle(le.Tick(now=102.0)))
    assert carried == [1]
    assert engine.cursor == 1
    _carry_all(engine, engine.handle(le.Jump(index=len(engine.items) - 1)))
    engine.handle(le.Tick(now=1000.0))
    assert not engine.playing


def test_lesson_following_a_storyline_steps_through_its_messages_only() -> None:
    """Following a storyline, forward goes to its next message (carrying out what lies
    between, in order) and back to its previous one; membership changes still show."""
    engine = _engine()
    story = COCAIR.storylines[0]["id"]
    mine = [i for i, item in enumerate(engine.items)
            if isinstance(item, le.MessageItem) and item.storyline == story]
    _carry_all(engine, engine.handle(le.Forward()))
    engine.handle(le.Follow(storyline=story))
    shown = []
    for _ in mine:
        carried = _carry_all(engine, engine.handle(le.Forward()))
        assert carried == sorted(carried)
        shown.append(engine.cursor)
    assert shown == mine
    assert engine.done == mine[-1] + 1
    assert _refusals(engine.handle(le.Forward())) == ["this is the last item"]
    engine.handle(le.Back())
    assert engine.cursor == mine[-2]
    engine.handle(le.Follow(storyline=None))
    engine.handle(le.Back())
    assert engine.cursor == mine[-2] - 1


def test_lesson_following_an_unknown_storyline_is_refused() -> None:
    refused = _refusals(_engine().handle(le.Follow(storyline="atlantis")))
    assert refused
    assert "no storyline 'atlantis'" in refused[0]


def test_lesson_pace_outside_its_bounds_is_refused() -> None:
    engine = _engine()
    for bad in (0.0, -1.0, float("nan"), 10_000.0):
        assert _refusals(engine.handle(le.SetPace(seconds=bad)))
    assert engine.pace == le.DEFAULT_PACE


def test_lesson_remove_inserts_a_membership_item_after_what_was_carried_out() -> None:
    """A removal is carried out at once, as the item after the last carried out one,
    and the unit's history records the epoch it was removed in."""
    engine = _engine()
    _carry_all(engine, engine.handle(le.Jump(index=2)))
    total = len(engine.items)
    carried = _carry_all(engine, engine.handle(le.Remove(unit="CI-JAITF-ABJ")))
    assert carried == [3]
    assert len(engine.items) == total + 1
    item = engine.items[3]
    assert isinstance(item, le.MembershipItem)
    assert item.action == "remove"
    assert engine.membership["CI-JAITF-ABJ"].spans == [(0, 1)]
    assert not engine.membership["CI-JAITF-ABJ"].member


def test_lesson_refuses_to_send_for_a_removed_sender_until_it_is_added_back() -> None:
    engine = _engine()
    _carry_all(engine, engine.handle(le.Forward()))
    _carry_all(engine, engine.handle(le.Remove(unit="CI-JAITF-ABJ")))
    last = len(engine.items) - 1
    refused = _refusals(engine.handle(le.Jump(index=last)))
    assert refused
    assert "CI-JAITF-ABJ" in refused[0]
    assert "add it back" in refused[0]
    _carry_all(engine, engine.handle(le.Add(unit="CI-JAITF-ABJ")), epoch=1)
    assert engine.membership["CI-JAITF-ABJ"].spans == [(0, 1), (2, None)]
    assert _carry_all(engine, engine.handle(le.Jump(index=len(engine.items) - 1)), epoch=2)


@pytest.mark.parametrize(("event", "reason"), [
    (le.Remove(unit="XX-NOBODY"), "no participant"),
    (le.Remove(unit="OCU-WCO"), "is the OCU"),
    (le.Add(unit="BR-PF-GRU"), "already a member"),
])
def test_lesson_membership_mistakes_are_refused(event: le.Event, reason: str) -> None:
    engine = _engine()
    _carry_all(engine, engine.handle(le.Forward()))
    refused = _refusals(engine.handle(event))
    assert refused
    assert reason in refused[0]


def test_lesson_failure_stops_the_lesson_going_forward_but_not_back() -> None:
    engine = _engine()
    _carry_all(engine, engine.handle(le.Jump(index=1)))
    engine.handle(le.Forward())
    engine.handle(le.Failed(index=2, reason="the hub went away"))
    assert engine.failure is not None
    assert "the hub went away" in engine.failure
    assert _refusals(engine.handle(le.Forward()))
    assert engine.handle(le.Back()) == [le.Changed()]


@given(st.lists(st.one_of(
    st.just(le.Forward()), st.just(le.Back()),
    st.integers(0, 30).map(lambda i: le.Jump(index=i)),
    st.sampled_from([None, *(s["id"] for s in COCAIR.storylines)]).map(
        lambda s: le.Follow(storyline=s)),
    st.sampled_from(["CI-JAITF-ABJ", "BR-PF-GRU", "NG-NDLEA-LOS"]).map(
        lambda u: le.Remove(unit=u)),
    st.sampled_from(["CI-JAITF-ABJ", "BR-PF-GRU", "NG-NDLEA-LOS"]).map(
        lambda u: le.Add(unit=u))), max_size=40))
def test_lesson_any_sequence_carries_each_item_once_in_order(events: list[Any]) -> None:
    """Whatever the instructor does, items are carried out once each, in list order, and
    the cursor never shows an item that was not carried out."""
    engine = _engine(late=("NG-NDLEA-LOS",))
    carried: list[int] = []
    epoch = 0
    for event in events:
        carried += _carry_all(engine, engine.handle(event), epoch)
        epoch = engine.epoch or 0
        assert engine.cursor < engine.done
    assert carried == list(range(len(carried)))


# --- what a lesson teaches -------------------------------------------------------------


PARTICIPANTS = {u: Participant(u, u, c, "customs", r) for u, c, r in [
    ("OCU", "BE", "ocu"), ("DESK", "FR", "liaison"), ("TG-1", "TG", "unit"),
    ("TG-2", "TG", "unit"), ("NG-1", "NG", "unit")]}


def _m(kind: str, sender: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "id": f"{sender}-{kind}", "sender": {"unit": sender,
                                                               "country": sender[:2]}, **fields}


def test_recipients_of_a_warning_expand_countries_to_their_units() -> None:
    to, everyone = le.recipients(_m("warning", "OCU", addressees=["TG", "NG-1"]),
                                 PARTICIPANTS, "OCU", {})
    assert (sorted(to), everyone) == (["NG-1", "TG-1", "TG-2"], False)


def test_recipients_of_an_answer_are_the_sender_of_what_it_refers_to() -> None:
    rfi = _m("request_for_information", "TG-1", to=[{"unit": "DESK"}])
    assert le.recipients(rfi, PARTICIPANTS, "OCU", {}) == (["DESK"], False)
    answer = _m("rfi_response", "DESK", refers_to=rfi["id"])
    assert le.recipients(answer, PARTICIPANTS, "OCU", {rfi["id"]: rfi}) == (["TG-1"], False)


def test_recipients_of_a_report_are_the_ocu_and_of_the_ocus_own_everyone() -> None:
    assert le.recipients(_m("seizure_report", "TG-1"), PARTICIPANTS, "OCU", {}) == (
        ["OCU"], False)
    assert le.recipients(_m("alert", "OCU"), PARTICIPANTS, "OCU", {}) == ([], True)


def test_step_key_names_variants_and_a_seizure_after_a_warning() -> None:
    assert le.step_key(_m("rfi_response", "DESK", result="hit"), []) == "rfi_response.hit"
    assert le.step_key(_m("controlled_delivery", "TG-1", phase="handed_over"), []) == (
        "controlled_delivery.handed_over")
    warning = _m("warning", "OCU", addressees=["TG"])
    assert le.step_key(_m("seizure_report", "TG-1"), [warning]) == (
        "seizure_report.after_warning")
    assert le.step_key(_m("seizure_report", "NG-1"), [warning]) == "seizure_report"


@pytest.mark.parametrize(("spans", "epoch", "read", "reason"), [
    ([(0, None)], 0, True, "read"),
    ([(0, None)], 0, False, "no_record"),
    ([(0, 2)], 2, False, "removed"),
    ([(0, 2), (4, None)], 3, False, "removed"),
    ([(3, None)], 1, False, "not_yet"),
    ([], 1, False, "not_member"),
])
def test_reading_says_why_a_unit_can_or_cannot_read(spans: list[tuple[int, int | None]],
                                                    epoch: int, read: bool,
                                                    reason: str) -> None:
    r = le.reading("TG-1", sender="NG-1", epoch=epoch, read=read,
                   history=le.Membership(spans))
    assert r.reason == reason
    assert r.can == (reason == "read")


def test_reading_of_the_sender_is_sender() -> None:
    assert le.reading("NG-1", sender="NG-1", epoch=0, read=False, history=None).reason == (
        "sender")
