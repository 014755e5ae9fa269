"""What an exercise is made of: injects (the MSEL's rows), the expectations they raise and
their states. Plain frozen data shared by the engine, the MSEL import/export, the
expectation rules and the web app; no I/O, no clock.

Times are virtual seconds after the exercise's start (``D+0 H+0 M+0``); the engine's clock
maps them to the scenario's dates.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

#: The sender of an inject that no unit sends: the director speaks as "exercise control".
CONTROL = "EXCON"


class InjectState(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    SKIPPED = "skipped"  # its time passed while it could not go (the director chose to skip)
    CANCELLED = "cancelled"  # withdrawn by the director before it went


class Action(enum.Enum):
    """What a seat is expected to do after an inject; each but MANUAL is met by a rule over
    the decrypted traffic (client/exercise/expectations.py)."""

    FEEDBACK = "feedback"  # a feedback that refers to the inject's warning
    SEIZURE_REPORT = "seizure_report"  # a seizure report from the seat
    REQUEST = "request"  # a request for information from the seat (to ``target`` if set)
    RESPONSE = "response"  # an rfi response that refers to the inject's request
    ANY_REPLY = "any_reply"  # any message that refers to the inject's message
    MANUAL = "manual"  # the director validates it by hand


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """``seat`` should do ``action`` within ``within`` virtual seconds of the inject."""

    id: str
    inject: str  # the number of the inject that raises it
    seat: str  # the unit expected to act
    action: Action
    within: float
    target: str | None = None  # for REQUEST: the unit the request must go to
    score: int = 1
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Inject:
    """One row of the MSEL: at ``at`` virtual seconds, ``sender`` sends ``message`` (a
    message as the schemas define it, envelope filled in when it is sent) to ``to``."""

    number: str  # as the director numbers it: "1", "2", "2a"
    at: float
    sender: str  # a unit id, or CONTROL
    to: tuple[str, ...]  # intended seats or units; empty: the whole operation
    message: dict[str, Any]
    expected_action: str = ""  # the director's words, for people
    notes: str = ""  # evaluator notes
    expectations: tuple[Expectation, ...] = field(default=())


class Status(enum.Enum):
    """Where an exercise is: READY (not started) -> RUNNING <-> PAUSED -> ENDED; reset goes
    back to READY from any of them."""

    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    ENDED = "ended"


class ExpectationState(enum.Enum):
    PENDING = "pending"  # its inject has not gone yet
    OPEN = "open"  # its inject went; the seat has until the deadline
    MET = "met"
    MISSED = "missed"  # the deadline passed, or the exercise ended, before it was met
    VOID = "void"  # its inject was cancelled or skipped, or never went before the end


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectRecord:
    """An inject as a run has it: its state and, once delivered, the virtual time it went."""

    inject: Inject
    state: InjectState = InjectState.PENDING
    delivered_at: float | None = None
    adhoc: bool = False  # written during play; a reset removes it

    def to_json(self) -> dict[str, Any]:
        i = self.inject
        return {"number": i.number, "at": i.at, "sender": i.sender, "to": list(i.to),
                "message": i.message, "expected_action": i.expected_action, "notes": i.notes,
                "expectations": [e.id for e in i.expectations], "state": self.state.value,
                "delivered_at": self.delivered_at, "adhoc": self.adhoc}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectationRecord:
    """An expectation as a run has it: open from its inject's delivery until ``deadline``;
    once met (or met late: missed), when (``met_at``, virtual), by whom and how."""

    expectation: Expectation
    state: ExpectationState = ExpectationState.PENDING
    opened_at: float | None = None
    deadline: float | None = None
    met_at: float | None = None
    by: str = ""  # the seat whose message met it, or the director who validated it
    how: str = ""  # the rule, or the director's words

    @property
    def taken(self) -> float | None:
        """Virtual seconds from its inject's delivery to the moment it was met."""
        if self.met_at is None or self.opened_at is None:
            return None
        return self.met_at - self.opened_at

    @property
    def late(self) -> bool:
        """Missed, but met after its deadline (``met_at``)."""
        return self.state is ExpectationState.MISSED and self.met_at is not None

    @property
    def points(self) -> int:
        return self.expectation.score if self.state is ExpectationState.MET else 0

    def to_json(self) -> dict[str, Any]:
        e = self.expectation
        return {"id": e.id, "inject": e.inject, "seat": e.seat, "action": e.action.value,
                "within": e.within, "target": e.target, "score": e.score,
                "description": e.description, "state": self.state.value,
                "opened_at": self.opened_at, "deadline": self.deadline,
                "met_at": self.met_at, "by": self.by, "how": self.how, "taken": self.taken,
                "late": self.late, "points": self.points}
