"""Router: the hub's decisions, as a sans-I/O state machine beside the sessions.

Inputs are authenticated frames (``handle``), store results (``stored``, ``log_read``,
``directed_read``), the end of a transaction (``flush``) and a full connection that has
room again (``writable``). Outputs are typed frames queued on each ``Peer``, store
work (``Write``, ``ReadLog``, ``ReadDirected``) collected in ``actions()`` for the pump
(hub/broker.py) to run, and events for the audit trail (``audit``, router_audit.py).
The key-package rules are a mixin of their own (router_keys.py), as are the inputs of a
shared store (router_shared.py).
No asyncio, no sockets, no database, no clock reads: time comes in through ``now``; the
tests drive it in memory (tests/protocol/test_router.py).

What it decides: who may publish, subscribe, commit, send and claim (membership, the
admin's signed statements, the credential rule), the idempotency of retries, and which
statements wait for which. Which entries go to which subscriber, and when, is its
``Fanout``'s part (protocol/fanout.py). It never decrypts: headers and payloads are
opaque bytes.

The store commands (protocol/store.py) are plain data and every result comes back
through one entry point, so a second store (NATS JetStream, several hub nodes) can run
them without the router changing.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from typing import assert_never

from protocol import frames as f
from protocol.credentials import AuthorityRing, SignedCredential, check_replaces
from protocol.errors import AuthError, Code, RequestError, StoreError, UsageError
from protocol.fanout import Fanout
from protocol.router_audit import VIA_DIRECTORY, VIA_HANDSHAKE, VIA_STATEMENT, AuditEvents, Kind
from protocol.router_io import (
    CHUNK_BYTES,
    Action,
    Background,
    ClaimingKeyPackages,
    Committing,
    Counts,
    Peer,
    Publishing,
    PuttingKeyPackages,
    ReadDirected,
    ReadLog,
    RouterConfig,
    SendingDirected,
    Then,
    Write,
)
from protocol.router_keys import KeyPackageRules
from protocol.router_shared import SharedStoreInputs
from protocol.session import Authenticated, Event
from protocol.statements import (
    OperationState,
    Statement,
    log_payload,
    statement_hash,
)
from protocol.store import (
    AckDirected,
    Appended,
    AppendMessage,
    ApplyStatement,
    Command,
    DirectedEntry,
    DirectedStored,
    Enroll,
    LogEntry,
    Result,
    SaveCursor,
    Snapshot,
    StoreDirected,
)

log = logging.getLogger("opshub.router")


_NO_OP = OperationState(op="-", name="", admin="-", admin_key=b"", epoch=0, head=b"")


class Router(SharedStoreInputs, KeyPackageRules):
    def __init__(self, ring: AuthorityRing, *, now: Callable[[], float],
                 config: RouterConfig | None = None) -> None:
        self.ring = ring
        self.now = now
        self.config = config or RouterConfig()
        self.counts = Counts()
        #: what the hub's audit trail records (protocol/router_audit.py), for the pump
        self.audit = AuditEvents()
        self.ops: dict[str, OperationState] = {}
        self.directory: dict[str, SignedCredential] = {}
        self.cursors: dict[tuple[str, str], int] = {}
        self.by_unit: dict[str, set[Peer]] = defaultdict(set)
        self._dirty_cursors: set[tuple[str, str]] = set()
        #: statement hash -> retries of it waiting for its transaction (peer, rid)
        self._committing: dict[bytes, list[tuple[Peer, int]]] = {}
        #: operations with a statement in flight, and the new statements held behind it:
        #: one at a time, so that a statement never builds on one whose write then fails
        self._in_flight: set[str] = set()
        self._held: dict[str, deque[tuple[Peer, f.Commit]]] = {}
        #: units a statement in flight admits, and operations being created: they count
        #: only once the statement is stored (``_member_state``)
        self._admitting: dict[str, frozenset[str]] = {}
        self._creating: set[str] = set()
        #: shared store: each operation's state as its log has it (``ops`` may be ahead by
        #: a statement of this node's in flight)
        self._logged: dict[str, OperationState] = {}
        #: shared store: requests about an operation waiting for its feed, by operation:
        #: (deadline, peer, event)
        self._waiting: dict[str, list[tuple[float, Peer, Event]]] = defaultdict(list)
        #: the deadline of the request being handled again (None: a new request)
        self._retry_until: float | None = None
        self._actions: list[Action] = []
        self.fanout = Fanout(self.config, self.counts, self._actions)
        #: last seq of each operation's log, as far as delivered
        self.heads = self.fanout.heads
        #: live and catching-up subscriptions of each operation
        self.subs = self.fanout.subs

    def actions(self) -> list[Action]:
        """Store work produced since the last call, in order; the pump runs each."""
        out = list(self._actions)
        self._actions.clear()  # the list is shared with the fan-out
        return out

    # --- state ----------------------------------------------------------------------

    def load(self, snap: Snapshot) -> None:
        """Take the state the store kept (at start-up)."""
        for rec in snap.operations.values():
            self.ops[rec.op] = OperationState(
                op=rec.op, name=rec.name, admin=rec.admin, admin_key=rec.admin_key,
                epoch=rec.epoch, head=rec.head, members=rec.members)
            self.heads[rec.op] = rec.last_seq
        self._logged = dict(self.ops)
        self.directory = {u: SignedCredential(b, s) for u, (b, s) in snap.directory.items()}
        self.cursors = dict(snap.cursors)

    def lookup(self, unit: str) -> SignedCredential | None:
        return self.directory.get(unit)

    def enroll(self, signed: SignedCredential, *, by: str | None = None) -> str:
        """Verify and enroll a credential (HTTP directory upload by unit ``by``, roster
        preload). Raises AuthError naming what is wrong (bad signature, expired,
        superseded)."""
        cred = self.ring.verify(signed, now=int(self.now()))
        if check_replaces(signed, self.directory.get(cred.unit)):
            self._enroll(signed, VIA_DIRECTORY, by)
        return cred.unit

    def _enroll(self, signed: SignedCredential, via: str, by: str | None = None) -> None:
        cred = signed.credential
        self.directory[cred.unit] = signed
        self.audit.enrolled(signed, via, by)
        self._write([Enroll(cred.unit, signed.body, signed.signature, cred.issued_at)],
                    Background(f"enrolment of {cred.unit}"))

    def _write(self, commands: list[Command], then: Then) -> None:
        self._actions.append(Write(commands, then))

    # --- connections ----------------------------------------------------------------

    def handle(self, peer: Peer, event: Event) -> None:
        """Serve one event of an authenticated connection. Never raises for bad requests:
        they are answered with an error frame and the connection stays open."""
        match event:
            case Authenticated():
                self._connected(peer, event)
            case f.Publish():
                self._publish(peer, event)
            case f.Subscribe():
                self._guard(peer, event.rid, self._subscribe, peer, event)
            case f.Unsubscribe():
                self.fanout.unsubscribe(peer, event)
            case f.Ack():
                self._ack(peer, event)
            case f.Commit():
                self._guard(peer, event.rid, self._commit, peer, event)
            case f.SendDirected():
                self._guard(peer, event.rid, self._send_directed, peer, event)
            case f.DirectedAck():
                self._write([AckDirected(peer.unit, event.ids)],
                            Background(f"directed acks of {peer.unit}"))
            case f.PutKeyPackages():
                self._guard(peer, event.rid, self._put_key_packages, peer, event)
            case f.ClaimKeyPackages():
                self._guard(peer, event.rid, self._claim_key_packages, peer, event)
            case f.Hello():
                raise UsageError("the session passed on a 'hello' after the handshake")
            case _:
                assert_never(event)

    def disconnected(self, peer: Peer) -> None:
        self.fanout.disconnected(peer)
        units = self.by_unit.get(peer.unit)
        if units is not None:
            units.discard(peer)
            if not units:
                del self.by_unit[peer.unit]

    def _connected(self, peer: Peer, auth: Authenticated) -> None:
        # The session checked the rule already (open enrollment, or a newer credential).
        if check_replaces(auth.signed, self.directory.get(auth.credential.unit)):
            self._enroll(auth.signed, VIA_HANDSHAKE)
        self.by_unit[peer.unit].add(peer)
        self.fanout.connected(peer)
        self._actions.append(ReadDirected(peer, self.config.max_batch))

    def _guard(self, peer: Peer, rid: int, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except RequestError as exc:
            self._error(peer, exc.code, exc.message, rid=rid)

    def _error(self, peer: Peer, code: str, message: str, *, rid: int | None = None,
               op: str | None = None, cid: int | None = None) -> None:
        self.counts.errors[code] += 1
        peer.send(f.Error(code=code, message=f.bounded(message), rid=rid, op=op, cid=cid))

    def _member_state(self, unit: str, op: str) -> OperationState:
        """The operation's state if ``unit`` is a member now. While a statement is being
        stored, its removals count already and its admissions (an operation being created:
        the whole operation) not yet: were its write to fail, nothing accepted meanwhile
        may rest on it."""
        st = self.ops.get(op)
        if st is None or op in self._creating:
            raise RequestError(f"no operation {op!r} on this hub", code=Code.UNKNOWN_OPERATION)
        if unit not in st.members or unit in self._admitting.get(op, ()):
            raise RequestError(f"unit {unit!r} is not a member of operation {op!r}",
                               code=Code.NOT_MEMBER)
        return st

    # --- publish --------------------------------------------------------------------

    def _publish(self, peer: Peer, frame: f.Publish) -> None:
        at_ms = int(self.now() * 1000)
        unit = peer.unit
        cmds: list[AppendMessage] = []
        for item in frame.items:
            st = self.ops.get(item.op)
            if st is None or unit not in st.members or item.op in self._admitting:
                try:
                    self._member_state(unit, item.op)
                except RequestError as exc:
                    if not self._wait(item.op, peer, f.Publish(items=(item,)), exc):
                        self._error(peer, exc.code, exc.message, op=item.op, cid=item.cid)
                    continue
            cmds.append(AppendMessage(item.op, unit, item.cid, f.KIND_MESSAGE,
                                      item.header, item.payload, at_ms))
        if cmds:
            self._write(list(cmds), Publishing(peer, cmds))

    def _published(self, then: Publishing, results: list[Result] | StoreError) -> None:
        peer = then.peer
        if isinstance(results, StoreError):
            for cmd in then.commands:
                self._error(peer, results.code, f"not stored, retry: {results.message}",
                            op=cmd.op, cid=cmd.cid)
            return
        acks = []
        for cmd, res in zip(then.commands, results, strict=True):
            assert isinstance(res, Appended)
            acks.append((cmd.op, cmd.cid, res.seq))
            if res.duplicate:
                self.counts.duplicates += 1
            else:
                self.counts.messages_in += 1
                if not self.config.shared:  # else the store's feed brings it (observed)
                    self.fanout.appended(cmd.op, LogEntry(res.seq, cmd.sender, cmd.kind,
                                                          cmd.header, cmd.payload, cmd.at_ms))
        peer.send(f.Acks(items=tuple(acks)))

    # --- results from the store -------------------------------------------------------

    def stored(self, write: Write, results: list[Result] | StoreError) -> None:
        """The transaction holding ``write`` committed (one result per command) or failed."""
        match write.then:
            case Publishing() as then:
                self._published(then, results)
            case Committing() as then:
                self._committed(then, results)
            case SendingDirected() as then:
                self._guard(then.peer, then.frame.rid, self._directed_stored, then, results)
            case PuttingKeyPackages() as then:
                self._guard(then.peer, then.rid, self._packages_stored, then, results)
            case ClaimingKeyPackages() as then:
                self._guard(then.peer, then.rid, self._packages_claimed, then, results)
            case Background(what=what):
                if isinstance(results, StoreError):
                    self.counts.background_failures += 1
                    log.error("%s not stored: %s", what, results.message)
            case _:
                assert_never(write.then)

    def _first(self, peer: Peer, rid: int, results: list[Result] | StoreError) -> Result:
        """The one result of a request's write; raises RequestError with the store's."""
        if isinstance(results, StoreError):
            raise RequestError(results.message, code=results.code)
        return results[0]

    # --- subscriptions: the fan-out decides what goes where ------------------------------

    def _subscribe(self, peer: Peer, frame: f.Subscribe) -> None:
        try:
            self._member_state(peer.unit, frame.op)
        except RequestError as exc:
            if self._wait(frame.op, peer, frame, exc):
                return
            raise
        after = frame.after
        if after is None:
            after = self.cursors.get((peer.unit, frame.op), 0)
        self.fanout.subscribe(peer, frame, after)

    def flush(self) -> None:
        """A transaction has ended: deliver what it committed (Fanout.flush)."""
        self.fanout.flush()

    def log_read(self, read: ReadLog, rows: Sequence[LogEntry] | StoreError) -> None:
        """A page of the log for a subscriber catching up, or the store's error."""
        self.fanout.log_read(read, rows)

    def writable(self, peer: Peer) -> None:
        """The peer's queue has room again: its store reads resume."""
        self.fanout.writable(peer)

    def _ack(self, peer: Peer, frame: f.Ack) -> None:
        """Move the unit's cursor forward. Acks are advisory: one from a unit that is no
        longer a member (removed while its ack was in flight) is ignored."""
        key = (peer.unit, frame.op)
        if peer.unit not in self.ops.get(frame.op, _NO_OP).members:
            return
        seq = min(frame.seq, self.heads.get(frame.op, 0))
        if seq > self.cursors.get(key, 0):
            self.cursors[key] = seq
            self._dirty_cursors.add(key)

    def flush_cursors(self) -> None:
        """Queue a write of the cursors moved since the last call (the pump calls it
        periodically and at shutdown)."""
        if not self._dirty_cursors:
            return
        cmds: list[Command] = [SaveCursor(u, op, self.cursors[(u, op)])
                               for u, op in sorted(self._dirty_cursors)]
        self._dirty_cursors.clear()
        self._write(cmds, Background("cursors"))

    # --- membership -------------------------------------------------------------------

    def _commit(self, peer: Peer, frame: f.Commit) -> None:
        """Decide a statement; a refusal goes to the audit trail as well as to the peer."""
        stmt: Statement | None = None
        try:
            stmt = Statement.from_bytes(frame.statement)
            self._decide_commit(peer, frame, stmt)
        except RequestError as exc:
            self.audit.refused(Kind.STATEMENT_REFUSED, peer.unit,
                               None if stmt is None else stmt.op, exc.code)
            raise

    def _decide_commit(self, peer: Peer, frame: f.Commit, stmt: Statement) -> None:
        before = self.ops.get(stmt.op)
        digest = statement_hash(frame.statement)
        if before is not None and digest == before.head:
            if digest in self._committing:  # not on disk yet: answer when it is
                self._committing[digest].append((peer, frame.rid))
            else:
                peer.send(f.Ok(rid=frame.rid, info={
                    "op": stmt.op, "epoch": before.epoch, "duplicate": True}))
            return
        if stmt.op in self._in_flight:  # decided once the statement before it is stored
            self._held.setdefault(stmt.op, deque()).append((peer, frame))
            return
        carried: dict[str, SignedCredential] = {}
        for body, sig in stmt.credentials:
            signed = SignedCredential(body, sig)
            try:
                cred = self.ring.verify(signed, now=int(self.now()))
            except AuthError as exc:
                raise RequestError(exc.message, code=exc.code) from None
            carried[cred.unit] = signed
        if before is None:
            admin = carried.get(stmt.admin) or self.directory.get(stmt.admin)
            if admin is None:
                raise RequestError(f"admin {stmt.admin!r} is not enrolled",
                                   code=Code.UNKNOWN_UNIT)
            cred = admin.credential
            after = OperationState.create(stmt, frame.statement, frame.signature,
                                          signer_key=cred.identity_key, signer_role=cred.role)
        else:
            after = before.apply(stmt, frame.statement, frame.signature)
        for unit in stmt.adds:
            if unit not in carried and unit not in self.directory:
                raise RequestError(f"unit {unit!r} is not enrolled; carry its credential",
                                   code=Code.UNKNOWN_UNIT)
        for signed in carried.values():
            try:
                newer = check_replaces(signed, self.directory.get(signed.credential.unit))
            except AuthError:
                newer = False  # an older copy carried in a statement changes nothing
            if newer:
                self._enroll(signed, VIA_STATEMENT)
        self.ops[stmt.op] = after
        entry = AppendMessage(stmt.op, stmt.admin, stmt.epoch, f.KIND_COMMIT, b"",
                              log_payload(frame.statement, frame.signature),
                              int(self.now() * 1000))
        cmd = ApplyStatement(stmt.op, after.epoch, after.name, after.admin, after.admin_key,
                             after.head, after.members, frame.statement, frame.signature, entry)
        self._committing[digest] = []
        self._in_flight.add(stmt.op)
        self._admitting[stmt.op] = after.members - (before.members if before else frozenset())
        if before is None:
            self._creating.add(stmt.op)
        self._write([cmd], Committing(peer, frame.rid, stmt, digest, before, after, entry))

    def _committed(self, then: Committing, results: list[Result] | StoreError) -> None:
        op = then.statement.op
        retries = self._committing.pop(then.digest, [])
        self._in_flight.discard(op)
        self._admitting.pop(op, None)
        self._creating.discard(op)
        self._answer_commit(then, retries, results)
        self._release(op)

    def _release(self, op: str) -> None:
        """Decide the statements held behind the one just stored (or refused), in order,
        until one of them is in flight in its turn."""
        held = self._held.get(op)
        while held and op not in self._in_flight:
            peer, frame = held.popleft()
            self._guard(peer, frame.rid, self._commit, peer, frame)
        if held is not None and not held and self._held.get(op) is held:
            del self._held[op]

    def _answer_commit(self, then: Committing, retries: list[tuple[Peer, int]],
                       results: list[Result] | StoreError) -> None:
        stmt, after = then.statement, then.after
        if isinstance(results, StoreError):
            if self.ops.get(stmt.op) is after:  # nothing builds on it (held meanwhile)
                if then.before is None:
                    del self.ops[stmt.op]
                else:
                    self.ops[stmt.op] = then.before
            for peer, rid in [(then.peer, then.rid), *retries]:
                self._error(peer, results.code, results.message, rid=rid)
            return
        res = results[0]
        assert isinstance(res, Appended)
        if not res.duplicate:
            self.audit.accepted(stmt, then.digest, res.seq)
            e = then.entry
            self.counts.messages_in += 1
            if not self.config.shared:  # else the store's feed brings it (observed)
                self.fanout.appended(
                    stmt.op, LogEntry(res.seq, e.sender, e.kind, e.header, e.payload, e.at_ms))
                if stmt.removes:
                    self.fanout.removed(stmt.op, res.seq, frozenset(stmt.removes))
        then.peer.send(f.Ok(rid=then.rid, info={
            "op": stmt.op, "epoch": after.epoch, "seq": res.seq}))
        for peer, rid in retries:
            peer.send(f.Ok(rid=rid, info={"op": stmt.op, "epoch": after.epoch,
                                          "duplicate": True}))

    # --- directed messages --------------------------------------------------------------

    def _send_directed(self, peer: Peer, frame: f.SendDirected) -> None:
        try:
            st = self._member_state(peer.unit, frame.op)
            if frame.to not in st.members or frame.to in self._admitting.get(frame.op, ()):
                raise RequestError(f"recipient {frame.to!r} is not a member of {frame.op!r}",
                                   code=Code.NOT_MEMBER)
        except RequestError as exc:
            if self._wait(frame.op, peer, frame, exc):
                return
            raise
        at_ms = int(self.now() * 1000)
        cmd = StoreDirected(frame.op, peer.unit, frame.to, frame.payload, at_ms, frame.cid)
        self._write([cmd], SendingDirected(peer, frame, at_ms))

    def _directed_stored(self, then: SendingDirected,
                         results: list[Result] | StoreError) -> None:
        stored = self._first(then.peer, then.frame.rid, results)
        assert isinstance(stored, DirectedStored)
        frame = then.frame
        # a retry: the recipient has (or will get) the first copy; on a shared store the
        # store's feed brings it to whichever node the recipient is on (directed_elsewhere)
        if not stored.duplicate and not self.config.shared:
            item = f.DirectedItem(id=stored.id, op=frame.op, sender=then.peer.unit,
                                  payload=frame.payload, at_ms=then.at_ms)
            out = f.Directed(items=(item,))
            for target in self.by_unit.get(frame.to, ()):
                target.send(out)
        then.peer.send(f.Ok(rid=frame.rid, info={"id": stored.id}))

    def directed_read(self, read: ReadDirected,
                      rows: Sequence[DirectedEntry] | StoreError) -> None:
        """On connect: everything addressed to the unit and not yet acknowledged, in frames
        of at most ~1 MiB; what does not fit in ``limit`` comes on the next connection
        (directed messages stay stored until acknowledged)."""
        peer = read.peer
        if not self.fanout.is_connected(peer):
            return  # gone meanwhile
        if isinstance(rows, StoreError):
            self._error(peer, rows.code, rows.message)
            return
        items: list[f.DirectedItem] = []
        size = 0
        for r in rows:
            if items and size + len(r.payload) > CHUNK_BYTES:
                peer.send(f.Directed(items=tuple(items)))
                items, size = [], 0
            items.append(f.DirectedItem(id=r.id, op=r.op, sender=r.sender, payload=r.payload,
                                        at_ms=r.at_ms))
            size += len(r.payload)
        if items:
            peer.send(f.Directed(items=tuple(items)))
