"""Checks beyond what JSON Schema can say: rules within one message, and references
between the messages of one operation (a feedback must follow up a warning that the
channel carried).

Pure. ``check`` is what a sender runs before encrypting and a receiver after decrypting;
each problem names its JSON path, like the schema's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from client.messages.catalog import Catalog, Problem
from client.messages.nominal import nominal_paths
from protocol.errors import SchemaError

#: (message type, JSON pointer of a reference) -> the message types it may name
REFERENCES: dict[tuple[str, str], frozenset[str]] = {
    ("feedback", "/refers_to"): frozenset({"warning"}),
    ("feedback", "/seizure_ref"): frozenset({"seizure_report"}),
    ("rfi_response", "/refers_to"): frozenset({"request_for_information"}),
    ("trace_response", "/refers_to"): frozenset({"trace_request"}),
    ("hit_notification", "/refers_to"): frozenset({"trace_request",
                                                   "request_for_information"}),
    ("trace_request", "/seizure_ref"): frozenset({"seizure_report"}),
    ("controlled_delivery", "/refers_to"): frozenset({"controlled_delivery", "warning",
                                                      "request_for_information"}),
    ("seizure_report", "/event/detection/warning_ref"): frozenset({"warning"}),
    ("inspection_report", "/refers_to"): frozenset({"warning"}),
    ("inspection_report", "/seizure_ref"): frozenset({"seizure_report"}),
}


def _get(message: Any, pointer: str) -> Any:
    node = message
    for part in pointer.split("/")[1:]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _nominal_marking(catalog: Catalog, message: dict[str, Any]) -> list[Problem]:
    if message["marking"]["nominal"] is True:
        return []
    if catalog.schemas[(message["type"], message["version"])].nominal_free.is_valid(message):
        return []  # the fast path: a compiled check, no annotations collected
    paths = nominal_paths(catalog, message)
    if paths:
        return [Problem("/marking/nominal", "rule",
                        f"the message holds nominal (personal) data at {', '.join(paths[:3])}"
                        f"{' ...' if len(paths) > 3 else ''} but is marked nominal: false")]
    return []


def _hit_notifies_recording_ncb(catalog: Catalog, message: dict[str, Any]) -> list[Problem]:
    country = _get(message, "/record/recording_country")
    ncbs = [r.get("country") for r in message.get("recipients", []) if r.get("kind") == "ncb"]
    if country is not None and country not in ncbs:
        return [Problem("/recipients", "rule",
                        f"a hit on a record of {country} must notify the NCB of {country}; "
                        f"notified NCBs: {', '.join(map(str, ncbs)) or 'none'}")]
    return []


def _not_self_reference(catalog: Catalog, message: dict[str, Any]) -> list[Problem]:
    if message.get("refers_to") is not None and message.get("refers_to") == message["id"]:
        return [Problem("/refers_to", "rule", f"message {message['id']!r} refers to itself")]
    return []


Rule = Callable[[Catalog, dict[str, Any]], list[Problem]]
#: rules for every message, then per type
RULES: dict[str | None, list[Rule]] = {
    None: [_nominal_marking, _not_self_reference],
    "hit_notification": [_hit_notifies_recording_ncb],
}


def rule_problems(catalog: Catalog, message: dict[str, Any]) -> list[Problem]:
    """Problems of a schema-valid message with the rules beyond its schema."""
    out: list[Problem] = []
    for rule in RULES[None] + RULES.get(message["type"], []):
        out.extend(rule(catalog, message))
    return out


@dataclass(slots=True)
class Seen:
    type: str
    seq: int | None
    revision: int | None


@dataclass(slots=True)
class Ledger:
    """The messages one operation's channel has carried, by id, so that references can
    be resolved and an id cannot be reused. ``complete`` is False for a member that
    joined late: it has not seen everything, so an unknown reference is not an error
    for it."""

    complete: bool = True
    seen: dict[str, Seen] = field(default_factory=dict)

    def problems(self, message: dict[str, Any]) -> list[Problem]:
        out = []
        kind = message["type"]
        before = self.seen.get(message["id"])
        # an entry without a seq was learnt out of band (handed over): the same message
        # arriving through the channel is not a reuse
        if before is not None and before.seq is not None and not (
                kind == before.type == "seizure_report"
                and (message.get("revision") or 1) > (before.revision or 1)):
            where = f" (log seq {before.seq})" if before.seq else " (not yet stored)"
            out.append(Problem("/id", "unique", f"message id {message['id']!r} is already "
                               f"used by a {before.type}{where}; a seizure report is "
                               f"amended with a higher revision"))
        for (t, pointer), targets in REFERENCES.items():
            if t != kind:
                continue
            ref = _get(message, pointer)
            if ref is None:
                continue
            target = self.seen.get(ref)
            if target is None:
                if self.complete:
                    out.append(Problem(pointer, "reference",
                                       f"refers to {ref!r}, which this operation has not "
                                       f"carried (expected a {' or '.join(sorted(targets))})"))
            elif target.type not in targets:
                out.append(Problem(pointer, "reference",
                                   f"refers to {ref!r}, a {target.type}; expected a "
                                   f"{' or '.join(sorted(targets))}"))
        return out

    def record(self, message: dict[str, Any], seq: int | None = None) -> None:
        # interned: in a replay every agent of the process records the same ids and
        # types, each from its own decoded copy (a third of a ledger's memory)
        self.seen[sys.intern(message["id"])] = Seen(sys.intern(message["type"]), seq,
                                                    message.get("revision"))


def problems(catalog: Catalog, message: Any, ledger: Ledger | None = None) -> list[Problem]:
    """Every problem with ``message``: its schema first; if that passes, the rules, and
    the references against ``ledger`` when one is given."""
    found = catalog.problems(message)
    if found:
        return found
    found = rule_problems(catalog, message)
    if ledger is not None:
        found += ledger.problems(message)
    return found


def check(catalog: Catalog, message: Any, ledger: Ledger | None = None) -> None:
    """Raise SchemaError listing every problem of ``message`` (see ``problems``)."""
    found = problems(catalog, message, ledger)
    if found:
        kind = message.get("type") if isinstance(message, dict) else None
        label = f"{kind} message" if isinstance(kind, str) else "message"
        raise SchemaError(f"invalid {label}: " + "; ".join(map(str, found)), problems=found)
