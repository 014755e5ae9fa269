"""Router target: several peers' frames, valid and not, through ServerSession and the Router.

A Scenario (tests/fuzz/scenario.py) is a list of steps: a unit connects (a real
handshake), a peer sends a frame (publish, subscribe, ack, commit, send, key packages...
with unknown operations, wrong epochs, stale or forged statements, acks beyond the head,
claims) or hostile bytes, the store runs, fails or holds back a transaction, runs or
fails reads, a peer's queue fills or drains, the clock moves. Each peer's bytes go
through its own ServerSession as over a socket and what comes out goes to
``Router.handle``; the store is the real SQLiteStore, stepped by the router harness
(tests/protocol/router_harness.py). After the steps everything is settled and what each
peer received is checked against the store (``check``):

- no exception escapes the session or the router;
- every request (rid) gets exactly one ok or error, every published item one ack or
  one error; every error code is one of protocol/errors.py ``Code``; a claimed package
  is the unit's it is given for;
- each operation's log is contiguous from seq 1, its statements chain epoch by epoch,
  each message in it comes from a member at that point;
- deliveries come only within a subscription (from its ok to its end), ascending after
  its ``after``, equal to the stored entries, and never to a unit that was not a member
  at or after the entry; an open subscription of a connected peer has every entry it
  asked for;
- acks name stored entries of the acking unit, one seq per (op, cid);
- a directed message reaches only its recipient, as it was sent, and only between units
  that were members of its operation.

Only public behaviour is used: frames in and out, the harness's store steps, the store.
"""

from __future__ import annotations

import functools
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from client.identity import UnitIdentity
from protocol import codec
from protocol import frames as f
from protocol.errors import Code, RequestError
from protocol.keypackages import KEY_PACKAGE_CONTEXT, KeyPackage, SignedKeyPackage
from protocol.router_io import RouterConfig
from protocol.session import Authenticated, ServerSession, State
from protocol.statements import OperationState, Statement, from_log, roster_hash, sign
from protocol.store import LogEntry
from tests.fuzz.scenario import (
    ALL_OPS,
    OCU,
    UNITS,
    AckTo,
    Commit,
    Connect,
    Dack,
    Disconnect,
    Fill,
    Hostile,
    KpClaim,
    KpPut,
    Pub,
    Scenario,
    SendTo,
    Step,
    Store,
    Sub,
    Tick,
    Unsub,
    Writable,
    scenarios,
)
from tests.fuzz.target import Target
from tests.protocol.router_harness import ISSUED, NOW, SPECS, FakePeer, Hub, Keys

#: Enrolled before the first step; the others enroll by connecting (open enrollment) or by
#: being carried in a statement.
PRELOADED = ("OCU-BB", "JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS")
HUB_ID = "hub-fuzz"
#: Small batches and pages so that a few entries already cross their edges; two
#: subscriptions per connection so that a third is refused.
CONFIG = RouterConfig(max_batch=3, catchup_page=4, max_operations_per_unit=2)
CODES = frozenset(v for k, v in vars(Code).items() if not k.startswith("_"))
#: Fail transactions while a statement is pending too. False kept the fuzzing off a known
#: defect (what the router accepted on the strength of a statement whose transaction then
#: failed was kept: tests/fuzz/test_routing.py), fixed since.
FAIL_STATEMENTS = True


@dataclass(frozen=True, slots=True)
class Identities:
    keys: Keys
    #: JM-CUSTOMS again, with a credential issued 30 s after its first (and another key)
    newer_jm: UnitIdentity


@functools.cache
def identities() -> Identities:
    keys = Keys()
    return Identities(keys, keys.authority.enroll(SPECS["JM-CUSTOMS"], now=ISSUED + 30))


# --- the world the steps act on ---------------------------------------------------------


@dataclass(eq=False)
class Conn:
    """One connection: its session, the router's view of it, what was asked on it."""

    unit: str
    ident: UnitIdentity
    session: ServerSession
    peer: FakePeer
    open: bool = True
    rid: int = 0
    #: rid -> requests passed on to the router with it (a hostile frame may reuse a rid)
    requests: Counter[int] = field(default_factory=Counter)
    #: rid -> the last request with it
    kinds: dict[int, f.ClientFrame] = field(default_factory=dict)
    items: int = 0  # publish items passed on to the router

    def next_rid(self) -> int:
        self.rid += 1
        return self.rid


@dataclass(slots=True)
class Proposal:
    """A statement this scenario sent, and the state it leads to if the hub accepts it."""

    conn: Conn
    rid: int
    body: bytes
    signature: bytes
    state: OperationState | None  # None: it breaks a rule of statements.py


class World:
    def __init__(self, path: Path, *, fail_statements: bool = True) -> None:
        self.fail_statements = fail_statements
        self.ids = identities()
        self.hub = Hub(path, self.ids.keys, config=CONFIG)
        for unit in PRELOADED:
            self.hub.enroll(self.ids.keys[unit].signed)
        self.hub.settle()
        self.conns: list[Conn] = []
        self.proposals: dict[str, list[Proposal]] = defaultdict(list)
        self._prologue()

    def _prologue(self) -> None:
        """Where every scenario starts (so that few steps reach deep states): the OCU,
        JM-CUSTOMS, TT-POLICE and DM-CUSTOMS connected (connections 0-3); OP-A created with
        JM and TT, OP-B with JM and DM, both stored; JM, TT and DM with two key packages
        each on the hub; JM subscribed to OP-A from the start. OP-C is left for the steps
        to create."""
        for unit in (OCU, "JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS"):
            self.connect(unit, self.ids.keys[unit])
        self.run(Commit(0, "OP-A", "create", adds=("JM-CUSTOMS", "TT-POLICE")))
        self.run(Commit(0, "OP-B", "create", adds=("JM-CUSTOMS", "DM-CUSTOMS")))
        for conn in (1, 2, 3):
            self.run(KpPut(conn, "valid", first=10 * conn, n=2))
        self.hub.settle()
        self.run(Sub(1, "OP-A", 0))
        self.hub.settle()

    def close(self) -> None:
        self.hub.close()

    # --- connections ------------------------------------------------------------------

    def connect(self, unit: str, ident: UnitIdentity) -> None:
        n = len(self.conns)
        session = ServerSession(hub_id=HUB_ID, ring=self.ids.keys.ring(),
                                directory=self.hub.router.lookup, now=lambda: self.hub.clock,
                                token_bytes=lambda k: n.to_bytes(k, "big"),
                                open_enrollment=True)
        conn = Conn(unit, ident, session, FakePeer(unit))
        self.conns.append(conn)
        hello = f.Hello(credential=ident.signed.body, credential_sig=ident.signed.signature,
                        signature=ident.answer(session.nonce, HUB_ID))
        self.feed(conn, codec.encode(hello))

    def pick(self, i: int) -> Conn | None:
        open_ = [c for c in self.conns if c.open]
        return open_[i % len(open_)] if open_ else None

    def feed(self, conn: Conn, data: bytes) -> None:
        """Bytes from the peer, as the connection's pump hands them on."""
        for event in conn.session.receive(data):
            if isinstance(event, f.Publish):
                conn.items += len(event.items)
            elif not isinstance(event, Authenticated | f.Ack | f.DirectedAck | f.Hello):
                conn.requests[event.rid] += 1
                conn.kinds[event.rid] = event
            self.hub.handle(conn.peer, event)
        if conn.session.state is State.CLOSED and conn.open:
            self.disconnect(conn)

    def send(self, conn: Conn, frame: f.ClientFrame) -> None:
        self.feed(conn, codec.encode(frame))

    def disconnect(self, conn: Conn) -> None:
        conn.open = False
        self.hub.disconnect(conn.peer)

    # --- statements ---------------------------------------------------------------------

    def accepted(self, op: str) -> OperationState | None:
        """The last state the hub said ok to (the highest epoch: the log is one chain)."""
        best: OperationState | None = None
        for p in self.proposals[op]:
            if p.state is None or not isinstance(_answer(p.conn, p.rid), f.Ok):
                continue
            if best is None or p.state.epoch > best.epoch:
                best = p.state
        return best

    def statement(self, conn: Conn, step: Commit) -> tuple[bytes, bytes, OperationState | None]:
        keys = self.ids.keys
        mine = self.proposals[step.op]
        if step.how == "garbage":
            return step.garbage, b"\x00" * 64, None
        if step.how == "replay" and mine:
            p = mine[len(step.garbage) % len(mine)]
            return p.body, p.signature, p.state
        admin, signer = OCU, keys[OCU]
        base: OperationState | None = None
        if step.how == "not_ocu":
            admin, signer = "JM-CUSTOMS", keys["JM-CUSTOMS"]
        elif step.how in ("change", "wrong_epoch", "forged", "replay"):
            base = self.accepted(step.op)
        elif step.how == "chain":
            base = next((p.state for p in reversed(mine) if p.state), None)
        elif step.how == "stale":
            base = next((p.state for p in mine if p.state), None)
        if step.how == "forged":
            signer = keys["TT-POLICE"]
        adds = tuple(sorted(set(step.adds) - {admin}))
        carried = tuple((keys[u].signed.body, keys[u].signed.signature) for u in adds
                        ) if step.carry else ()
        if base is None:
            members = set(adds) | {admin}
            creds = ((keys[admin].signed.body, keys[admin].signed.signature), *carried
                     ) if step.carry else ()
            # not_ocu and create make epoch 0; the others, with no state to build on, epoch 1
            epoch = 0 if step.how in ("create", "not_ocu") else 1
            stmt = Statement(op=step.op, epoch=epoch, prev=b"", admin=admin, adds=adds,
                             roster=_roster(members, step.roster_ok),
                             name=f"Operation {step.op}", at=int(self.hub.clock),
                             credentials=creds)
        else:
            removes = tuple(sorted(set(step.removes)))
            if step.how in ("change", "chain"):  # a valid change (bar roster_ok)
                adds = tuple(u for u in adds if u not in base.members)
                removes = tuple(u for u in removes if u in base.members and u != admin)
            members = (set(base.members) | set(adds)) - set(removes)
            epoch = base.epoch + (2 if step.how == "wrong_epoch" else 1)
            stmt = Statement(op=step.op, epoch=epoch, prev=base.head, admin=admin, adds=adds,
                             removes=removes, roster=_roster(members, step.roster_ok),
                             at=int(self.hub.clock), credentials=carried)
        body, signature = sign(signer.key, stmt)
        try:
            if base is None:
                cred = keys[admin].credential
                state: OperationState | None = OperationState.create(
                    stmt, body, signature, signer_key=cred.identity_key, signer_role=cred.role)
            else:
                state = base.apply(stmt, body, signature)
        except RequestError:
            state = None
        return body, signature, state

    # --- key packages -------------------------------------------------------------------

    def packages(self, conn: Conn, step: KpPut) -> tuple[bytes, ...]:
        keys = self.ids.keys
        other = next(u for u in UNITS if u != conn.unit)
        out = []
        for i in range(step.n):
            owner, key = conn.unit, conn.ident.key
            if step.how == "other_unit":
                owner = other
            elif step.how == "bad_sig":
                key = keys[other].key
            elif step.how == "garbage":
                out.append(bytes([step.first + i]) * (7 * i + 1))
                continue
            public_key = bytes([step.first + i]) * 32
            if step.how == "odd":
                created_at, last_resort = step.odd
                body = msgpack.packb([owner, "X25519", public_key, created_at, last_resort],
                                     use_bin_type=True)
                out.append(SignedKeyPackage(body, key.sign(KEY_PACKAGE_CONTEXT + body))
                           .to_bytes())
                continue
            pkg = KeyPackage(unit=owner, kem="X25519", public_key=public_key,
                             created_at=int(NOW), last_resort=step.last_resort and i == 0)
            out.append(SignedKeyPackage.sign(key, pkg).to_bytes())
        return tuple(out)

    # --- steps ------------------------------------------------------------------------

    def run(self, step: Step) -> None:
        hub = self.hub
        if isinstance(step, Connect):
            newer = step.newer and step.unit == "JM-CUSTOMS"
            self.connect(step.unit, self.ids.newer_jm if newer else self.ids.keys[step.unit])
            return
        if isinstance(step, Store):
            self.store(step.what)
            return
        if isinstance(step, Tick):
            hub.clock += step.seconds
            return
        if isinstance(step, KpClaim) and step.conn is None:
            conn = next((c for c in self.conns if c.open and c.unit == OCU), None)
        else:
            conn = self.pick(step.conn)  # type: ignore[arg-type]
        if conn is None:
            return
        match step:
            case Disconnect():
                self.disconnect(conn)
            case Pub(items=items):
                self.send(conn, f.Publish(items=tuple(
                    f.PublishItem(op, cid, b"h", b"%s/%d/%d" % (conn.unit.encode(), cid, i))
                    for i, (op, cid) in enumerate(items))))
            case Sub(op=op, after=after, senders=senders):
                self.send(conn, f.Subscribe(rid=conn.next_rid(), op=op, after=after,
                                            senders=senders))
            case Unsub(op=op):
                self.send(conn, f.Unsubscribe(rid=conn.next_rid(), op=op))
            case AckTo(op=op, seq=seq):
                self.send(conn, f.Ack(op=op, seq=seq))
            case Dack(ids=ids):
                self.send(conn, f.DirectedAck(ids=ids))
            case SendTo(op=op, to=to, cid=cid):
                rid = conn.next_rid()
                self.send(conn, f.SendDirected(rid=rid, op=op, to=to, cid=cid,
                                               payload=b"%s/%d" % (conn.unit.encode(), rid)))
            case Commit():
                body, signature, state = self.statement(conn, step)
                rid = conn.next_rid()
                self.proposals[step.op].append(Proposal(conn, rid, body, signature, state))
                self.send(conn, f.Commit(rid=rid, statement=body, signature=signature))
            case KpPut():
                self.send(conn, f.PutKeyPackages(rid=conn.next_rid(),
                                                 packages=self.packages(conn, step),
                                                 replace=step.replace))
            case KpClaim(units=claimed, op=op, cid=cid):
                self.send(conn, f.ClaimKeyPackages(rid=conn.next_rid(), units=claimed, op=op,
                                                   cid=cid))
            case Hostile(kind=kind, data=data):
                if kind == "hello":
                    ident = conn.ident
                    data = codec.encode(f.Hello(credential=ident.signed.body,
                                                credential_sig=ident.signed.signature,
                                                signature=b"\x00" * 64))
                elif kind == "server_frame":
                    data = codec.encode(f.Ok(rid=1, info={}))
                self.feed(conn, data)
            case Fill():
                conn.peer.fill()
            case Writable():
                hub.writable(conn.peer)

    def store(self, what: str) -> None:
        hub = self.hub
        idle = hub.applied is None
        if what == "fail" and not self.fail_statements and any(
                _answer(p.conn, p.rid) is None for ps in self.proposals.values() for p in ps):
            what = "apply"
        if what in ("apply", "fail", "commit") and idle and hub.writes:
            hub.apply(fail="disk I/O error (simulated)" if what == "fail" else None)
            if what == "commit":
                hub.finish()
        elif what == "finish" and not idle:
            hub.finish()
        elif what == "execute":
            hub.execute_reads()
        elif what == "deliver":
            hub.deliver_reads()
        elif what == "fail_reads":
            hub.fail_reads()
        elif what == "flush_cursors":
            hub.flush_cursors()
        elif what == "settle":
            hub.settle()

    def drain(self) -> None:
        """Run every transaction and read, and let every open connection's queue drain."""
        for _ in range(3):
            self.hub.settle()
            for conn in self.conns:
                if conn.open:
                    self.hub.writable(conn.peer)
        self.hub.flush_cursors()
        self.hub.settle()


def _answer(conn: Conn, rid: int) -> f.Ok | f.Error | None:
    """The (last) ok or error answering request ``rid`` of ``conn`` so far."""
    out = None
    for fr in conn.peer.frames:
        if isinstance(fr, f.Ok | f.Error) and fr.rid == rid:
            out = fr
    return out


def _roster(members: set[str], ok: bool) -> bytes:
    return roster_hash(members) if ok else b"\x00" * 32


# --- the check ------------------------------------------------------------------------


def check(scenario: Scenario) -> None:
    """Run the scenario's steps on a fresh hub, drain it, and check what came out."""
    with tempfile.TemporaryDirectory(prefix="opshub-fuzz-") as tmp:
        world = World(Path(tmp) / "hub.db", fail_statements=FAIL_STATEMENTS)
        try:
            for step in scenario.steps:
                world.run(step)
            world.drain()
            check_world(world)
        finally:
            world.close()


def check_world(world: World) -> None:
    logs = {op: world.hub.store.read_log(op, 0, 1 << 20) for op in ALL_OPS}
    members = {op: _check_log(op, log) for op, log in logs.items()}
    directed = _directed_sent(world)
    acked: dict[tuple[str, str, int], int] = {}
    for conn in world.conns:
        _check_answers(conn)
        _check_acks(conn, logs, acked)
        _check_deliveries(conn, logs, members)
        for item in conn.peer.directed():
            sent = directed.get(item.id, set())
            assert (item.op, item.sender, conn.unit, item.payload) in sent, (
                f"{conn.unit} got directed message {item} that was not sent to it: {sent}")
            # both were members when it was sent (a removal later keeps it, 10.7)
            for unit in (item.sender, conn.unit):
                assert any(unit in m for m in members[item.op]), (
                    f"directed message {item.id} in {item.op} from {item.sender} to "
                    f"{conn.unit}: {unit} was never a member")


def _check_log(op: str, log: list[LogEntry]) -> list[frozenset[str]]:
    """Check one operation's log; return the members after each seq (index 0: none)."""
    assert [e.seq for e in log] == list(range(1, len(log) + 1)), f"{op}: log not contiguous"
    history: list[frozenset[str]] = [frozenset()]
    current: set[str] = set()
    epoch = -1
    for e in log:
        if e.kind == f.KIND_COMMIT:
            stmt = Statement.from_bytes(from_log(e.payload)[0])
            assert (stmt.op, stmt.epoch, e.sender) == (op, epoch + 1, stmt.admin), (
                f"{op} seq {e.seq}: statement {stmt.op} epoch {stmt.epoch} by {e.sender} "
                f"after epoch {epoch}")
            epoch = stmt.epoch
            if epoch == 0:
                current = set(stmt.adds) | {stmt.admin}
            else:
                current = (current | set(stmt.adds)) - set(stmt.removes)
        else:
            assert e.kind == f.KIND_MESSAGE, e
            assert e.sender in current, (
                f"{op} seq {e.seq}: message from {e.sender}, not a member at that point "
                f"(members: {sorted(current)})")
        history.append(frozenset(current))
    return history


def _check_answers(conn: Conn) -> None:
    answers: Counter[int] = Counter()
    items = 0
    for fr in conn.peer.frames:
        if isinstance(fr, f.Error):
            assert fr.code in CODES, f"error code {fr.code!r} is not in Code"
            assert len(fr.message) <= f.MAX_MESSAGE
            if fr.rid is not None:
                answers[fr.rid] += 1
            elif fr.cid is not None:
                items += 1
            else:  # a replay or the directed messages at connect failed to read
                assert fr.code == Code.STORE, fr
        elif isinstance(fr, f.Ok):
            answers[fr.rid] += 1
            request = conn.kinds.get(fr.rid)
            if isinstance(request, f.ClaimKeyPackages):
                _check_claimed(request, fr.info)
        elif isinstance(fr, f.Acks):
            items += len(fr.items)
    wrong = {rid: (conn.requests[rid], answers[rid], conn.kinds.get(rid))
             for rid in set(answers) | set(conn.requests) if answers[rid] != conn.requests[rid]}
    assert not wrong, f"{conn.unit}: rid -> (requests, answers, frame): {wrong}"
    assert items == conn.items, f"{conn.unit}: {conn.items} items published, {items} answered"


def _check_claimed(request: f.ClaimKeyPackages, info: dict[str, Any]) -> None:
    """A claim's answer (protocol.md 12.3): each package is the unit's it is given for,
    and no unit is both given and missing. (A retry with the same cid gets the first
    answer, whatever units it names, so the units asked for are not compared.)"""
    packages, missing = info["packages"], info["missing"]
    for unit, raw in packages.items():
        owner = KeyPackage.from_bytes(SignedKeyPackage.from_bytes(raw).body).unit
        assert owner == unit, f"claimed package of {unit} is {owner}'s"
    assert not set(missing) & set(packages), info


def _check_acks(conn: Conn, logs: dict[str, list[LogEntry]],
                acked: dict[tuple[str, str, int], int]) -> None:
    for op, cid, seq in conn.peer.acks():
        log = logs[op]
        assert 1 <= seq <= len(log), f"{conn.unit}: ack of {op} seq {seq} beyond the log"
        entry = log[seq - 1]
        assert (entry.sender, entry.kind) == (conn.unit, f.KIND_MESSAGE), (
            f"{conn.unit}: ack ({op}, {cid}, {seq}) names {entry}")
        first = acked.setdefault((conn.unit, op, cid), seq)
        assert first == seq, f"{conn.unit}: ({op}, cid {cid}) acked as {first} and {seq}"


@dataclass(slots=True)
class _Segment:
    """One subscription as its peer sees it, from its ok on."""

    after: int
    senders: tuple[str, ...] | None
    seen: list[int] = field(default_factory=list)

    def wants(self, e: LogEntry) -> bool:
        return e.seq > self.after and (self.senders is None or e.kind != f.KIND_MESSAGE
                                       or e.sender in self.senders)


def _check_deliveries(conn: Conn, logs: dict[str, list[LogEntry]],
                      members: dict[str, list[frozenset[str]]]) -> None:
    subs: dict[str, _Segment] = {}
    for fr in conn.peer.frames:
        match fr:
            case f.Ok(rid=rid, info=info) if isinstance(conn.kinds.get(rid), f.Subscribe):
                request = conn.kinds[rid]
                assert isinstance(request, f.Subscribe)
                assert info["op"] == request.op, (request, info)
                assert info["head"] <= len(logs[request.op]), (request, info)
                subs[info["op"]] = _Segment(info["after"], request.senders)
            case f.Ok(rid=rid, info=info) if isinstance(conn.kinds.get(rid), f.Unsubscribe):
                subs.pop(info["op"], None)
            case f.Ended(op=op):
                assert subs.pop(op, None) is not None, f"{conn.unit}: ended {op} unsubscribed"
            case f.Deliver(op=op, items=items):
                seg = subs.get(op)
                assert seg is not None, f"{conn.unit}: deliver of {op} outside a subscription"
                log, history = logs[op], members[op]
                for e in items:
                    assert e.seq > (seg.seen[-1] if seg.seen else seg.after), (
                        f"{conn.unit}: {op} seq {e.seq} after {seg.seen[-3:]} (after "
                        f"{seg.after})")
                    assert e.seq <= len(log), f"{conn.unit}: {op} seq {e.seq} is not stored"
                    assert e == log[e.seq - 1], f"{conn.unit}: {e} is not the stored entry"
                    assert seg.wants(e), f"{conn.unit}: {e} is filtered out ({seg.senders})"
                    assert any(conn.unit in m for m in history[e.seq - 1:]), (
                        f"{conn.unit} got {op} seq {e.seq} but is a member neither then nor "
                        f"later (members after each seq: {[sorted(m) for m in history]})")
                    seg.seen.append(e.seq)
    if not conn.open:
        return
    for op, seg in subs.items():
        expected = [e.seq for e in logs[op] if seg.wants(e)]
        assert seg.seen == expected, (
            f"{conn.unit}: open subscription to {op} after {seg.after} got {seg.seen}, "
            f"the log has {expected}")


def _directed_sent(world: World) -> dict[int, set[tuple[str, str, str, bytes]]]:
    """id -> every (op, sender, recipient, payload) a send was answered ok with that id."""
    out: dict[int, set[tuple[str, str, str, bytes]]] = defaultdict(set)
    for conn in world.conns:
        for ok in conn.peer.of(f.Ok):
            request = conn.kinds.get(ok.rid)
            if isinstance(request, f.SendDirected):
                out[ok.info["id"]].add((request.op, conn.unit, request.to, request.payload))
    return out


TARGETS = [
    Target("router", scenarios(), check, 100,
           "tests/fuzz/test_routing.py::test_routing_scenarios_keep_the_routers_promises",
           weight=3),
]
