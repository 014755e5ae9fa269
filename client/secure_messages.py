"""MessageLedgers: the schema messages of a SecureAgent's operations, and their checks.

Per operation, a Ledger of the messages its channel carried as far as the agent knows
(what it sent and read): what a new message may refer to, and which ids are taken. A
message is checked against it before it is sent and again after it is decrypted
(schema, rules, references, and that its operation and sender are the ones it travels
in). A send takes its message's id before anything is encrypted and gives it back if
nothing of it was stored (``TakenId``).

Sans-I/O: no connection, no event loop; ``client.secure`` sends and reads. It must not
decide anything about keys or epochs: whether the unit joined late is asked of the
channel (``joined_epoch``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from client.messages import content as message_content
from client.messages.catalog import Catalog, Problem
from client.messages.checks import Ledger, Seen, problems
from protocol.errors import SchemaError


@dataclass(slots=True)
class TakenId:
    """A message id a send took (seq 0: not yet stored), until the hub answers."""

    ledger: Ledger
    mid: str
    taken: Seen
    before: Seen | None  # what held the id before, if anything (an out-of-band entry)

    def give_back(self) -> None:
        """Nothing of the message was stored: free the id, unless something else has
        taken it since."""
        if self.ledger.seen.get(self.mid) is self.taken:
            if self.before is None:
                del self.ledger.seen[self.mid]
            else:
                self.ledger.seen[self.mid] = self.before

    def settle(self, seq: int | None) -> None:
        """The hub answered: the message is stored at ``seq`` (the id is taken for good),
        or it is not (None: the id is free again)."""
        if seq is None:
            self.give_back()
        else:
            self.taken.seq = seq


class MessageLedgers:
    def __init__(self, unit: str, catalog: Catalog, *, reads: frozenset[str] | None,
                 every_epoch: Callable[[str], bool]) -> None:
        """``reads``: the senders whose messages the agent reads (None: everyone's);
        ``every_epoch(op)``: the unit has held the keys of every epoch of ``op`` (it
        joined at epoch 0 and was never removed)."""
        self.unit = unit
        self.catalog = catalog
        self.reads = reads
        self.every_epoch = every_epoch
        self.ledgers: dict[str, Ledger] = {}

    def ledger(self, op: str) -> Ledger:
        """``op``'s ledger. It is complete (a reference to a message it does not hold is
        an error) only for a unit that held every epoch and reads every sender. That is
        decided again on every call, not once: a unit that has not joined yet cannot
        tell, and may have used its ledger already (a send refused for want of keys)."""
        ledger = self.ledgers.get(op)
        if ledger is None:
            ledger = self.ledgers[op] = Ledger()
        ledger.complete = self.reads is None and self.every_epoch(op)
        return ledger

    def check_to_send(self, op: str, message: Any) -> None:
        """Raises SchemaError listing every problem of ``message`` as this unit's in
        ``op``: schema, rules, references, its operation and sender."""
        found = _sender_problems(op, self.unit, message)
        found += problems(self.catalog, message, self.ledger(op))
        if found:
            kind = message.get("type") if isinstance(message, dict) else None
            raise SchemaError(f"{self.unit} will not send this {kind or 'message'}: "
                              + "; ".join(map(str, found)), problems=found)

    def take(self, op: str, message: dict[str, Any]) -> TakenId:
        """Take the id of a checked message that is about to be sent, so that sends
        behind it may refer to it and may not reuse it."""
        ledger, mid = self.ledger(op), message["id"]
        before = ledger.seen.get(mid)
        ledger.record(message, 0)  # seq 0: taken, not yet stored
        return TakenId(ledger, mid, ledger.seen[mid], before)

    def check_received(self, op: str, seq: int, sender: str,
                       content: bytes) -> dict[str, Any]:
        """The decrypted message at ``seq``, recorded in the ledger. Raises SchemaError
        (invalid_message) if it is not one, or fails a check as ``sender``'s in ``op``."""
        body = message_content.decode(content)
        found = _sender_problems(op, sender, body)
        found += problems(self.catalog, body, self.ledger(op))
        if found:
            raise SchemaError("invalid message: " + "; ".join(map(str, found)),
                              problems=found)
        self.ledger(op).record(body, seq)
        return body  # type: ignore[no-any-return]


def _sender_problems(op: str, sender: str, message: Any) -> list[Problem]:
    if not isinstance(message, dict):
        return []
    out = []
    if "operation" in message and message["operation"] != op:
        out.append(Problem("/operation", "rule", f"{message['operation']!r} is not the "
                           f"operation it is sent in ({op!r})"))
    unit = message.get("sender", {}).get("unit") if isinstance(
        message.get("sender"), dict) else None
    if unit is not None and unit != sender:
        out.append(Problem("/sender/unit", "rule", f"{unit!r} is not the member who "
                           f"signed the message ({sender!r})"))
    return out
