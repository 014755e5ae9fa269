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
