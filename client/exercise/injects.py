"""Inject rows checked against an exercise: each field of each inject (number, time, sender,
recipients, message type and content, expectations) against the scenario's participants,
the exercise's start, end and seats, and the message schemas, every problem reported at its
JSON pointer inside the row. Shared by every MSEL format and the exercise file's inline
injects. Pure.

A row is an object: ``number time sender to type content expected_action notes`` and its
expectations, either flat (``seat action within target score description``, one) or as a
list under ``expectations``. ``content`` is the message without its envelope: the type comes
from ``type``; id, time, sender and operation are set when the inject is sent.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from client.exercise.model import CONTROL, Action, Expectation, Inject
from client.exercise.times import format_offset, parse_offset, parse_time
from client.messages import default_catalog
from client.messages.catalog import Catalog
from client.messages.checks import problems as message_problems
from client.replay.scenario import Participant, Scenario, envelope

#: The fields of one expectation, flat in a row.
EXPECTATION_FIELDS = ("seat", "action", "within", "target", "score", "description")
#: Envelope fields the engine fills when the inject is sent; a row may not set them.
FILLED_WHEN_SENT = ("id", "sent_at", "sender", "operation")

_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


@dataclass(frozen=True, slots=True)
class Setting:
    """What injects are checked against: the scenario (participants, message schemas'
    envelope), the exercise's start (relative times count from it, absolute ones are
    converted against it), its end in virtual seconds, and the seats people hold (None:
    not known yet, seats are then not checked)."""

    scenario: Scenario
    start: dt.datetime
    end: float | None = None
    seats: frozenset[str] | None = None
    catalog: Catalog = field(default_factory=default_catalog)

    def party(self, unit: str) -> Participant:
        """The participant ``unit``, or exercise control as a party of the OCU's country."""
        if unit == CONTROL:
            ocu = self.scenario.participants[self.scenario.ocu]
            return Participant(CONTROL, "Exercise control (EXCON)", ocu.country, "other",
                               "control")
        return self.scenario.participants[unit]


#: (inject's index, JSON pointer inside the inject, message): where a source reports.
Report = Callable[[int, str, str], None]


def build(records: Sequence[Any], setting: Setting, report: Report) -> list[Inject]:
    """Injects from rows given as objects (one per inject, expectations nested under
    ``expectations`` or flat for a single one). Every problem goes to ``report``; the
    injects returned are the ones that had none, so a caller raises when it saw any."""
    injects: list[Inject] = []
    seen: set[str] = set()
    for i, record in enumerate(records):
        row = _Row(i, record, setting, report)
        inject = row.inject()
        if inject is None:
            continue
        if inject.number in seen:
            report(i, "/number", f"inject number {inject.number!r} is used twice")
            continue
        seen.add(inject.number)
        injects.append(inject)
    return injects


class _Row:
    """Checks one inject's fields, reporting each problem where it is."""

    def __init__(self, index: int, record: Any, setting: Setting, report: Report) -> None:
        self.index, self.record, self.setting, self.report = index, record, setting, report
        self.failed = False

    def add(self, pointer: str, message: str) -> None:
        self.failed = True
        self.report(self.index, pointer, message)

    def text(self, pointer: str, value: Any, *, required: bool = False) -> str | None:
        if isinstance(value, int | float) and not isinstance(value, bool) and float(
                value).is_integer():
            value = str(int(value))
        if value is None or isinstance(value, str):
            text = (value or "").strip()
            if required and not text:
                self.add(pointer, "missing: this field is required")
                return None
            return text
        self.add(pointer, f"{value!r} is not text")
        return None

    def unit(self, pointer: str, value: Any, *, control: bool = False) -> str | None:
        unit = self.text(pointer, value, required=True)
        if unit is None or unit in self.setting.scenario.participants or (
                control and unit == CONTROL):
            return unit
        also = f" (or {CONTROL}, exercise control)" if control else ""
        self.add(pointer, f"{unit!r} is not a participant of {self.setting.scenario.code}"
                 f"{also}")
        return None

    def inject(self) -> Inject | None:
        record, setting = self.record, self.setting
        if not isinstance(record, dict):
            self.add("", "an inject is an object of fields (number, time, sender ...)")
            return None
        number = self.text("/number", record.get("number"), required=True)
        if number and not _NUMBER.match(number):
            self.add("/number", f"{number!r} is not an inject number: letters, digits, '.', "
                     "'_' or '-', up to 32")
        at = self.time("/time", record.get("time"))
        sender = self.unit("/sender", record.get("sender"), control=True)
        if sender and setting.seats is not None and sender in setting.seats:
            self.add("/sender", f"{sender!r} is a seat held by a person; injects come from "
                     f"exercise control ({CONTROL}) or from units the agents play")
        to = self.recipients(record.get("to"))
        kind = self.kind(record.get("type"))
        message = self.message(record.get("content"), kind)
        expected_action = self.text("/expected_action", record.get("expected_action"))
        notes = self.text("/notes", record.get("notes"))
        expectations = self.expectations(number or "", kind)
        if message is not None:
            # checked even when the row has other problems, so that all come at once
            self.validate(message, sender or CONTROL,
                          number if number and _NUMBER.match(number) else "0", at or 0.0)
        if self.failed or not number or at is None or not sender or message is None:
            return None
        return Inject(number=number, at=at, sender=sender, to=to, message=message,
                      expected_action=expected_action or "", notes=notes or "",
                      expectations=expectations)

    def time(self, pointer: str, value: Any) -> float | None:
        if value is None or value == "":
            self.add(pointer, "missing: this field is required")
            return None
        try:
            at = parse_time(value, self.setting.start)
        except ValueError as exc:
            self.add(pointer, str(exc))
            return None
        start, end = self.setting.start, self.setting.end
        if at < 0:
            self.add(pointer, f"{value} is before the exercise's start "
                     f"({start.strftime('%Y-%m-%dT%H:%M:%SZ')})")
        elif end is not None and at > end:
            shown = value if value == format_offset(at) else f"{value} ({format_offset(at)})"
            self.add(pointer, f"{shown} is after the exercise's end ({format_offset(end)})")
        return at

    def recipients(self, value: Any) -> tuple[str, ...]:
        if value is None or value == "":
            return ()
        if isinstance(value, str):
            items: list[Any] = [u for u in re.split(r"[;,]", value) if u.strip()]
            pointers = ["/to"] * len(items)
        elif isinstance(value, list):
            items, pointers = value, [f"/to/{k}" for k in range(len(value))]
        else:
            self.add("/to", f"{value!r} is not a list of units")
            return ()
        units = [self.unit(p, v) for p, v in zip(pointers, items, strict=True)]
        return tuple(dict.fromkeys(u for u in units if u))

    def kind(self, value: Any) -> str | None:
        text = self.text("/type", value, required=True)
        if not text:
            return None
        kind = text.lower().replace("-", "_")
        if kind not in self.setting.catalog.types:
            self.add("/type", f"{text!r} is not a message type; expected one of "
                     f"{', '.join(self.setting.catalog.types)}")
            return None
        return kind

    def message(self, value: Any, kind: str | None) -> dict[str, Any] | None:
        if isinstance(value, str):
            value = value.strip()
        if isinstance(value, str) and value:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                self.add("/content", f"not valid JSON: line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}")
                return None
        if value is None or value == "":
            self.add("/content", "missing: the message, as a JSON object")
            return None
        if not isinstance(value, dict):
            self.add("/content", "the message is a JSON object of its fields, not "
                     f"{type(value).__name__}")
            return None
        for key in FILLED_WHEN_SENT:
            if key in value:
                self.add(f"/content/{key}", f"{key!r} is filled in when the inject is sent; "
                         "leave it out")
        if kind and value.get("type", kind) != kind:
            self.add("/content/type", f"{value['type']!r} differs from the row's type "
                     f"{kind!r}")
        if kind is None or set(FILLED_WHEN_SENT) & set(value):
            return None
        return {"type": kind, **{k: v for k, v in value.items() if k != "type"}}

    def validate(self, message: dict[str, Any], sender: str, number: str, at: float) -> None:
        """The message's problems once its envelope is filled in, as a replay step's are
        (client/replay/scenario.py), each at its JSON path inside ``content``."""
        setting = self.setting
        offset = (setting.start - setting.scenario.t0).total_seconds() + at
        full = envelope(setting.scenario.code, setting.party(sender), f"INJ-{number}".upper(),
                        offset, copy.deepcopy(message), start_of=setting.scenario.data)
        for p in message_problems(setting.catalog, full):
            if p.path == "/type":
                self.add("/type", p.message)
            else:
                self.add(f"/content{p.path}", p.message)

    def expectations(self, number: str, kind: str | None) -> tuple[Expectation, ...]:
        record = self.record
        flat = {k: record[k] for k in EXPECTATION_FIELDS if record.get(k) not in (None, "")}
        nested = record.get("expectations")
        if nested is not None and flat:
            self.add("/expectations", "give expectations either in the fields seat, action, "
                     "within ... (one) or under expectations (several), not both")
            return ()
        if nested is None:
            items = [("", flat)] if flat else []
        elif isinstance(nested, list):
            items = [(f"/expectations/{k}", e) for k, e in enumerate(nested)]
        else:
            self.add("/expectations", "expectations is a list")
            return ()
        out = [self.expectation(base, e, f"{number}.{k + 1}", number, kind)
               for k, (base, e) in enumerate(items)]
        return tuple(e for e in out if e is not None)

    def expectation(self, base: str, e: Any, id_: str, number: str,
                    kind: str | None) -> Expectation | None:
        if not isinstance(e, dict):
            self.add(base, "an expectation is an object (seat, action, within ...)")
            return None
        seats = self.setting.seats
        seat = self.unit(f"{base}/seat", e.get("seat"))
        if seat and seats is not None and seat not in seats:
            self.add(f"{base}/seat", f"{seat!r} is not a seat of this exercise (seats: "
                     f"{', '.join(sorted(seats))}); expectations are on what people do")
        action = self.action(f"{base}/action", e.get("action"), kind)
        within = self.within(f"{base}/within", e.get("within"))
        target = None
        if e.get("target") not in (None, ""):
            target = self.unit(f"{base}/target", e.get("target"))
            if action is not None and action is not Action.REQUEST:
                self.add(f"{base}/target", "a target is the unit a request must go to; only "
                         f"action {Action.REQUEST.value} takes one")
        score = self.score(f"{base}/score", e.get("score"))
        description = self.text(f"{base}/description", e.get("description"))
        if seat is None or action is None or within is None or score is None or (
                description is None):
            return None
        return Expectation(id=id_, inject=number, seat=seat, action=action, within=within,
                           target=target, score=score, description=description)

    def action(self, pointer: str, value: Any, kind: str | None) -> Action | None:
        text = self.text(pointer, value, required=True)
        if not text:
            return None
        try:
            action = Action(text.lower().replace("-", "_"))
        except ValueError:
            self.add(pointer, f"{text!r} is not an action; expected one of "
                     f"{', '.join(a.value for a in Action)}")
            return None
        needs = {Action.FEEDBACK: "warning", Action.RESPONSE: "request_for_information"}
        if action in needs and kind is not None and kind != needs[action]:
            self.add(pointer, f"a {action.value} answers a {needs[action]}, but this inject "
                     f"is a {kind}: the rule could never be met")
        return action

    def within(self, pointer: str, value: Any) -> float | None:
        text = self.text(pointer, value, required=True)
        if not text:
            return None
        try:
            seconds = parse_offset(text)
        except ValueError as exc:
            self.add(pointer, str(exc))
            return None
        if seconds <= 0:
            self.add(pointer, f"{text!r} leaves no time; give a duration such as 'H+2'")
            return None
        return seconds

    def score(self, pointer: str, value: Any) -> int | None:
        if value is None or value == "":
            return 1
        text = self.text(pointer, value)
        if text is None:
            return None
        if not text.isdigit():
            self.add(pointer, f"{value!r} is not a whole number of points (0 or more)")
            return None
        return int(text)
