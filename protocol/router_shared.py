"""The Router's inputs when its store is shared with other hub nodes (JetStream,
hub/store/jetstream.py): what any node stored reaches this node through ``observed`` and
the ``*_elsewhere`` methods, in log order, and a request about something this node has not
heard of yet waits for it (``catch_up_wait``) instead of failing. A mixin of Router
(protocol/router.py), which owns the state named below; sans-I/O like it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from protocol import frames as f
from protocol.credentials import SignedCredential, check_replaces
from protocol.errors import AuthError, Code, RequestError
from protocol.fanout import Fanout
from protocol.router_io import Peer, RouterConfig
from protocol.session import Event
from protocol.statements import OperationState, Statement, fold, from_log
from protocol.store import DirectedEntry, LogEntry

log = logging.getLogger("opshub.router")


class SharedStoreInputs:
    # the Router's, declared here for the type checker
    config: RouterConfig
    now: Callable[[], float]
    fanout: Fanout
    ops: dict[str, OperationState]
    directory: dict[str, SignedCredential]
    cursors: dict[tuple[str, str], int]
    by_unit: dict[str, set[Peer]]
    #: each operation's state as its log has it (``ops`` may be ahead by a statement of
    #: this node's in flight)
    _logged: dict[str, OperationState]
    #: requests about an operation waiting for its feed, by operation: (deadline, peer, event)
    _waiting: dict[str, list[tuple[float, Peer, Event]]]
    #: the deadline of the request being handled again (None: a new request)
    _retry_until: float | None

    def handle(self, peer: Peer, event: Event) -> None:
        raise NotImplementedError  # the Router's

    def _wait(self, op: str, peer: Peer, event: Event, exc: RequestError) -> bool:
        """Shared store: keep a request about an operation (or a membership) this node has
        not heard of yet, for the store's feed to bring the statement; False: refuse now."""
        if not self.config.shared or exc.code not in (Code.UNKNOWN_OPERATION, Code.NOT_MEMBER):
            return False
        now = self.now()
        until = self._retry_until if self._retry_until is not None else (
            now + self.config.catch_up_wait)
        if now >= until:
            return False
        self._waiting[op].append((until, peer, event))
        return True

    def _wake(self, op: str) -> None:
        """The operation's state moved: handle again what waited for it."""
        waiting = self._waiting.pop(op, None)
        for until, peer, event in waiting or ():
            if self.fanout.is_connected(peer):
                self._retry_until = until
                try:
                    self.handle(peer, event)
                finally:
                    self._retry_until = None

    def expire(self) -> None:
        """Refuse the waiting requests whose time is up (the pump calls it now and then)."""
        now = self.now()
        for op in list(self._waiting):
            due = [w for w in self._waiting[op] if w[0] <= now]
            if not due:
                continue
            self._waiting[op] = [w for w in self._waiting[op] if w[0] > now]
            if not self._waiting[op]:
                del self._waiting[op]
            for _, peer, event in due:
                if self.fanout.is_connected(peer):
                    self._retry_until = now  # refused, not kept again
                    try:
                        self.handle(peer, event)
                    finally:
                        self._retry_until = None

    def observed(self, op: str, entries: Sequence[LogEntry]) -> None:
        """Shared store: the next entries of ``op``'s log, whichever node stored them, in
        order. Statements move the operation's state here too (a statement of this
        node's was applied when it was accepted); then everything goes to the fan-out."""
        moved = False
        for entry in entries:
            self.fanout.appended(op, entry)
            if entry.kind != f.KIND_COMMIT:
                continue
            body, signature = from_log(entry.payload)
            stmt = Statement.from_bytes(body)
            for cbody, csig in stmt.credentials:  # enrolled by the node that accepted it
                self.enrolled_elsewhere(SignedCredential(cbody, csig))
            try:
                logged = fold(self._logged.get(op), body, signature, self.directory.get)
            except RequestError as exc:  # cannot happen unless the stores' nodes disagree
                log.error("operation %r: statement at seq %d does not apply here: %s",
                          op, entry.seq, exc.message)
                continue
            self._logged[op] = logged
            if self.ops.get(op) is None or self.ops[op].head != logged.head:
                self.ops[op] = logged  # another node's (and this node's in flight lost)
            if stmt.removes:
                self.fanout.removed(op, entry.seq, frozenset(stmt.removes))
            moved = True
        if moved or (op in self._waiting and op in self.ops):
            self._wake(op)

    def directed_elsewhere(self, recipient: str, entry: DirectedEntry) -> None:
        """Shared store: a directed message stored by any node; this node hands it to the
        recipient's connections here, if any."""
        targets = self.by_unit.get(recipient)
        if targets:
            out = f.Directed(items=(f.DirectedItem(id=entry.id, op=entry.op,
                                                   sender=entry.sender,
                                                   payload=entry.payload,
                                                   at_ms=entry.at_ms),))
            for target in targets:
                target.send(out)

    def enrolled_elsewhere(self, signed: SignedCredential) -> None:
        """Shared store: a credential another node enrolled (no write: it is stored)."""
        try:
            newer = check_replaces(signed, self.directory.get(signed.credential.unit))
        except AuthError:
            return
        if newer:
            self.directory[signed.credential.unit] = signed

    def cursor_elsewhere(self, unit: str, op: str, seq: int) -> None:
        """Shared store: a cursor saved by another node (the unit moved, or is on both)."""
        key = (unit, op)
        if seq > self.cursors.get(key, 0):
            self.cursors[key] = seq
