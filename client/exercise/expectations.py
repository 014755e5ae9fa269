"""The expectation rules: which open expectations a decrypted message meets, and the
after-action review's answers per seat (warnings left unanswered, response times).

Pure: no clock and no I/O; virtual times come in with the messages. The messages are the
ones a ``SecureAgent`` hands out, so they have passed the catalog's checks; the rules still
read them with ``.get`` so that an odd message meets nothing rather than raising.

Choice: a message meets at most one expectation of each action kind, the earliest opened
(ties: the caller's order). A seizure report or a request names no inject, so nothing says
which of two open ones it answers; one report clearing every expected report would let
one act score many times. First come, first served is what a director predicts from the
board, and a director can still validate the other by hand. Expectations that a reference
ties to one inject (FEEDBACK, RESPONSE, ANY_REPLY) are decided by the reference anyway.
A message may meet expectations of different kinds at once (a feedback meets FEEDBACK and
ANY_REPLY on the same warning).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, assert_never

from client.exercise.model import Action, Expectation
from client.messages.checks import REFERENCES
from protocol.errors import UsageError


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenExpectation:
    """``expectation``, raised when its inject was delivered at virtual time ``opened_at``;
    ``message_id`` is the envelope ``id`` of the message the inject sent, the id a reply
    names in ``refers_to`` (or another reference field, see ``REFERENCES``)."""

    expectation: Expectation
    opened_at: float
    message_id: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.opened_at):
            raise UsageError(f"expectation {self.expectation.id!r} opened at "
                             f"{self.opened_at!r}, not a finite virtual time")
        if not self.message_id:
            raise UsageError(f"expectation {self.expectation.id!r} opened without the "
                             f"id of its inject's message")

    @property
    def deadline(self) -> float:
        """The virtual time by which the seat should have acted."""
        return self.opened_at + self.expectation.within


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleMet:
    """Event for the exercise engine: expectation ``expectation_id`` was met at virtual time
    ``at`` by unit ``by``'s message ``message_id``, ``took`` seconds after its inject;
    ``late`` when that is more than its ``within``. ``how`` says which rule, for people."""

    expectation_id: str
    at: float
    by: str
    message_id: str
    how: str
    took: float
    late: bool

    def __post_init__(self) -> None:
        if self.took < 0:
            raise UsageError(f"expectation {self.expectation_id!r} met {self.took} s "
                             f"before its inject")


def _at(message: Mapping[str, Any], pointer: str) -> Any:
    node: Any = message
    for part in pointer.split("/")[1:]:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def reference_to(message: Mapping[str, Any], message_id: str) -> str | None:
    """The JSON pointer of the reference in ``message`` that names ``message_id``
    (``/refers_to``, ``/seizure_ref``, ``/event/detection/warning_ref`` ...), or None."""
    kind = message.get("type")
    for t, pointer in REFERENCES:
        if t == kind and _at(message, pointer) == message_id:
            return pointer
    return None


def _addressees(message: Mapping[str, Any]) -> list[str]:
    """The units a request for information is addressed to (its ``to`` parties)."""
    to = message.get("to")
    if not isinstance(to, list):
        return []
    return [p["unit"] for p in to if isinstance(p, Mapping) and isinstance(p.get("unit"), str)]


def _how(opened: OpenExpectation, message: Mapping[str, Any], message_id: str) -> str | None:
    """How ``message`` meets ``opened``'s expectation by its action's rule, or None."""
    e = opened.expectation
    kind = message.get("type")
    match e.action:
        case Action.FEEDBACK:
            if kind == "feedback" and message.get("refers_to") == opened.message_id:
                return f"feedback {message_id} answers warning {opened.message_id}"
        case Action.SEIZURE_REPORT:
            # 'withdrawn: the report is cancelled and must not be counted'
            # (seizure-report.schema.json, status); an amendment is a report sent
            if kind == "seizure_report" and message.get("status") != "withdrawn":
                return f"seizure report {message_id} sent after inject {e.inject}"
        case Action.REQUEST:
            if kind == "request_for_information" and (
                    e.target is None or e.target in _addressees(message)):
                to = f" to {e.target}" if e.target is not None else ""
                return f"request for information {message_id}{to}"
        case Action.RESPONSE:
            if kind == "rfi_response" and message.get("refers_to") == opened.message_id:
                return f"rfi response {message_id} answers request {opened.message_id}"
        case Action.ANY_REPLY:
            pointer = reference_to(message, opened.message_id)
            if pointer is not None:
                return f"{kind} {message_id} refers to {opened.message_id} at {pointer}"
        case Action.MANUAL:
            return None  # no rule can tell: the director validates it
        case _:
            assert_never(e.action)
    return None


def meets(open_expectations: Iterable[OpenExpectation], *, sender: str,
          message: Mapping[str, Any], at: float) -> tuple[RuleMet, ...]:
    """The expectations that ``message``, received from unit ``sender`` (the authenticated
    sender, not the envelope's claim) at virtual time ``at``, meets: at most one of each
    action kind, the earliest opened (see the module docstring). A message received before
    an expectation was opened never meets it. Raises nothing for any message."""
    message_id = message.get("id")
    if not isinstance(message_id, str):
        return ()
    chosen: dict[Action, RuleMet] = {}
    # sorted() is stable: expectations opened at the same time keep the caller's order
    for opened in sorted(open_expectations, key=lambda o: o.opened_at):
        e = opened.expectation
        if e.seat != sender or at < opened.opened_at or e.action in chosen:
            continue
        how = _how(opened, message, message_id)
        if how is not None:
            took = at - opened.opened_at
            chosen[e.action] = RuleMet(expectation_id=e.id, at=at, by=sender,
                                   message_id=message_id, how=how, took=took,
                                   late=took > e.within)
    return tuple(chosen.values())


class TrafficRecord(NamedTuple):
    """One message of the exercise's traffic, for the review. ``recipients`` are the units
    it was delivered to, or None when it went to the operation and the message itself
    names whom it is for (a warning's ``addressees``, a request's ``to``)."""

    at: float
    sender: str
    recipients: Sequence[str] | None
    message: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """The seat answered ``asked`` (a warning or a request it received at ``asked_at``)
    with ``answer`` (a feedback or an rfi response) at ``answered_at``."""

    kind: str  # the answer's type: "feedback" or "rfi_response"
    asked: str
    answer: str
    asked_at: float
    answered_at: float

    @property
    def took(self) -> float:
        return self.answered_at - self.asked_at


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatReview:
    """What one seat received and answered: message ids in the order received."""

    seat: str
    warnings: tuple[str, ...] = ()
    unanswered_warnings: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()
    unanswered_requests: tuple[str, ...] = ()
    responses: tuple[Response, ...] = ()


#: what a seat is asked -> the type of message that answers it (by ``refers_to``)
_ANSWERED_BY = {"warning": "feedback", "request_for_information": "rfi_response"}


def _is_for(record: TrafficRecord, seat: str, country: str | None) -> bool:
    if record.recipients is not None:
        return seat in record.recipients
    m = record.message
    if m.get("type") == "request_for_information":
        return seat in _addressees(m)
    addressees = m.get("addressees")
    if not isinstance(addressees, list):
        return False
    # an addressee is a unit id or a country code: every unit of that country
    return seat in addressees or (country is not None and country in addressees)


def _seat_review(records: Sequence[TrafficRecord], seat: str, country: str | None) -> SeatReview:
    asked: dict[str, TrafficRecord] = {}  # warnings and requests by id: their first delivery
    received: set[str] = set()
    answers: dict[str, Response] = {}  # asked id -> its first answer from the seat
    for r in records:
        kind, mid = r.message.get("type"), r.message.get("id")
        if not isinstance(kind, str) or not isinstance(mid, str):
            continue
        if kind in _ANSWERED_BY:
            if mid not in asked and r.sender != seat:  # what a seat sends, it did not receive
                asked[mid] = r
                if _is_for(r, seat, country):
                    received.add(mid)
            continue
        ref = r.message.get("refers_to")
        if (r.sender != seat or not isinstance(ref, str) or ref not in asked
                or ref in answers or _ANSWERED_BY[asked[ref].message["type"]] != kind):
            continue
        answers[ref] = Response(kind=kind, asked=ref, answer=mid, asked_at=asked[ref].at,
                                answered_at=r.at)
        received.add(ref)  # it answered, so it read it, whatever the addressees say

    def received_of(kind: str) -> tuple[str, ...]:
        return tuple(i for i in asked if i in received and asked[i].message["type"] == kind)

    warnings, requests = received_of("warning"), received_of("request_for_information")
    return SeatReview(
        seat=seat,
        warnings=warnings,
        unanswered_warnings=tuple(i for i in warnings if i not in answers),
        requests=requests,
        unanswered_requests=tuple(i for i in requests if i not in answers),
        responses=tuple(answers[i] for i in asked if i in answers),
    )


def review(records: Iterable[tuple[float, str, Sequence[str] | None, Mapping[str, Any]]],
           seats: Iterable[str], *,
           countries: Mapping[str, str] | None = None) -> dict[str, SeatReview]:
    """Per seat: the warnings and requests for information it received, those it left
    unanswered (no feedback, no rfi response from it), and the time each first answer took.
    ``countries`` maps a unit to its country, for warnings addressed to a country. A warning
    or request the seat answered counts as received, whatever its addressees. Records may
    come in any order; they are read by virtual time, ties in the given order. Raises
    nothing for any message."""
    ordered = sorted((TrafficRecord(*r) for r in records), key=lambda r: r.at)
    countries = countries or {}
    return {seat: _seat_review(ordered, seat, countries.get(seat)) for seat in seats}
