"""The expectation rules over real messages (copied from schemas/examples/valid and
re-addressed): which open expectation a seat's message meets, and the review's unanswered
warnings and response times."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from client.exercise.expectations import (
    OpenExpectation,
    Response,
    RuleMet,
    SeatReview,
    meets,
    reference_to,
    review,
)
from client.exercise.model import Action, Expectation
from client.messages import default_catalog
from client.messages.catalog import SCHEMA_DIR
from client.messages.checks import Ledger, problems
from client.messages.content import load_file
from protocol.errors import UsageError

VALID = SCHEMA_DIR / "examples" / "valid"
OPERATION = "COCAIR-V"
HOUR = 3600.0

SEAT = {"unit": "TG-JAITF-LFW", "country": "TG", "agency": "customs",
        "name": "Joint Airport Interdiction Task Force, Lomé"}
OTHER = {"unit": "BE-CUSTOMS-BRU", "country": "BE", "agency": "customs",
         "name": "Customs, Brussels Airport"}
OCU = {"unit": "COCAIR-V-OCU", "country": "BE", "agency": "international_organisation",
       "name": "COCAIR V Operational Co-ordination Unit"}
DESK = {"unit": "INTERPOL-DESK-BB", "country": "FR", "agency": "international_organisation",
        "name": "INTERPOL desk"}
ATF = {"unit": "US-ATF-DESK", "country": "US", "agency": "police", "name": "ATF desk"}


def _example(name: str, id_: str, sender: dict[str, str], **fields: Any) -> dict[str, Any]:
    """A copy of an example message under a new id, sender and operation, with ``fields``
    set (None removes one); asserted valid with the catalog and the rules."""
    m: dict[str, Any] = copy.deepcopy(load_file(Path(VALID / name)))
    m.update(id=id_, sender=dict(sender), operation=OPERATION)
    for key, value in fields.items():
        if value is None:
            m.pop(key, None)
        else:
            m[key] = value
    assert problems(default_catalog(), m) == []
    return m


def warning(id_: str, *addressees: str, sender: dict[str, str] = OCU) -> dict[str, Any]:
    return _example("warning-cocair-couriers.json", id_, sender,
                    addressees=list(addressees or [SEAT["unit"]]))


def feedback(id_: str, refers_to: str, sender: dict[str, str] = SEAT) -> dict[str, Any]:
    return _example("feedback-cocair-seized.json", id_, sender, refers_to=refers_to,
                    seizure_ref=None)


def seizure(id_: str, sender: dict[str, str] = SEAT, **fields: Any) -> dict[str, Any]:
    return _example("seizure-cocair-airport-cocaine.json", id_, sender, **fields)


def request(id_: str, *to: dict[str, str], sender: dict[str, str] = SEAT) -> dict[str, Any]:
    return _example("rfi-firearm-serial.json", id_, sender, to=list(to or [DESK]))


def response(id_: str, refers_to: str, sender: dict[str, str] = DESK) -> dict[str, Any]:
    return _example("rfi-response-multiple-purchases.json", id_, sender,
                    refers_to=refers_to, responded_by=None)


def carried(*messages: dict[str, Any]) -> None:
    """Assert the channel could carry ``messages`` in this order: every reference names a
    message carried before it, of a type it may name."""
    ledger = Ledger()
    for m in messages:
        assert problems(default_catalog(), m, ledger) == []
        ledger.record(m)


def opened(action: Action, message_id: str, *, at: float = HOUR, id_: str = "E1",
           seat: str = SEAT["unit"], target: str | None = None,
           within: float = 2 * HOUR) -> OpenExpectation:
    e = Expectation(id=id_, inject="1", seat=seat, action=action, within=within,
                    target=target)
    return OpenExpectation(expectation=e, opened_at=at, message_id=message_id)


def met_ids(found: tuple[RuleMet, ...]) -> list[str]:
    return [m.expectation_id for m in found]


# -- meets: one rule per action ------------------------------------------------------------


def test_meets_feedback_referring_to_the_warning_meets_feedback() -> None:
    """A feedback from the seat that refers to the inject's warning meets FEEDBACK, with the
    time it took."""
    w, f = warning("EXCON-W-0001"), feedback("TG-JAITF-LFW-F-0001", "EXCON-W-0001")
    carried(w, f)
    found = meets([opened(Action.FEEDBACK, w["id"])], sender=SEAT["unit"], message=f,
                  at=2 * HOUR)
    assert found == (RuleMet(expectation_id="E1", at=2 * HOUR, by=SEAT["unit"],
                         message_id=f["id"], how="feedback TG-JAITF-LFW-F-0001 answers "
                         "warning EXCON-W-0001", took=HOUR, late=False),)


def test_meets_feedback_to_another_warning_meets_nothing() -> None:
    """A feedback that refers to a different warning than the inject's leaves FEEDBACK open."""
    w1, w2 = warning("EXCON-W-0001"), warning("EXCON-W-0002")
    f = feedback("TG-JAITF-LFW-F-0001", w2["id"])
    carried(w1, w2, f)
    assert meets([opened(Action.FEEDBACK, w1["id"])], sender=SEAT["unit"], message=f,
                 at=2 * HOUR) == ()


def test_meets_message_from_another_unit_meets_nothing() -> None:
    """A feedback on the right warning from a unit other than the seat meets nothing."""
    w = warning("EXCON-W-0001", SEAT["unit"], OTHER["unit"])
    f = feedback("BE-CUSTOMS-BRU-F-0001", w["id"], sender=OTHER)
    carried(w, f)
    assert meets([opened(Action.FEEDBACK, w["id"])], sender=OTHER["unit"], message=f,
                 at=2 * HOUR) == ()


def test_meets_sender_is_the_authenticated_unit_not_the_envelope() -> None:
    """The sender that counts is the one the hub authenticated, not the envelope's claim."""
    w = warning("EXCON-W-0001")
    f = feedback("TG-JAITF-LFW-F-0001", w["id"])
    assert meets([opened(Action.FEEDBACK, w["id"])], sender=OTHER["unit"], message=f,
                 at=2 * HOUR) == ()


def test_meets_seizure_report_after_the_inject_meets_seizure_report() -> None:
    """A seizure report the seat sends after the inject meets SEIZURE_REPORT."""
    s = seizure("TG-JAITF-LFW-S-0001")
    found = meets([opened(Action.SEIZURE_REPORT, "EXCON-W-0001")], sender=SEAT["unit"],
                  message=s, at=HOUR + 60)
    assert [(m.expectation_id, m.message_id, m.took) for m in found] == [
        ("E1", s["id"], 60.0)]


def test_meets_seizure_report_before_the_inject_meets_nothing() -> None:
    """A seizure report received before the inject was delivered does not meet its
    expectation."""
    s = seizure("TG-JAITF-LFW-S-0001")
    assert meets([opened(Action.SEIZURE_REPORT, "EXCON-W-0001", at=HOUR)],
                 sender=SEAT["unit"], message=s, at=HOUR - 1) == ()


def test_meets_message_at_the_inject_time_meets() -> None:
    """A message received at the inject's own virtual time (the clock paused) counts as
    after it."""
    s = seizure("TG-JAITF-LFW-S-0001")
    found = meets([opened(Action.SEIZURE_REPORT, "EXCON-W-0001", at=HOUR)],
                  sender=SEAT["unit"], message=s, at=HOUR)
    assert met_ids(found) == ["E1"]


def test_meets_withdrawn_seizure_report_meets_nothing() -> None:
    """A withdrawn seizure report 'must not be counted', so it meets no SEIZURE_REPORT."""
    s = seizure("TG-JAITF-LFW-S-0001", status="withdrawn", revision=2)
    assert meets([opened(Action.SEIZURE_REPORT, "EXCON-W-0001")], sender=SEAT["unit"],
                 message=s, at=2 * HOUR) == ()


def test_meets_request_to_the_target_meets_request() -> None:
    """A request for information from the seat with the target among its ``to`` meets
    REQUEST."""
    r = request("TG-JAITF-LFW-RFI-0001", ATF, DESK)
    found = meets([opened(Action.REQUEST, "EXCON-W-0001", target=DESK["unit"])],
                  sender=SEAT["unit"], message=r, at=2 * HOUR)
    assert [m.how for m in found] == [
        "request for information TG-JAITF-LFW-RFI-0001 to INTERPOL-DESK-BB"]


def test_meets_request_to_another_desk_meets_nothing() -> None:
    """A request addressed to other desks than the target leaves REQUEST open."""
    r = request("TG-JAITF-LFW-RFI-0001", ATF)
    assert meets([opened(Action.REQUEST, "EXCON-W-0001", target=DESK["unit"])],
                 sender=SEAT["unit"], message=r, at=2 * HOUR) == ()


def test_meets_request_without_target_meets_a_request_to_any_desk() -> None:
    """With no target, a request for information to any desk meets REQUEST."""
    r = request("TG-JAITF-LFW-RFI-0001", ATF)
    found = meets([opened(Action.REQUEST, "EXCON-W-0001")], sender=SEAT["unit"],
                  message=r, at=2 * HOUR)
    assert met_ids(found) == ["E1"]


def test_meets_rfi_response_referring_to_the_request_meets_response() -> None:
    """An rfi response from the seat that refers to the inject's request meets RESPONSE."""
    q = request("HT-PNH-RFI-0005", DESK, sender=OTHER)
    a = response("INTERPOL-DESK-BB-R-0001", q["id"])
    carried(q, a)
    found = meets([opened(Action.RESPONSE, q["id"], seat=DESK["unit"])],
                  sender=DESK["unit"], message=a, at=2 * HOUR)
    assert [(m.expectation_id, m.by, m.message_id) for m in found] == [
        ("E1", DESK["unit"], a["id"])]


def test_meets_rfi_response_to_another_request_meets_nothing() -> None:
    """An rfi response to a different request leaves RESPONSE open."""
    q1 = request("HT-PNH-RFI-0005", DESK, sender=OTHER)
    q2 = request("HT-PNH-RFI-0006", DESK, sender=OTHER)
    a = response("INTERPOL-DESK-BB-R-0001", q2["id"])
    carried(q1, q2, a)
    assert meets([opened(Action.RESPONSE, q1["id"], seat=DESK["unit"])],
                 sender=DESK["unit"], message=a, at=2 * HOUR) == ()


def _seizure_naming_warning(warning_id: str) -> dict[str, Any]:
    s = seizure("TG-JAITF-LFW-S-0001")
    s["event"]["detection"]["warning_ref"] = warning_id
    assert problems(default_catalog(), s) == []
    return s


@pytest.mark.parametrize(("reply", "pointer"), [
    (lambda: feedback("TG-JAITF-LFW-F-0001", "EXCON-W-0001"), "/refers_to"),
    (lambda: _seizure_naming_warning("EXCON-W-0001"), "/event/detection/warning_ref"),
])
def test_meets_any_reply_meets_by_any_reference(reply: Any, pointer: str) -> None:
    """Any message from the seat that names the inject's message in a reference field meets
    ANY_REPLY, and says which field."""
    w, m = warning("EXCON-W-0001"), reply()
    carried(w, m)
    found = meets([opened(Action.ANY_REPLY, w["id"])], sender=SEAT["unit"], message=m,
                  at=2 * HOUR)
    assert [f.how.rpartition(" at ")[2] for f in found] == [pointer]
    assert reference_to(m, w["id"]) == pointer


def test_meets_any_reply_needs_a_reference() -> None:
    """A message from the seat that names no reference to the inject's message leaves
    ANY_REPLY open."""
    s = seizure("TG-JAITF-LFW-S-0001")
    assert meets([opened(Action.ANY_REPLY, "EXCON-W-0001")], sender=SEAT["unit"],
                 message=s, at=2 * HOUR) == ()


def test_meets_manual_is_never_met_by_a_rule() -> None:
    """A MANUAL expectation stays open whatever the seat sends."""
    w = warning("EXCON-W-0001")
    replies = [feedback("TG-JAITF-LFW-F-0001", w["id"]), seizure("TG-JAITF-LFW-S-0001"),
               request("TG-JAITF-LFW-RFI-0001"), _seizure_naming_warning(w["id"])]
    for m in replies:
        assert meets([opened(Action.MANUAL, w["id"])], sender=SEAT["unit"], message=m,
                     at=2 * HOUR) == ()


# -- meets: one message, several expectations -------------------------------------------


def test_meets_one_message_meets_only_the_earliest_opened_of_a_kind() -> None:
    """Of two open SEIZURE_REPORT expectations, one report meets the earliest opened only,
    whatever order the caller lists them in; the next report meets the other."""
    late = opened(Action.SEIZURE_REPORT, "EXCON-W-0002", at=2 * HOUR, id_="E2")
    early = opened(Action.SEIZURE_REPORT, "EXCON-W-0001", at=HOUR, id_="E1")
    first, second = seizure("TG-JAITF-LFW-S-0001"), seizure("TG-JAITF-LFW-S-0002")
    found = meets([late, early], sender=SEAT["unit"], message=first, at=3 * HOUR)
    assert met_ids(found) == ["E1"]
    found = meets([late], sender=SEAT["unit"], message=second, at=4 * HOUR)
    assert met_ids(found) == ["E2"]


def test_meets_ties_keep_the_callers_order() -> None:
    """Two expectations of a kind opened at the same time: the one listed first is met."""
    a = opened(Action.SEIZURE_REPORT, "EXCON-W-0001", id_="EA")
    b = opened(Action.SEIZURE_REPORT, "EXCON-W-0001", id_="EB")
    s = seizure("TG-JAITF-LFW-S-0001")
    assert met_ids(meets([b, a], sender=SEAT["unit"], message=s, at=2 * HOUR)) == ["EB"]


def test_meets_one_message_meets_one_expectation_of_each_kind() -> None:
    """A feedback meets both the FEEDBACK and the ANY_REPLY expectation of its warning."""
    w = warning("EXCON-W-0001")
    f = feedback("TG-JAITF-LFW-F-0001", w["id"])
    both = [opened(Action.FEEDBACK, w["id"], id_="E1"),
            opened(Action.ANY_REPLY, w["id"], id_="E2")]
    assert met_ids(meets(both, sender=SEAT["unit"], message=f, at=2 * HOUR)) == ["E1", "E2"]


def test_meets_an_expectation_is_met_once() -> None:
    """Once met (and so no longer open), a second feedback on the same warning meets
    nothing, while the same message given again to the open list would: the caller closes
    what is met."""
    w = warning("EXCON-W-0001")
    e = opened(Action.FEEDBACK, w["id"])
    f1, f2 = feedback("TG-JAITF-LFW-F-0001", w["id"]), feedback("TG-JAITF-LFW-F-0002", w["id"])
    carried(w, f1, f2)
    still_open = [e]
    for met in meets(still_open, sender=SEAT["unit"], message=f1, at=2 * HOUR):
        still_open = [o for o in still_open if o.expectation.id != met.expectation_id]
    assert meets(still_open, sender=SEAT["unit"], message=f2, at=2.5 * HOUR) == ()
    assert met_ids(meets([e], sender=SEAT["unit"], message=f2, at=2.5 * HOUR)) == ["E1"]


def test_meets_an_answer_after_the_deadline_is_met_late() -> None:
    """A feedback past ``within`` still meets its expectation, marked late."""
    w = warning("EXCON-W-0001")
    f = feedback("TG-JAITF-LFW-F-0001", w["id"])
    e = opened(Action.FEEDBACK, w["id"], at=HOUR, within=2 * HOUR)
    on_time = meets([e], sender=SEAT["unit"], message=f, at=3 * HOUR)
    late = meets([e], sender=SEAT["unit"], message=f, at=3 * HOUR + 1)
    assert [m.late for m in on_time + late] == [False, True]
    assert e.deadline == 3 * HOUR


def test_meets_a_message_without_id_meets_nothing() -> None:
    """A message without a string id (not one the agent would hand out) meets nothing and
    raises nothing."""
    s = seizure("TG-JAITF-LFW-S-0001")
    del s["id"]
    assert meets([opened(Action.SEIZURE_REPORT, "EXCON-W-0001")], sender=SEAT["unit"],
                 message=s, at=2 * HOUR) == ()


def test_open_expectation_refuses_a_missing_message_id() -> None:
    """An expectation opened without its inject's message id is a usage error."""
    with pytest.raises(UsageError, match="without the id"):
        opened(Action.FEEDBACK, "")


def test_open_expectation_refuses_a_time_that_is_not_finite() -> None:
    """An expectation opened at NaN would never compare; it is refused."""
    with pytest.raises(UsageError, match="not a finite virtual time"):
        opened(Action.FEEDBACK, "EXCON-W-0001", at=float("nan"))


def test_met_refuses_a_negative_duration() -> None:
    """A RuleMet that took negative time is a usage error."""
    with pytest.raises(UsageError, match="before its inject"):
        RuleMet(expectation_id="E1", at=0.0, by="X", message_id="M01", how="h", took=-1.0,
            late=False)


# -- review: unanswered warnings and response times ---------------------------------------


def test_review_lists_warnings_left_unanswered() -> None:
    """A warning addressed to the seat and never followed by its feedback is listed as
    unanswered; the answered one is not."""
    w1, w2 = warning("EXCON-W-0001"), warning("EXCON-W-0002")
    f = feedback("TG-JAITF-LFW-F-0001", w1["id"])
    carried(w1, w2, f)
    out = review([(0.0, OCU["unit"], None, w1), (10.0, OCU["unit"], None, w2),
                  (20.0, SEAT["unit"], None, f)], [SEAT["unit"]])
    assert out[SEAT["unit"]].warnings == (w1["id"], w2["id"])
    assert out[SEAT["unit"]].unanswered_warnings == (w2["id"],)


def test_review_measures_warning_to_feedback() -> None:
    """The response time of a warning is from its delivery to the seat's first feedback on
    it; a second feedback does not change it."""
    w = warning("EXCON-W-0001")
    f1, f2 = feedback("TG-JAITF-LFW-F-0001", w["id"]), feedback("TG-JAITF-LFW-F-0002", w["id"])
    carried(w, f1, f2)
    out = review([(HOUR, OCU["unit"], None, w), (2.5 * HOUR, SEAT["unit"], None, f1),
                  (4 * HOUR, SEAT["unit"], None, f2)], [SEAT["unit"]])
    assert out[SEAT["unit"]].responses == (
        Response(kind="feedback", asked=w["id"], answer=f1["id"], asked_at=HOUR,
                 answered_at=2.5 * HOUR),)
    assert out[SEAT["unit"]].responses[0].took == 1.5 * HOUR


def test_review_measures_request_to_response() -> None:
    """A desk seat's response time is from the request addressed to it to its rfi response;
    a request left without one is listed unanswered."""
    q1 = request("HT-PNH-RFI-0005", DESK, sender=OTHER)
    q2 = request("HT-PNH-RFI-0006", DESK, sender=OTHER)
    a = response("INTERPOL-DESK-BB-R-0001", q1["id"])
    carried(q1, q2, a)
    out = review([(0.0, OTHER["unit"], None, q1), (5.0, OTHER["unit"], None, q2),
                  (600.0, DESK["unit"], None, a)], [DESK["unit"]])[DESK["unit"]]
    assert [(r.kind, r.asked, r.took) for r in out.responses] == [
        ("rfi_response", q1["id"], 600.0)]
    assert (out.requests, out.unanswered_requests) == ((q1["id"], q2["id"]), (q2["id"],))


def test_review_answer_from_another_unit_does_not_answer_for_the_seat() -> None:
    """Another unit's feedback on a warning sent to both leaves it unanswered by the seat."""
    w = warning("EXCON-W-0001", SEAT["unit"], OTHER["unit"])
    f = feedback("BE-CUSTOMS-BRU-F-0001", w["id"], sender=OTHER)
    carried(w, f)
    out = review([(0.0, OCU["unit"], None, w), (60.0, OTHER["unit"], None, f)],
                 [SEAT["unit"], OTHER["unit"]])
    assert out[SEAT["unit"]].unanswered_warnings == (w["id"],)
    assert out[OTHER["unit"]].unanswered_warnings == ()


def test_review_warning_addressed_to_the_seats_country_is_received() -> None:
    """A warning addressed to a country is received by the seats of that country, given
    the units' countries; not by a seat of another country."""
    w = warning("EXCON-W-0001", "TG")
    records = [(0.0, OCU["unit"], None, w)]
    out = review(records, [SEAT["unit"], OTHER["unit"]],
                 countries={SEAT["unit"]: "TG", OTHER["unit"]: "BE"})
    assert out[SEAT["unit"]].unanswered_warnings == (w["id"],)
    assert out[OTHER["unit"]].warnings == ()


def test_review_recipients_override_the_addressees() -> None:
    """When a record names its recipients (an inject's seats), they decide who received
    it, not the warning's addressees."""
    w = warning("EXCON-W-0001", OTHER["unit"])
    out = review([(0.0, OCU["unit"], (SEAT["unit"],), w)], [SEAT["unit"], OTHER["unit"]])
    assert out[SEAT["unit"]].warnings == (w["id"],)
    assert out[OTHER["unit"]].warnings == ()


def test_review_answered_warning_counts_as_received() -> None:
    """A seat that answers a warning addressed to its country, with no country mapping
    given, still gets it counted as received and its response time measured."""
    w = warning("EXCON-W-0001", "TG")
    f = feedback("TG-JAITF-LFW-F-0001", w["id"])
    out = review([(0.0, OCU["unit"], None, w), (30.0, SEAT["unit"], None, f)],
                 [SEAT["unit"]])[SEAT["unit"]]
    assert (out.warnings, out.unanswered_warnings) == ((w["id"],), ())
    assert [r.took for r in out.responses] == [30.0]


def test_review_a_seats_own_warning_is_not_received() -> None:
    """A warning the seat itself sent is not one it received, even when it names itself."""
    w = warning("TG-JAITF-LFW-W-0001", SEAT["unit"], sender=SEAT)
    out = review([(0.0, SEAT["unit"], None, w)], [SEAT["unit"]])
    assert out[SEAT["unit"]] == SeatReview(seat=SEAT["unit"])


def test_review_reads_records_by_virtual_time() -> None:
    """Records given out of order are read by virtual time."""
    w = warning("EXCON-W-0001")
    f = feedback("TG-JAITF-LFW-F-0001", w["id"])
    out = review([(50.0, SEAT["unit"], None, f), (20.0, OCU["unit"], None, w)],
                 [SEAT["unit"]])[SEAT["unit"]]
    assert [r.took for r in out.responses] == [30.0]


def test_review_feedback_of_the_wrong_type_answers_nothing() -> None:
    """An rfi response naming a warning is not its feedback."""
    w = warning("EXCON-W-0001")
    odd = response("TG-JAITF-LFW-R-0001", w["id"], sender=SEAT)
    out = review([(0.0, OCU["unit"], None, w), (30.0, SEAT["unit"], None, odd)],
                 [SEAT["unit"]])[SEAT["unit"]]
    assert (out.unanswered_warnings, out.responses) == ((w["id"],), ())


def test_review_seat_without_traffic_is_empty() -> None:
    """A seat that received and sent nothing has an empty review."""
    assert review([], ["TG-JAITF-LFW"]) == {"TG-JAITF-LFW": SeatReview(seat="TG-JAITF-LFW")}
