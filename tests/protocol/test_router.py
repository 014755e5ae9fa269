"""protocol.router.Router driven in memory: no event loop, no sockets, no pump.

The harness (tests/protocol/router_harness.py) plays hub/broker.py and the store worker
step by step, against the real SQLiteStore on a temporary file called synchronously: the
seqs, idempotency keys, directed ids and key-package rules the router relies on are the
production ones, not a dict written to agree with it (why, and what it costs: see the
harness's docstring). Credentials, statements and key packages are signed with real
Ed25519 keys by the project's own code (Authority, OperationAdmin, SignedKeyPackage).

Error codes of docs/protocol.md 13.1 that the router cannot produce, and where they are
tested instead:
- malformed_frame, frame_too_large: the codec (tests/protocol/test_codec.py) and the
  session (tests/protocol/test_session.py); over a socket in tests/test_bad_input.py.
- unexpected_frame: the session (tests/protocol/test_session.py).
- unknown_unit, bad_credential, expired_credential, bad_signature, unknown_authority at the
  handshake (close 4401): the session (tests/protocol/test_session.py).
- slow_consumer: a close reason of hub/connection.py (tests/test_bad_input.py).
- shutting_down: a close reason of hub/app.py; no test found for it.
- unsupported_version and the agents' own codes (decrypt_failed, replayed, ...):
  tests/protocol/test_agent_session.py, tests/client/e2ee/, tests/client/test_secure.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.identity import Authority, UnitSpec
from protocol import frames as f
from protocol.credentials import SignedCredential
from protocol.errors import AuthError, Code, UsageError
from protocol.keypackages import KeyPackage, SignedKeyPackage
from protocol.router_io import CHUNK_BYTES, ReadDirected, ReadLog, RouterConfig
from protocol.statements import Statement, roster_hash, sign
from protocol.store import (
    AckDirected,
    AppendMessage,
    ApplyStatement,
    ClaimKeyPackages,
    Enroll,
    PutKeyPackages,
    SaveCursor,
    StoreDirected,
)
from tests.protocol.router_harness import ISSUED, NOW, SPECS, FakePeer, Hub, Keys

OP = "OP-A"
MEMBERS = ("JM-CUSTOMS", "TT-POLICE")


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def make_hub(tmp_path: Path, keys: Keys) -> Iterator[Callable[..., Hub]]:
    """Hubs on tmp_path/hub.db (a second one is the first restarted), each with its own
    RouterConfig; closed at the end."""
    hubs: list[Hub] = []

    def make(config: RouterConfig | None = None) -> Hub:
        hub = Hub(tmp_path / "hub.db", keys, config=config)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()


@pytest.fixture
def hub(make_hub) -> Hub:
    return make_hub()


def _opened(hub: Hub, members: tuple[str, ...] = MEMBERS) -> FakePeer:
    """The OCU connected and OP-A created with ``members`` (seq 1); its frames cleared."""
    ocu = hub.connect("OCU-BB")
    hub.create(ocu, OP, members)
    ocu.take()
    return ocu


def _joined(hub: Hub, unit: str, after: int | None = 0, **kw) -> FakePeer:
    """``unit`` connected and subscribed to OP-A, the replay done; its frames cleared."""
    peer = hub.connect(unit)
    hub.subscribe(peer, OP, after, **kw)
    hub.settle()
    peer.take()
    return peer


def _commands(hub: Hub) -> list[object]:
    return [c for w in hub.writes for c in w.commands]


def _package(hub: Hub, unit: str, n: int, *, last_resort: bool = False,
             owner: str | None = None) -> bytes:
    """A signed X25519 key package of ``owner`` (default ``unit``) signed by ``unit``."""
    pkg = KeyPackage(unit=owner or unit, kem="X25519", public_key=bytes([n]) * 32,
                     created_at=int(NOW), last_resort=last_resort)
    return SignedKeyPackage.sign(hub.keys[unit].key, pkg).to_bytes()


def _statement_entry(entry: f.Delivery) -> Statement:
    body, _sig = msgpack.unpackb(entry.payload)
    return Statement.from_bytes(body)


def _chain(admin, signed: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """Let the admin sign its next statement on top of ``signed`` before the hub answers."""
    admin.state = admin._proposed
    return signed


# --- Authenticated, enroll, load -----------------------------------------------------


def test_router_authenticated_enrolls_a_credential_not_on_file(hub):
    """A connection whose credential is not on file enrolls it (an Enroll write) and asks
    for the unit's pending directed messages."""
    peer = hub.connect("JM-CUSTOMS")
    assert hub.router.lookup("JM-CUSTOMS") == hub.keys["JM-CUSTOMS"].signed
    [enroll] = _commands(hub)
    assert isinstance(enroll, Enroll)
    assert (enroll.unit, enroll.issued_at) == ("JM-CUSTOMS", ISSUED)
    [read] = hub.reads
    assert isinstance(read, ReadDirected)
    assert (read.peer, read.limit) == (peer, hub.router.config.max_batch)


def test_router_authenticated_with_the_enrolled_credential_writes_nothing(hub):
    """A unit reconnecting with the credential on file enrolls nothing again."""
    hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.connect("JM-CUSTOMS")
    assert hub.writes == []


def test_router_enroll_newer_credential_replaces_the_one_on_file(hub, keys):
    """enroll() with a credential issued later replaces the enrolled one and stores it."""
    hub.enroll(keys["JM-CUSTOMS"].signed)
    newer = keys.authority.enroll(SPECS["JM-CUSTOMS"], now=ISSUED + 30).signed
    assert hub.enroll(newer) == "JM-CUSTOMS"
    assert hub.router.lookup("JM-CUSTOMS") == newer
    hub.settle()
    assert hub.store.load().directory["JM-CUSTOMS"] == (newer.body, newer.signature)


def test_router_enroll_identical_credential_is_a_no_op(hub, keys):
    """enroll() with the very credential on file writes nothing."""
    hub.enroll(keys["JM-CUSTOMS"].signed)
    hub.settle()
    hub.enroll(keys["JM-CUSTOMS"].signed)
    assert hub.writes == []


def test_router_enroll_older_credential_is_refused(hub, keys):
    """enroll() with a credential issued before the one on file raises bad_credential and
    keeps the newer one."""
    newer = keys.authority.enroll(SPECS["JM-CUSTOMS"], now=ISSUED + 30).signed
    hub.enroll(newer)
    with pytest.raises(AuthError) as info:
        hub.enroll(keys["JM-CUSTOMS"].signed)
    assert info.value.code == Code.BAD_CREDENTIAL
    assert hub.router.lookup("JM-CUSTOMS") == newer


def test_router_enroll_unverifiable_credential_is_refused(hub, keys):
    """enroll() raises the ring's code for a credential of an unknown authority, and enrolls
    nothing."""
    stranger = Authority.generate().enroll(SPECS["DM-CUSTOMS"], now=ISSUED).signed
    with pytest.raises(AuthError) as info:
        hub.enroll(stranger)
    assert info.value.code == Code.UNKNOWN_AUTHORITY
    assert hub.router.lookup("DM-CUSTOMS") is None


def test_router_load_resumes_operations_heads_directory_and_cursors(make_hub):
    """A router that loads the store's snapshot after a restart knows the operation, its
    head, the directory and the cursors: a sub without after resumes from the cursor."""
    first = make_hub()
    ocu = _opened(first)
    first.publish(ocu, OP, 1, 2)
    first.settle()
    first.handle(first.connect("JM-CUSTOMS"), f.Ack(op=OP, seq=2))
    first.flush_cursors()
    first.settle()
    first.close()

    second = make_hub()
    second.router.load(second.store.load())
    assert second.router.ops[OP].members == {"OCU-BB", *MEMBERS}
    assert second.router.lookup("TT-POLICE") is not None
    jm = second.connect("JM-CUSTOMS")
    rid = second.subscribe(jm, OP, after=None)
    second.settle()
    assert jm.ok(rid).info == {"op": OP, "after": 2, "head": 3}
    assert jm.seqs(OP) == [3]


# --- pub ---------------------------------------------------------------------------


def test_router_publish_is_acked_only_after_the_store_result(hub):
    """A pub frame becomes one Write; its acks come when the router has the results, not
    when the frame arrives nor when the store has merely applied it."""
    _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.publish(jm, OP, 10, 11)
    assert jm.frames == []
    assert [type(c) for c in _commands(hub)] == [AppendMessage, AppendMessage]
    hub.apply()
    assert jm.frames == []
    hub.finish()
    assert jm.acks() == [(OP, 10, 2), (OP, 11, 3)]
    assert hub.router.counts.messages_in == 3  # the statement, then the two messages


def test_router_publish_acks_items_of_several_operations_in_item_order(hub):
    """Items for different operations in one frame are acked in one acks frame, in item
    order, each with its own operation's seq."""
    ocu = _opened(hub)
    hub.create(ocu, "OP-B", MEMBERS)
    hub.handle(ocu, f.Publish(items=(f.PublishItem("OP-B", 1, b"", b"x"),
                                     f.PublishItem(OP, 1, b"", b"y"),
                                     f.PublishItem("OP-B", 2, b"", b"z"))))
    hub.settle()
    assert ocu.of(f.Acks) == [f.Acks(items=(("OP-B", 1, 2), (OP, 1, 2), ("OP-B", 2, 3)))]


def test_router_publish_duplicate_is_acked_with_the_first_seq_and_not_fanned_out(hub):
    """A retried cid is acked with the seq it was first stored at, and no subscriber gets
    it a second time."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.publish(ocu, OP, 7)
    hub.settle()
    hub.publish(ocu, OP, 7, 8)
    hub.settle()
    assert ocu.acks() == [(OP, 7, 2), (OP, 7, 2), (OP, 8, 3)]
    assert jm.seqs(OP) == [2, 3]
    assert hub.router.counts.duplicates == 1


def test_router_publish_repeated_cid_in_one_frame_is_stored_once(hub):
    """The same cid twice in one frame is one entry, acked twice with its seq."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.publish(ocu, OP, 5, 5)
    hub.settle()
    assert ocu.acks() == [(OP, 5, 2), (OP, 5, 2)]
    assert jm.seqs(OP) == [2]


def test_router_publish_to_unknown_operation_is_refused_per_item(hub):
    """An item for an operation that does not exist gets unknown_operation with its op and
    cid, at once and before the acks of the other items."""
    ocu = _opened(hub)
    hub.handle(ocu, f.Publish(items=(f.PublishItem("OP-NONE", 1, b"", b"x"),
                                     f.PublishItem(OP, 2, b"", b"y"))))
    [err] = ocu.frames
    assert isinstance(err, f.Error)
    assert (err.code, err.op, err.cid, err.rid) == (Code.UNKNOWN_OPERATION, "OP-NONE", 1, None)
    hub.settle()
    assert ocu.acks() == [(OP, 2, 2)]


def test_router_publish_by_non_member_is_refused_and_sends_no_acks(hub):
    """A non-member's items get not_member with op and cid; with every item refused there
    is no write and no acks frame."""
    _opened(hub)
    dm = hub.connect("DM-CUSTOMS")
    hub.settle()
    hub.publish(dm, OP, 1, 2)
    assert [(e.code, e.op, e.cid) for e in dm.of(f.Error)] == [
        (Code.NOT_MEMBER, OP, 1), (Code.NOT_MEMBER, OP, 2)]
    assert hub.writes == []
    assert dm.of(f.Acks) == []


def test_router_publish_store_failure_errors_every_item_and_the_retry_reuses_the_seqs(hub):
    """A failed transaction answers every item with store_failure (op and cid, "not stored,
    retry"), delivers nothing, and the retry with the same cids gets the seqs it would
    have had."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.publish(ocu, OP, 1, 2)
    hub.fail()
    errors = ocu.of(f.Error)
    assert [(e.code, e.op, e.cid) for e in errors] == [
        (Code.STORE, OP, 1), (Code.STORE, OP, 2)]
    assert all(e.message.startswith("not stored, retry: ") for e in errors)
    assert ocu.of(f.Acks) == []
    assert jm.frames == []
    hub.publish(ocu, OP, 1, 2)
    hub.settle()
    assert ocu.acks() == [(OP, 1, 2), (OP, 2, 3)]
    assert jm.seqs(OP) == [2, 3]


# --- fan-out ------------------------------------------------------------------------


def test_router_fanout_waits_for_flush(hub):
    """Stored entries reach subscribers only when the pump calls flush() after the
    transaction, after the acks."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.subscribe(ocu, OP)
    hub.settle()
    ocu.take()
    hub.publish(ocu, OP, 1)
    hub.apply()
    hub.finish(flush=False)
    assert ocu.acks() == [(OP, 1, 2)]
    assert jm.frames == []
    hub.router.flush()
    assert jm.seqs(OP) == [2]
    assert [type(x) for x in ocu.frames] == [f.Acks, f.Deliver]


def test_router_fanout_shares_one_deliver_frame_among_live_subscribers(hub):
    """Every live subscriber is offered the very same Deliver object (encoded once)."""
    ocu = _opened(hub, ("JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS"))
    peers = [_joined(hub, u) for u in ("JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS")]
    hub.publish(ocu, OP, 1, 2)
    hub.settle()
    frames = [p.delivers(OP) for p in peers]
    assert all(len(fs) == 1 for fs in frames)
    assert frames[0][0] is frames[1][0] is frames[2][0]
    assert hub.router.counts.deliveries == 3 * 2 + 3  # the two entries, and the replays of seq 1


def test_router_fanout_is_one_frame_per_operation_per_transaction(hub):
    """Publishes of several connections committed together reach a subscriber as one
    Deliver frame, in seq order."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    tt = _joined(hub, "TT-POLICE")
    hub.publish(ocu, OP, 1)
    hub.publish(jm, OP, 1)
    hub.publish(ocu, OP, 2)
    hub.commit()
    [frame] = tt.delivers(OP)
    assert [(e.seq, e.sender) for e in frame.items] == [
        (2, "OCU-BB"), (3, "JM-CUSTOMS"), (4, "OCU-BB")]


def test_router_fanout_chunks_by_max_batch(make_hub):
    """A transaction's entries are cut in frames of at most max_batch entries."""
    hub = make_hub(RouterConfig(max_batch=3))
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.publish(ocu, OP, *range(1, 8))
    hub.settle()
    assert [[e.seq for e in d.items] for d in jm.delivers(OP)] == [
        [2, 3, 4], [5, 6, 7], [8]]


def test_router_fanout_chunks_at_a_mebibyte(hub):
    """Frames are also cut so that header + payload + 64 per entry stays within 1 MiB."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.publish(ocu, OP, *range(1, 8), payload=b"x" * 300_000)
    hub.settle()
    sizes = [[len(e.header) + len(e.payload) + 64 for e in d.items] for d in jm.delivers(OP)]
    assert [len(s) for s in sizes] == [3, 3, 1]
    assert all(sum(s) <= CHUNK_BYTES for s in sizes)


def test_router_fanout_per_delivery_sends_one_frame_per_entry(make_hub):
    """With per_delivery (the benchmark's naive reference) each entry is its own frame."""
    hub = make_hub(RouterConfig(per_delivery=True))
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.publish(ocu, OP, 1, 2, 3)
    hub.settle()
    assert [[e.seq for e in d.items] for d in jm.delivers(OP)] == [[2], [3], [4]]


# --- sub, unsub -----------------------------------------------------------------------


def test_router_subscribe_answers_after_and_head_then_replays_from_the_store(hub):
    """sub answers ok {op, after, head} at once, then replays after+1..head from the store."""
    ocu = _opened(hub)
    hub.publish(ocu, OP, 1, 2, 3)
    hub.settle()
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    rid = hub.subscribe(jm, OP, after=2)
    assert jm.ok(rid).info == {"op": OP, "after": 2, "head": 4}
    [read] = hub.reads
    assert isinstance(read, ReadLog)
    assert (read.after, read.limit) == (2, hub.router.config.catchup_page)
    hub.settle()
    assert jm.seqs(OP) == [3, 4]
    hub.publish(ocu, OP, 4)
    hub.settle()
    assert jm.seqs(OP) == [3, 4, 5]


def test_router_subscribe_replays_in_pages_of_catchup_page(make_hub):
    """A replay reads catchup_page entries at a time until it reaches the head, then goes
    live, each entry once."""
    hub = make_hub(RouterConfig(catchup_page=2))
    ocu = _opened(hub)
    hub.publish(ocu, OP, *range(1, 6))
    hub.settle()
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.subscribe(jm, OP)
    afters = []
    while hub.reads:
        afters += [r.after for r in hub.reads]
        hub.read()
    assert afters == [0, 2, 4]
    assert jm.seqs(OP) == [1, 2, 3, 4, 5, 6]


def test_router_subscribe_after_none_resumes_from_the_cursor(hub):
    """A sub without after starts after the unit's cursor (0 without one)."""
    ocu = _opened(hub)
    hub.publish(ocu, OP, 1, 2, 3)
    hub.settle()
    jm = hub.connect("JM-CUSTOMS")
    rid = hub.subscribe(jm, OP, after=None)
    assert jm.ok(rid).info["after"] == 0
    hub.handle(jm, f.Ack(op=OP, seq=3))
    jm2 = hub.connect("JM-CUSTOMS")
    rid = hub.subscribe(jm2, OP, after=None)
    hub.settle()
    assert jm2.ok(rid).info == {"op": OP, "after": 3, "head": 4}
    assert jm2.seqs(OP) == [4]


def test_router_subscribe_after_beyond_head_is_live_and_skips_up_to_after(hub):
    """A sub with after > head needs no replay and never sends entries up to after."""
    ocu = _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.subscribe(jm, OP, after=3)
    assert hub.reads == []
    hub.publish(ocu, OP, 1, 2, 3, 4)
    hub.settle()
    assert jm.seqs(OP) == [4, 5]


@pytest.mark.parametrize("read_sees_it", [False, True])
def test_router_subscribe_during_a_transaction_gets_its_entries_once(hub, read_sees_it):
    """A sub while a transaction is in the store reports the head fanned out so far; whether
    its replay read runs before that transaction or already sees it, each entry comes once
    and in order."""
    ocu = _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.publish(ocu, OP, 1)
    if read_sees_it:
        hub.apply()
        rid = hub.subscribe(jm, OP)
        hub.execute_reads()
    else:
        rid = hub.subscribe(jm, OP)
        hub.execute_reads()
        hub.apply()
    hub.deliver_reads()
    hub.finish()
    hub.settle()
    assert jm.ok(rid).info["head"] == 1
    assert jm.seqs(OP) == [1, 2]


def test_router_subscribe_again_replaces_the_subscription(hub):
    """A second sub for the same operation ends the first silently: later entries come
    once."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.subscribe(jm, OP, after=1)
    hub.settle()
    hub.publish(ocu, OP, 1)
    hub.settle()
    assert jm.seqs(OP) == [2]
    assert jm.of(f.Ended) == []


def test_router_subscribe_unknown_operation_is_refused(hub):
    """sub to an operation that does not exist: unknown_operation with the rid."""
    jm = hub.connect("JM-CUSTOMS")
    rid = hub.subscribe(jm, "OP-NONE")
    assert jm.error(rid).code == Code.UNKNOWN_OPERATION
    assert not any(isinstance(r, ReadLog) for r in hub.reads)


def test_router_subscribe_by_non_member_is_refused(hub):
    """sub by a unit that is not a member: not_member with the rid."""
    _opened(hub)
    dm = hub.connect("DM-CUSTOMS")
    rid = hub.subscribe(dm, OP)
    err = dm.error(rid)
    assert (err.code, err.op, err.cid) == (Code.NOT_MEMBER, None, None)


def test_router_subscribe_over_the_limit_is_refused_but_resubscribing_is_not(make_hub):
    """A connection at max_operations_per_unit gets limit_exceeded for a new operation, and
    may still re-subscribe to one it follows."""
    hub = make_hub(RouterConfig(max_operations_per_unit=1))
    ocu = _opened(hub)
    hub.create(ocu, "OP-B", MEMBERS)
    jm = hub.connect("JM-CUSTOMS")
    hub.subscribe(jm, OP)
    rid = hub.subscribe(jm, "OP-B")
    assert jm.error(rid).code == Code.LIMIT
    rid = hub.subscribe(jm, OP, after=1)
    assert jm.ok(rid).info["op"] == OP


def test_router_replay_store_failure_errors_and_ends_the_subscription(hub):
    """A failed ReadLog answers store_failure with the op (no rid) and ends the
    subscription; nothing more is delivered on it."""
    ocu = _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.subscribe(jm, OP)
    hub.fail_reads()
    err = jm.of(f.Error)[0]
    assert (err.code, err.op, err.rid) == (Code.STORE, OP, None)
    assert [type(x) for x in jm.frames][-2:] == [f.Error, f.Ended]
    hub.publish(ocu, OP, 1)
    hub.settle()
    assert jm.seqs(OP) == []


def test_router_unsubscribe_stops_deliveries_and_always_answers_ok(hub):
    """unsub answers ok {op} (also with nothing to end, or for a non-member) and nothing
    more is delivered."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    dm = hub.connect("DM-CUSTOMS")
    for peer in (jm, jm, dm):
        rid = hub.rid()
        hub.handle(peer, f.Unsubscribe(rid=rid, op=OP))
        assert peer.ok(rid).info == {"op": OP}
    hub.publish(ocu, OP, 1)
    hub.settle()
    assert jm.of(f.Deliver) == []
    assert jm.of(f.Ended) == []


# --- sender filter --------------------------------------------------------------------


def test_router_sender_filter_delivers_commits_and_only_the_named_senders(hub, keys):
    """A filtered subscription gets every membership statement and only the named senders'
    messages; subscribers with the same filter share one frame."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, ("JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS"))
    tt = _joined(hub, "TT-POLICE", senders=("OCU-BB",))
    dm = _joined(hub, "DM-CUSTOMS", senders=("OCU-BB",))
    jm = hub.connect("JM-CUSTOMS")
    hub.publish(jm, OP, 1)
    hub.publish(ocu, OP, 1)
    hub.handle(ocu, hub.commit_frame(admin.change(add=[keys["INTERPOL-LO"].signed])))
    hub.publish(jm, OP, 2)
    hub.commit()
    assert [(e.seq, e.sender, e.kind) for e in tt.entries(OP)] == [
        (3, "OCU-BB", f.KIND_MESSAGE), (4, "OCU-BB", f.KIND_COMMIT)]
    assert tt.delivers(OP)[0] is dm.delivers(OP)[0]


def test_router_sender_filter_applies_to_the_replay(hub):
    """A filtered subscription replaying from the store skips the other senders' messages
    and goes live after them."""
    ocu = _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    for cid in range(1, 4):
        hub.publish(jm, OP, cid)
        hub.publish(ocu, OP, cid)
    hub.settle()
    tt = hub.connect("TT-POLICE")
    hub.subscribe(tt, OP, senders=("OCU-BB",))
    hub.settle()
    assert tt.seqs(OP) == [1, 3, 5, 7]
    hub.publish(jm, OP, 9)
    hub.publish(ocu, OP, 9)
    hub.settle()
    assert tt.seqs(OP) == [1, 3, 5, 7, 9]


# --- flow control ---------------------------------------------------------------------


def test_router_full_peer_catches_up_from_the_store_on_writable(hub):
    """A live subscriber whose queue refuses a frame reads the log from the store once it
    has room again, with no gap and no duplicate, then is live again."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    jm.room = 1
    for cid in range(1, 5):
        hub.publish(ocu, OP, cid)
        hub.settle()
    assert jm.seqs(OP) == [2]
    hub.writable(jm)
    hub.settle()
    assert jm.seqs(OP) == [2, 3, 4, 5]
    hub.publish(ocu, OP, 5)
    hub.settle()
    assert jm.seqs(OP) == [2, 3, 4, 5, 6]
    assert len(jm.delivers(OP)[-1].items) == 1  # live again: the transaction's own frame


def test_router_counts_subscribers_that_fall_behind_and_catch_up(hub):
    """The hub's metrics say how many live subscribers fell behind (their queue refused a
    frame, so they left the live path for the store) and how many caught up again, and
    how many store pages that took: a load test reports them (issue 14)."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    counts = hub.router.counts
    before = (counts.fell_behind, counts.caught_up, counts.catchup_pages)
    jm.room = 1
    for cid in range(1, 5):
        hub.publish(ocu, OP, cid)
        hub.settle()
    assert counts.fell_behind == before[0] + 1
    assert counts.caught_up == before[1]
    hub.writable(jm)
    hub.settle()
    assert jm.seqs(OP) == [2, 3, 4, 5]
    assert counts.caught_up == before[1] + 1
    assert counts.catchup_pages > before[2]


def test_router_full_peer_does_not_hold_back_other_subscribers(hub):
    """While one subscriber's queue is full, the others keep getting the live frames."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    tt = _joined(hub, "TT-POLICE")
    jm.fill()
    hub.publish(ocu, OP, 1, 2)
    hub.settle()
    assert jm.seqs(OP) == []
    assert tt.seqs(OP) == [2, 3]


def test_router_replay_backlog_waits_for_writable(make_hub):
    """A replay page that does not fit waits, cut in frames, and resumes where it stopped on
    writable, without a second read of the same page."""
    hub = make_hub(RouterConfig(max_batch=2))
    ocu = _opened(hub)
    hub.publish(ocu, OP, *range(1, 6))
    hub.settle()
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    jm.room = 1
    hub.subscribe(jm, OP)
    hub.settle()
    assert jm.seqs(OP) == [1, 2]
    hub.writable(jm)
    assert hub.reads == []
    assert jm.seqs(OP) == [1, 2, 3, 4, 5, 6]


def test_router_catch_up_read_ahead_of_the_fanout_is_stitched_without_duplicates(hub):
    """A catch-up read that already sees a transaction not yet fanned out (the reader runs
    beside the writer) goes live, and that transaction's fan-out then skips it."""
    ocu = _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    jm.fill()
    hub.publish(ocu, OP, 1)
    hub.commit()
    assert [type(r) for r in hub.reads] == [ReadLog]  # refused: it reads the store
    hub.writable(jm)
    hub.publish(ocu, OP, 2)
    hub.apply()
    hub.read()
    assert jm.seqs(OP) == [2, 3]
    hub.finish()
    assert jm.seqs(OP) == [2, 3]
    hub.publish(ocu, OP, 3)
    hub.settle()
    assert jm.seqs(OP) == [2, 3, 4]


def test_router_writable_for_a_peer_with_nothing_waiting_changes_nothing(hub):
    """writable() for a peer that is live everywhere queues nothing and reads nothing."""
    _opened(hub)
    jm = _joined(hub, "JM-CUSTOMS")
    hub.writable(jm)
    assert (jm.frames, hub.reads, hub.writes) == ([], [], [])


# --- ack, cursors ---------------------------------------------------------------------


def test_router_ack_moves_the_cursor_and_flush_cursors_stores_it(hub):
    """ack moves the (unit, op) cursor; flush_cursors writes the moved cursors as one
    Background write."""
    ocu = _opened(hub)
    hub.publish(ocu, OP, 1, 2)
    hub.settle()
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.handle(jm, f.Ack(op=OP, seq=2))
    assert hub.writes == []
    assert hub.router.cursors[("JM-CUSTOMS", OP)] == 2
    hub.flush_cursors()
    assert _commands(hub) == [SaveCursor("JM-CUSTOMS", OP, 2)]
    hub.settle()
    assert hub.store.load().cursors == {("JM-CUSTOMS", OP): 2}


def test_router_ack_never_moves_a_cursor_back_or_beyond_the_head(hub):
    """cursor = max(cursor, min(seq, head))."""
    _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    hub.handle(jm, f.Ack(op=OP, seq=99))
    assert hub.router.cursors[("JM-CUSTOMS", OP)] == 1
    hub.handle(jm, f.Ack(op=OP, seq=0))
    assert hub.router.cursors[("JM-CUSTOMS", OP)] == 1


def test_router_ack_from_a_non_member_is_ignored(hub):
    """Acks of a unit that is not a member, or for an operation that does not exist, move
    nothing and get no answer."""
    _opened(hub)
    dm = hub.connect("DM-CUSTOMS")
    hub.settle()
    hub.handle(dm, f.Ack(op=OP, seq=1))
    hub.handle(dm, f.Ack(op="OP-NONE", seq=1))
    assert hub.router.cursors == {}
    hub.flush_cursors()
    assert hub.writes == []
    assert dm.frames == []


def test_router_background_write_failure_is_counted_not_answered(hub):
    """A failed cursor (or enrolment, dack) write answers nobody; it is counted."""
    _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.handle(jm, f.Ack(op=OP, seq=1))
    hub.flush_cursors()
    hub.fail()
    assert hub.router.counts.background_failures == 1
    assert jm.frames == []


# --- commit ---------------------------------------------------------------------------


def test_router_commit_creates_the_operation_with_its_statement_as_seq_1(hub):
    """An epoch-0 statement creates the operation, answered {op, epoch 0, seq 1} after the
    store; the log's first entry is the statement (kind 1, payload [stmt, sig])."""
    ocu = hub.connect("OCU-BB")
    admin = hub.admin(OP)
    signed = admin.create("Operation A", [hub.keys[m].signed for m in MEMBERS])
    frame = hub.commit_frame(signed)
    hub.handle(ocu, frame)
    [*_, apply] = _commands(hub)
    assert isinstance(apply, ApplyStatement)
    assert ocu.frames == []
    hub.settle()
    assert ocu.ok(frame.rid).info == {"op": OP, "epoch": 0, "seq": 1}
    [entry] = hub.store.read_log(OP, 0, 10)
    assert (entry.seq, entry.sender, entry.kind, entry.header) == (1, "OCU-BB", 1, b"")
    assert msgpack.unpackb(entry.payload) == list(signed)
    assert hub.store.load().operations[OP].members == {"OCU-BB", *MEMBERS}


def test_router_commit_enrolls_carried_credentials_of_added_units(hub, keys):
    """Credentials carried in a statement for units not on file are enrolled (and stored);
    an added member may then publish."""
    _opened(hub)
    assert hub.router.lookup("JM-CUSTOMS") == keys["JM-CUSTOMS"].signed
    assert "JM-CUSTOMS" in hub.store.load().directory
    jm = hub.connect("JM-CUSTOMS")
    hub.publish(jm, OP, 1)
    hub.settle()
    assert jm.acks() == [(OP, 1, 2)]


def test_router_commit_older_carried_credential_changes_nothing(hub, keys):
    """A carried credential older than the enrolled one is accepted in the statement but
    does not replace the newer one."""
    newer = keys.authority.enroll(SPECS["JM-CUSTOMS"], now=ISSUED + 30).signed
    hub.enroll(newer)
    _opened(hub)  # carries keys["JM-CUSTOMS"].signed, issued earlier
    assert hub.router.lookup("JM-CUSTOMS") == newer


def test_router_commit_change_admits_once_durable_and_is_answered_then(hub, keys):
    """A unit a membership change adds counts as a member only once the change is durable
    (were its write to fail, nothing may rest on it: tests/fuzz/test_routing.py); the ok
    {op, epoch, seq} comes after the store, and from then on the unit may publish."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    frame = hub.commit_frame(admin.change(add=[keys["DM-CUSTOMS"].signed]))
    hub.handle(ocu, frame)
    dm = hub.connect("DM-CUSTOMS")
    hub.publish(dm, OP, 1)
    assert [e.code for e in dm.of(f.Error)] == [Code.NOT_MEMBER]
    hub.settle()
    assert ocu.ok(frame.rid).info == {"op": OP, "epoch": 1, "seq": 2}
    hub.publish(dm, OP, 2)
    hub.settle()
    assert dm.acks() == [(OP, 2, 3)]


def test_router_commit_retry_of_the_durable_head_is_a_duplicate(hub):
    """Re-sending the head statement once it is stored answers {duplicate: true} with no
    write."""
    ocu = hub.connect("OCU-BB")
    admin = hub.admin(OP)
    signed = admin.create("A", [])
    hub.accept(ocu, admin, signed)
    frame = hub.commit_frame(signed)
    hub.handle(ocu, frame)
    assert ocu.ok(frame.rid).info == {"op": OP, "epoch": 0, "duplicate": True}
    assert hub.writes == []


def test_router_commit_retry_in_flight_is_answered_after_the_first_is_durable(hub):
    """A retry of a statement whose transaction is still running waits for it, then gets
    {duplicate: true}, after the first request's ok; nothing is appended twice."""
    ocu = hub.connect("OCU-BB")
    hub.settle()
    signed = hub.admin(OP).create("A", [])
    first, retry = hub.commit_frame(signed), hub.commit_frame(signed)
    hub.handle(ocu, first)
    hub.handle(ocu, retry)
    assert ocu.frames == []
    assert len(hub.writes) == 1
    hub.settle()
    assert ocu.frames == [f.Ok(rid=first.rid, info={"op": OP, "epoch": 0, "seq": 1}),
                          f.Ok(rid=retry.rid, info={"op": OP, "epoch": 0, "duplicate": True})]
    assert len(hub.store.read_log(OP, 0, 10)) == 1


def test_router_commit_retry_in_flight_gets_the_store_failure_too(hub):
    """If the first transaction fails, a retry that waited for it gets store_failure too."""
    ocu = hub.connect("OCU-BB")
    hub.settle()
    signed = hub.admin(OP).create("A", [])
    first, retry = hub.commit_frame(signed), hub.commit_frame(signed)
    hub.handle(ocu, first)
    hub.handle(ocu, retry)
    hub.fail()
    assert [(e.rid, e.code) for e in ocu.of(f.Error)] == [
        (first.rid, Code.STORE), (retry.rid, Code.STORE)]


def test_router_commit_store_failure_rolls_the_operation_state_back(hub, keys):
    """A change whose transaction fails answers store_failure and restores the previous
    state: the added unit is refused again, and the same statement, re-sent, is stored."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    before = hub.router.ops[OP]
    signed = admin.change(add=[keys["DM-CUSTOMS"].signed])
    frame = hub.commit_frame(signed)
    hub.handle(ocu, frame)
    hub.fail()
    assert ocu.error(frame.rid).code == Code.STORE
    assert hub.router.ops[OP] is before
    dm = hub.connect("DM-CUSTOMS")
    hub.publish(dm, OP, 1)
    assert dm.of(f.Error)[0].code == Code.NOT_MEMBER
    again = hub.commit_frame(signed)
    hub.handle(ocu, again)
    hub.settle()
    assert ocu.ok(again.rid).info == {"op": OP, "epoch": 1, "seq": 2}


def test_router_commit_store_failure_of_a_creation_forgets_the_operation(hub):
    """An epoch-0 statement whose transaction fails leaves no operation behind."""
    ocu = hub.connect("OCU-BB")
    hub.settle()
    frame = hub.commit_frame(hub.admin(OP).create("A", []))
    hub.handle(ocu, frame)
    hub.fail()
    assert ocu.error(frame.rid).code == Code.STORE
    assert OP not in hub.router.ops


def test_router_commit_store_failure_rolls_back_a_chain_of_statements(hub, keys):
    """Two statements of one operation (epoch 1, then 2 built on it) failing in one
    transaction leave the operation at epoch 0, and epoch 1 re-sent is stored anew.

    Fails: router.py _committed (line 511) restores ``before`` only when the current state
    is the failed statement's own ``after``; the first failure sees epoch 2 and skips, the second
    restores its ``before``, epoch 1, which was never stored."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    one = _chain(admin, admin.change(add=[keys["DM-CUSTOMS"].signed]))
    two = admin.change(remove=["DM-CUSTOMS"])
    hub.handle(ocu, hub.commit_frame(one))
    hub.handle(ocu, hub.commit_frame(two))
    hub.fail()
    assert hub.store.load().operations[OP].epoch == 0
    assert hub.router.ops[OP].epoch == 0
    again = hub.commit_frame(one)
    hub.handle(ocu, again)
    hub.settle()
    assert ocu.ok(again.rid).info == {"op": OP, "epoch": 1, "seq": 2}


def test_router_commit_built_on_a_statement_whose_transaction_fails_is_not_stored(hub, keys):
    """A statement accepted on top of one still in flight is not stored once that one
    fails: the log's statements keep chaining (10.6) and router and store agree.

    Fails: router.py _commit (lines 486-505) accepts a statement on top of one not yet
    durable and nothing ties the two Committings; the first's rollback is
    skipped (the state is already the second's) and the second is stored, so the log
    holds epochs 0 and 2 and epoch 2's prev names a statement that was never stored."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    one = _chain(admin, admin.change(add=[keys["DM-CUSTOMS"].signed]))
    two = admin.change(remove=["DM-CUSTOMS"])
    hub.handle(ocu, hub.commit_frame(one))
    hub.apply(fail="disk full (simulated)")
    second = hub.commit_frame(two)
    hub.handle(ocu, second)
    hub.finish()
    hub.settle()
    epochs = [_statement_entry(e).epoch for e in hub.store.read_log(OP, 0, 10)
              if e.kind == f.KIND_COMMIT]
    assert epochs == list(range(len(epochs)))
    assert hub.router.ops[OP].epoch == hub.store.load().operations[OP].epoch
    assert isinstance(ocu.answer(second.rid), f.Error)


def test_router_commit_malformed_statement_is_bad_statement(hub):
    """Statement bytes that do not parse: bad_statement with the rid."""
    ocu = hub.connect("OCU-BB")
    hub.handle(ocu, f.Commit(rid=1, statement=b"\x93not a map", signature=b"s" * 64))
    assert ocu.error(1).code == Code.BAD_STATEMENT
    assert hub.router.counts.errors[Code.BAD_STATEMENT] == 1


def test_router_commit_breaking_the_chain_is_bad_statement(hub):
    """A next-epoch statement whose prev is not the head hash: bad_statement."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    stmt = Statement(op=OP, epoch=1, prev=b"\x00" * 32, admin="OCU-BB",
                     roster=roster_hash(admin.state.members))
    frame = hub.commit_frame(sign(hub.keys["OCU-BB"].key, stmt))
    hub.handle(ocu, frame)
    assert ocu.error(frame.rid).code == Code.BAD_STATEMENT
    assert hub.writes == []


def test_router_commit_wrong_epoch(hub):
    """A statement skipping an epoch, or an older statement re-sent once a newer one is the
    head: wrong_epoch (operation_exists for the old epoch-0 one)."""
    ocu = hub.connect("OCU-BB")
    admin = hub.admin(OP)
    first = admin.create("A", [hub.keys[m].signed for m in MEMBERS])
    hub.accept(ocu, admin, first)
    hub.accept(ocu, admin, admin.change(remove=["TT-POLICE"]))
    stmt = Statement(op=OP, epoch=3, prev=admin.state.head, admin="OCU-BB",
                     roster=roster_hash(admin.state.members))
    skipping, old = hub.commit_frame(sign(hub.keys["OCU-BB"].key, stmt)), hub.commit_frame(first)
    hub.handle(ocu, skipping)
    hub.handle(ocu, old)
    assert ocu.error(skipping.rid).code == Code.WRONG_EPOCH
    assert ocu.error(old.rid).code == Code.OPERATION_EXISTS


def test_router_commit_creating_an_existing_operation_is_operation_exists(hub):
    """Another OCU creating an operation id that is taken gets operation_exists, not a
    signature error, and the operation is unchanged."""
    ocu = hub.connect("OCU-BB")
    hub.create(ocu, OP, MEMBERS)
    before = hub.router.ops[OP]
    other = hub.admin(OP)
    frame = hub.commit_frame(other.create("Another", [hub.keys["JM-CUSTOMS"].signed]))
    hub.handle(ocu, frame)
    assert ocu.error(frame.rid).code == Code.OPERATION_EXISTS
    assert hub.router.ops[OP] is before


def test_router_commit_naming_another_admin_is_not_admin(hub):
    """A next-epoch statement naming an admin other than the operation's: not_admin."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    stmt = Statement(op=OP, epoch=1, prev=admin.state.head, admin="JM-CUSTOMS",
                     roster=roster_hash(admin.state.members))
    jm = hub.connect("JM-CUSTOMS")
    frame = hub.commit_frame(sign(hub.keys["JM-CUSTOMS"].key, stmt))
    hub.handle(jm, frame)
    assert jm.error(frame.rid).code == Code.NOT_ADMIN


def test_router_commit_creation_by_a_non_ocu_unit_is_not_admin(hub):
    """An epoch-0 statement whose admin's role is not ocu: not_admin."""
    jm = hub.connect("JM-CUSTOMS")
    stmt = Statement(op=OP, epoch=0, prev=b"", admin="JM-CUSTOMS",
                     roster=roster_hash({"JM-CUSTOMS"}))
    frame = hub.commit_frame(sign(hub.keys["JM-CUSTOMS"].key, stmt))
    hub.handle(jm, frame)
    assert jm.error(frame.rid).code == Code.NOT_ADMIN
    assert OP not in hub.router.ops


def test_router_commit_not_signed_by_the_admin_is_bad_signature(hub):
    """A statement signed by another key than the admin's: bad_signature."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    stmt = Statement(op=OP, epoch=1, prev=admin.state.head, admin="OCU-BB",
                     roster=roster_hash(admin.state.members))
    frame = hub.commit_frame(sign(hub.keys["JM-CUSTOMS"].key, stmt))
    hub.handle(ocu, frame)
    assert ocu.error(frame.rid).code == Code.BAD_SIGNATURE


def test_router_commit_next_epoch_of_unknown_operation_is_unknown_operation(hub):
    """A statement with epoch > 0 for an operation the hub does not have: unknown_operation."""
    ocu = hub.connect("OCU-BB")
    stmt = Statement(op=OP, epoch=1, prev=b"\x01" * 32, admin="OCU-BB",
                     roster=roster_hash({"OCU-BB"}))
    frame = hub.commit_frame(sign(hub.keys["OCU-BB"].key, stmt))
    hub.handle(ocu, frame)
    assert ocu.error(frame.rid).code == Code.UNKNOWN_OPERATION


def test_router_commit_admin_neither_enrolled_nor_carried_is_unknown_unit(hub):
    """An epoch-0 statement whose admin is not on file and carries no credential for it:
    unknown_unit."""
    jm = hub.connect("JM-CUSTOMS")
    stmt = Statement(op=OP, epoch=0, prev=b"", admin="OCU-BB", roster=roster_hash({"OCU-BB"}))
    frame = hub.commit_frame(sign(hub.keys["OCU-BB"].key, stmt))
    hub.handle(jm, frame)
    assert jm.error(frame.rid).code == Code.UNKNOWN_UNIT


def test_router_commit_adding_a_unit_neither_enrolled_nor_carried_is_unknown_unit(hub):
    """A statement adding a unit the hub has no credential for, none carried: unknown_unit;
    the state does not move."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    members = admin.state.members | {"DM-CUSTOMS"}
    stmt = Statement(op=OP, epoch=1, prev=admin.state.head, admin="OCU-BB",
                     adds=("DM-CUSTOMS",), roster=roster_hash(members))
    frame = hub.commit_frame(sign(hub.keys["OCU-BB"].key, stmt))
    hub.handle(ocu, frame)
    assert ocu.error(frame.rid).code == Code.UNKNOWN_UNIT
    assert hub.router.ops[OP].epoch == 0


def _tampered(keys: Keys) -> SignedCredential:
    good = keys["DM-CUSTOMS"].signed
    return SignedCredential(good.body, bytes(64))


def _expired(keys: Keys) -> SignedCredential:
    return keys.authority.enroll(SPECS["DM-CUSTOMS"], now=ISSUED - 7200, validity=3600).signed


def _foreign(keys: Keys) -> SignedCredential:
    return Authority.generate().enroll(SPECS["DM-CUSTOMS"], now=ISSUED).signed


@pytest.mark.parametrize(("carried", "code"), [
    (_tampered, Code.BAD_CREDENTIAL),
    (_expired, Code.EXPIRED_CREDENTIAL),
    (_foreign, Code.UNKNOWN_AUTHORITY),
])
def test_router_commit_carried_credential_that_fails_verification_is_refused(
        hub, keys, carried, code):
    """A credential carried in a statement is verified: the failure's own code, with the
    rid, and nothing is enrolled or changed."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    frame = hub.commit_frame(admin.change(add=[carried(keys)]))
    hub.handle(ocu, frame)
    assert ocu.error(frame.rid).code == code
    assert hub.router.lookup("DM-CUSTOMS") is None
    assert hub.router.ops[OP].epoch == 0


# --- removal --------------------------------------------------------------------------


def test_router_removal_delivers_up_to_the_statement_then_ended(hub):
    """A removed member's subscription gets the log up to the removing statement, then
    ended; entries after it, even of the same transaction, go only to the others."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    jm = _joined(hub, "JM-CUSTOMS")
    tt = _joined(hub, "TT-POLICE")
    hub.publish(tt, OP, 1)
    hub.handle(ocu, hub.commit_frame(admin.change(remove=["TT-POLICE"])))
    hub.publish(jm, OP, 1)
    hub.commit()
    assert [type(x) for x in tt.frames] == [f.Acks, f.Deliver, f.Ended]
    assert tt.seqs(OP) == [2, 3]
    assert tt.of(f.Ended) == [f.Ended(op=OP, reason="removed from the operation")]
    assert jm.seqs(OP) == [2, 3, 4]
    hub.publish(ocu, OP, 1)
    hub.settle()
    assert tt.seqs(OP) == [2, 3]


def test_router_removed_unit_is_refused_and_its_acks_ignored(hub):
    """From the removing statement on, the removed unit gets not_member for pub, sub and
    send, and its acks move nothing."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    hub.accept(ocu, admin, admin.change(remove=["TT-POLICE"]))
    tt = hub.connect("TT-POLICE")
    hub.publish(tt, OP, 1)
    rid_sub = hub.subscribe(tt, OP)
    rid_send = hub.rid()
    hub.handle(tt, f.SendDirected(rid=rid_send, op=OP, to="OCU-BB", payload=b"x"))
    hub.handle(tt, f.Ack(op=OP, seq=2))
    assert [e.code for e in tt.of(f.Error)] == [Code.NOT_MEMBER] * 3
    assert {tt.error(rid_sub).code, tt.error(rid_send).code} == {Code.NOT_MEMBER}
    assert ("TT-POLICE", OP) not in hub.router.cursors


def test_router_removal_of_a_full_subscriber_still_delivers_up_to_the_statement(hub):
    """A removed member whose queue is full when the statement is fanned out still gets the
    entries up to the statement (from the store, once it has room), then ended.

    Fails: router.py _end_units (lines 305-308) ends every subscription of a removed unit at
    once, live or not; for one that is catching up _end drops its backlog and queues
    ended, so the entries before the statement are never delivered (10.7, 14.4)."""
    ocu = hub.connect("OCU-BB")
    admin = hub.create(ocu, OP, MEMBERS)
    tt = _joined(hub, "TT-POLICE")
    tt.fill()
    hub.publish(ocu, OP, 1)
    hub.handle(ocu, hub.commit_frame(admin.change(remove=["TT-POLICE"])))
    hub.publish(ocu, OP, 2)
    hub.settle()
    hub.writable(tt)
    hub.settle()
    assert tt.seqs(OP) == [2, 3]
    assert isinstance(tt.frames[-1], f.Ended)


# --- directed messages -----------------------------------------------------------------


def test_router_send_is_answered_when_stored_and_pushed_to_every_connection(hub):
    """send is stored, then answered ok {id} and pushed as one directed item to every
    connection of the recipient (none to others)."""
    ocu = _opened(hub)
    jm1, jm2 = hub.connect("JM-CUSTOMS"), hub.connect("JM-CUSTOMS")
    tt = hub.connect("TT-POLICE")
    hub.settle()
    hub.handle(ocu, f.SendDirected(rid=9, op=OP, to="JM-CUSTOMS", payload=b"w", cid=1))
    assert jm1.frames == []
    assert isinstance(_commands(hub)[0], StoreDirected)
    hub.settle()
    msg_id = ocu.ok(9).info["id"]
    item = f.DirectedItem(id=msg_id, op=OP, sender="OCU-BB", payload=b"w", at_ms=int(NOW * 1000))
    assert jm1.frames == jm2.frames == [f.Directed(items=(item,))]
    assert tt.frames == []


def test_router_send_to_an_offline_recipient_is_delivered_on_connect(hub):
    """A message for a unit not connected comes with its next connection, via ReadDirected,
    until it is acknowledged."""
    ocu = _opened(hub)
    hub.handle(ocu, f.SendDirected(rid=1, op=OP, to="JM-CUSTOMS", payload=b"a"))
    hub.handle(ocu, f.SendDirected(rid=2, op=OP, to="JM-CUSTOMS", payload=b"b"))
    hub.settle()
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    assert [(d.id, d.payload) for d in jm.directed()] == [
        (ocu.ok(1).info["id"], b"a"), (ocu.ok(2).info["id"], b"b")]
    assert len(jm.of(f.Directed)) == 1
    again = hub.connect("JM-CUSTOMS")
    hub.settle()
    assert [d.payload for d in again.directed()] == [b"a", b"b"]


def test_router_dack_acknowledges_only_the_units_own_messages(hub):
    """dack marks the unit's messages delivered (not sent again on connect); a dack of
    another unit's id is ignored."""
    ocu = _opened(hub)
    hub.handle(ocu, f.SendDirected(rid=1, op=OP, to="JM-CUSTOMS", payload=b"a"))
    hub.handle(ocu, f.SendDirected(rid=2, op=OP, to="JM-CUSTOMS", payload=b"b"))
    hub.settle()
    first, second = ocu.ok(1).info["id"], ocu.ok(2).info["id"]
    jm, tt = hub.connect("JM-CUSTOMS"), hub.connect("TT-POLICE")
    hub.handle(jm, f.DirectedAck(ids=(first,)))
    hub.handle(tt, f.DirectedAck(ids=(second,)))
    assert _commands(hub)[-2:] == [AckDirected("JM-CUSTOMS", (first,)),
                                   AckDirected("TT-POLICE", (second,))]
    hub.settle()
    assert tt.of(f.Error) == []
    later = hub.connect("JM-CUSTOMS")
    hub.settle()
    assert [d.id for d in later.directed()] == [second]


def test_router_send_retry_keeps_the_first_id_and_is_not_pushed_again(hub):
    """A send re-sent with its cid (after a lost ok) is answered with the first id and
    stores and pushes nothing new, also after the recipient acknowledged it."""
    ocu = _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.handle(ocu, f.SendDirected(rid=1, op=OP, to="JM-CUSTOMS", payload=b"w", cid=4))
    hub.settle()
    msg_id = ocu.ok(1).info["id"]
    hub.handle(jm, f.DirectedAck(ids=(msg_id,)))
    hub.handle(ocu, f.SendDirected(rid=2, op=OP, to="JM-CUSTOMS", payload=b"w", cid=4))
    hub.settle()
    assert ocu.ok(2).info == {"id": msg_id}
    assert [d.id for d in jm.directed()] == [msg_id]


def test_router_send_same_cid_in_another_operation_or_to_another_recipient_is_new(hub):
    """The idempotency key is (sender, op, to, cid): the same cid elsewhere is a new
    message with its own id, delivered."""
    ocu = _opened(hub)
    hub.create(ocu, "OP-B", MEMBERS)
    ocu.take()
    jm, tt = hub.connect("JM-CUSTOMS"), hub.connect("TT-POLICE")
    hub.settle()
    for rid, op, to in ((1, OP, "JM-CUSTOMS"), (2, "OP-B", "JM-CUSTOMS"), (3, OP, "TT-POLICE")):
        hub.handle(ocu, f.SendDirected(rid=rid, op=op, to=to, payload=b"%d" % rid, cid=777))
    hub.settle()
    assert len({ocu.ok(rid).info["id"] for rid in (1, 2, 3)}) == 3
    assert [d.payload for d in jm.directed()] == [b"1", b"2"]
    assert [d.payload for d in tt.directed()] == [b"3"]


@pytest.mark.parametrize(("sender", "op", "to", "code"), [
    ("OCU-BB", "OP-NONE", "JM-CUSTOMS", Code.UNKNOWN_OPERATION),
    ("DM-CUSTOMS", OP, "JM-CUSTOMS", Code.NOT_MEMBER),
    ("OCU-BB", OP, "DM-CUSTOMS", Code.NOT_MEMBER),
])
def test_router_send_outside_the_operation_is_refused(hub, sender, op, to, code):
    """send needs an existing operation with both sender and recipient members: else the
    code, with the rid, and nothing stored."""
    _opened(hub)
    peer = hub.connect(sender)
    hub.settle()
    hub.handle(peer, f.SendDirected(rid=5, op=op, to=to, payload=b"x"))
    assert peer.error(5).code == code
    assert hub.writes == []


def test_router_send_store_failure_is_answered_and_pushes_nothing(hub):
    """A send whose transaction fails: store_failure with the rid; the recipient gets
    nothing."""
    ocu = _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.handle(ocu, f.SendDirected(rid=5, op=OP, to="JM-CUSTOMS", payload=b"x", cid=1))
    hub.fail()
    assert ocu.error(5).code == Code.STORE
    assert jm.frames == []


def test_router_directed_read_failure_is_an_error_without_references(hub):
    """A failed ReadDirected at connect answers store_failure without rid, op or cid."""
    jm = hub.connect("JM-CUSTOMS")
    hub.commit()
    hub.fail_reads()
    [err] = jm.frames
    assert isinstance(err, f.Error)
    assert (err.code, err.rid, err.op, err.cid) == (Code.STORE, None, None, None)


def test_router_directed_read_is_cut_at_a_mebibyte(hub):
    """Pending directed messages come in frames whose payloads stay within 1 MiB."""
    ocu = _opened(hub)
    for rid in range(1, 6):
        hub.handle(ocu, f.SendDirected(rid=rid, op=OP, to="JM-CUSTOMS",
                                       payload=bytes([rid]) * 300_000))
    hub.settle()
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    assert [len(d.items) for d in jm.of(f.Directed)] == [3, 2]
    assert [d.payload[0] for d in jm.directed()] == [1, 2, 3, 4, 5]


# --- key packages ---------------------------------------------------------------------


def test_router_kp_put_stores_verified_packages_and_answers_available(hub):
    """kp_put stores the unit's signed packages after the transaction and answers the
    number of one-time packages held (a re-upload stores nothing twice)."""
    jm = hub.connect("JM-CUSTOMS")
    packages = (_package(hub, "JM-CUSTOMS", 1), _package(hub, "JM-CUSTOMS", 2),
                _package(hub, "JM-CUSTOMS", 3, last_resort=True))
    hub.handle(jm, f.PutKeyPackages(rid=1, packages=packages))
    [*_, put] = _commands(hub)
    assert isinstance(put, PutKeyPackages)
    assert [last for _id, _raw, last in put.packages] == [False, False, True]
    hub.settle()
    assert jm.ok(1).info == {"available": 2}
    hub.handle(jm, f.PutKeyPackages(rid=2, packages=packages[:1]))
    hub.settle()
    assert jm.ok(2).info == {"available": 2}


@pytest.mark.parametrize(("make", "code"), [
    (lambda hub: b"\x01not msgpack", Code.BAD_KEY_PACKAGE),
    (lambda hub: _package(hub, "JM-CUSTOMS", 2, owner="TT-POLICE"), Code.BAD_KEY_PACKAGE),
    (lambda hub: _package(hub, "TT-POLICE", 2, owner="JM-CUSTOMS"), Code.BAD_SIGNATURE),
], ids=["malformed", "another-units", "not-signed-by-uploader"])
def test_router_kp_put_bad_package_refuses_the_whole_frame(hub, make, code):
    """One bad package refuses the frame with its code and index (packages[i]: ...), and
    nothing is stored."""
    jm = hub.connect("JM-CUSTOMS")
    hub.settle()
    hub.handle(jm, f.PutKeyPackages(rid=1, packages=(_package(hub, "JM-CUSTOMS", 1),
                                                     make(hub))))
    err = jm.error(1)
    assert err.code == code
    assert err.message.startswith("packages[1]: ")
    assert hub.writes == []


def test_router_kp_put_without_a_credential_on_file_is_unknown_unit(hub):
    """kp_put from a unit with no credential on file (impossible after a handshake, which
    enrolls it): unknown_unit rather than a crash."""
    ghost = FakePeer("DM-CUSTOMS")
    hub.handle(ghost, f.PutKeyPackages(rid=1, packages=(_package(hub, "DM-CUSTOMS", 1),)))
    assert ghost.error(1).code == Code.UNKNOWN_UNIT


def test_router_kp_claim_by_the_admin_takes_one_package_per_unit(hub):
    """The operation's admin claims one package per distinct unit: one-time packages oldest
    first, then the last-resort one (kept); units with none are missing."""
    ocu = _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    one, last = _package(hub, "JM-CUSTOMS", 1), _package(hub, "JM-CUSTOMS", 9, last_resort=True)
    hub.handle(jm, f.PutKeyPackages(rid=1, packages=(one, last)))
    hub.settle()
    answers = []
    for rid in (2, 3, 4):
        hub.handle(ocu, f.ClaimKeyPackages(rid=rid, op=OP, cid=rid, units=(
            "JM-CUSTOMS", "TT-POLICE", "JM-CUSTOMS")))
        assert _commands(hub)[-1] == ClaimKeyPackages("OCU-BB", OP, (
            "JM-CUSTOMS", "TT-POLICE", "JM-CUSTOMS"), rid)
        assert ocu.frames == []
        hub.settle()
        answers.append(ocu.take()[0])
    assert answers == [
        f.Ok(rid=2, info={"packages": {"JM-CUSTOMS": one}, "missing": ["TT-POLICE"]}),
        f.Ok(rid=3, info={"packages": {"JM-CUSTOMS": last}, "missing": ["TT-POLICE"]}),
        f.Ok(rid=4, info={"packages": {"JM-CUSTOMS": last}, "missing": ["TT-POLICE"]}),
    ]


def _claim_refused(hub: Hub, peer: FakePeer, frame: f.ClaimKeyPackages, code: str) -> str:
    """``frame`` is refused with ``code`` and nothing is written; returns the message."""
    hub.settle()
    writes = len(hub.writes)
    hub.handle(peer, frame)
    err = peer.error(frame.rid)
    assert err.code == code, err
    assert len(hub.writes) == writes
    return err.message


def test_router_kp_claim_by_a_unit_without_role_ocu_is_not_admin(hub):
    """Before an operation exists only role 'ocu' may claim for it: another role gets
    not_admin, nothing claimed."""
    lo = hub.connect("INTERPOL-LO")
    message = _claim_refused(hub, lo, f.ClaimKeyPackages(rid=2, op="OP-NEW", cid=1,
                                                         units=("JM-CUSTOMS",)), Code.NOT_ADMIN)
    assert "'ocu'" in message
    assert "'liaison'" in message


def test_router_kp_claim_by_an_ocu_unit_that_is_not_the_admin_is_not_admin(hub):
    """Another OCU unit claiming for an existing operation gets not_admin naming the
    admin: role 'ocu' no longer suffices once the operation has an admin."""
    _opened(hub)
    other = hub.keys.authority.enroll(UnitSpec("OCU-CC", "CC", "customs", "ocu"), now=ISSUED)
    cc = hub.connect("OCU-CC", identity=other)
    message = _claim_refused(hub, cc, f.ClaimKeyPackages(rid=2, op=OP, cid=1,
                                                         units=("DM-CUSTOMS",)), Code.NOT_ADMIN)
    assert "'OCU-BB'" in message
    assert "'OCU-CC'" in message


def test_router_kp_claim_by_a_member_that_is_not_the_admin_is_not_admin(hub):
    """A member of the operation may not claim its fellow members' packages."""
    _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    _claim_refused(hub, jm, f.ClaimKeyPackages(rid=2, op=OP, cid=1, units=("TT-POLICE",)),
                   Code.NOT_ADMIN)


def test_router_kp_claim_without_an_operation_is_not_admin(hub):
    """A claim without ``op`` (an agent older than the field) is refused with not_admin
    and a message naming the field; the connection stays open."""
    ocu = hub.connect("OCU-BB")
    message = _claim_refused(hub, ocu, f.ClaimKeyPackages(rid=2, units=("JM-CUSTOMS",)),
                             Code.NOT_ADMIN)
    assert "'op'" in message


def test_router_kp_claim_of_the_admins_own_package_is_bad_statement(hub):
    """The admin is the one member no statement seals to: claiming its own package (before
    or after creating the operation) is refused."""
    ocu = hub.connect("OCU-BB")
    _claim_refused(hub, ocu, f.ClaimKeyPackages(rid=2, op=OP, cid=1,
                                                units=("JM-CUSTOMS", "OCU-BB")),
                   Code.BAD_STATEMENT)
    ocu = _opened(hub)
    _claim_refused(hub, ocu, f.ClaimKeyPackages(rid=3, op=OP, cid=2, units=("OCU-BB",)),
                   Code.BAD_STATEMENT)


def test_router_kp_claim_retried_with_its_cid_answers_the_first_claim(hub):
    """A claim with the (claimer, op, cid) of an earlier one answers that claim's packages
    and missing units, also when it names other units, and takes nothing; another cid
    takes the next package."""
    ocu = _opened(hub)
    jm = hub.connect("JM-CUSTOMS")
    made = tuple(_package(hub, "JM-CUSTOMS", n) for n in (1, 2, 3))
    hub.handle(jm, f.PutKeyPackages(rid=1, packages=made))
    hub.settle()
    first = {"packages": {"JM-CUSTOMS": made[0]}, "missing": ["TT-POLICE"]}
    for rid, units in ((2, ("JM-CUSTOMS", "TT-POLICE")), (3, ("JM-CUSTOMS", "TT-POLICE")),
                       (4, ("DM-CUSTOMS",))):
        hub.handle(ocu, f.ClaimKeyPackages(rid=rid, op=OP, cid=70, units=units))
        hub.settle()
        assert ocu.ok(rid).info == first
    hub.handle(ocu, f.ClaimKeyPackages(rid=5, op=OP, cid=71, units=("JM-CUSTOMS",)))
    hub.settle()
    assert ocu.ok(5).info == {"packages": {"JM-CUSTOMS": made[1]}, "missing": []}


def test_router_kp_claim_cid_is_scoped_to_the_operation(hub):
    """The same cid for another operation is another claim: it takes the next package."""
    ocu = hub.connect("OCU-BB")
    jm = hub.connect("JM-CUSTOMS")
    made = tuple(_package(hub, "JM-CUSTOMS", n) for n in (1, 2))
    hub.handle(jm, f.PutKeyPackages(rid=1, packages=made))
    hub.settle()
    for rid, op in ((2, "OP-X"), (3, "OP-Y")):
        hub.handle(ocu, f.ClaimKeyPackages(rid=rid, op=op, cid=5, units=("JM-CUSTOMS",)))
    hub.settle()
    assert [ocu.ok(r).info["packages"] for r in (2, 3)] == [
        {"JM-CUSTOMS": made[0]}, {"JM-CUSTOMS": made[1]}]


def test_router_kp_claim_retried_after_the_operation_was_created_answers_the_first(hub):
    """The admin-to-be claims for an operation not created yet, creates it, and a retry of
    the claim (a lost reply) still gets the first answer: it is the admin now."""
    ocu = hub.connect("OCU-BB")
    jm = hub.connect("JM-CUSTOMS")
    made = tuple(_package(hub, "JM-CUSTOMS", n) for n in (1, 2))
    hub.handle(jm, f.PutKeyPackages(rid=1, packages=made))
    hub.settle()
    claim = f.ClaimKeyPackages(rid=2, op=OP, cid=9, units=("JM-CUSTOMS",))
    hub.handle(ocu, claim)
    hub.settle()
    assert ocu.ok(2).info["packages"] == {"JM-CUSTOMS": made[0]}
    hub.create(ocu, OP, MEMBERS)
    ocu.take()
    hub.handle(ocu, claim)
    hub.settle()
    assert ocu.ok(2).info["packages"] == {"JM-CUSTOMS": made[0]}


@pytest.mark.parametrize("claim", [False, True], ids=["kp_put", "kp_claim"])
def test_router_key_package_store_failure_is_answered(hub, claim):
    """kp_put or kp_claim whose transaction fails: store_failure with the rid."""
    peer = hub.connect("OCU-BB")
    hub.settle()
    frame = (f.ClaimKeyPackages(rid=3, op=OP, cid=1, units=("JM-CUSTOMS",)) if claim
             else f.PutKeyPackages(rid=3, packages=(_package(hub, "OCU-BB", 1),)))
    hub.handle(peer, frame)
    hub.fail()
    assert peer.error(3).code == Code.STORE


def test_router_kp_claim_that_failed_to_store_takes_nothing(hub):
    """A claim whose transaction fails records nothing: its retry takes the first
    package, which is still there."""
    ocu = hub.connect("OCU-BB")
    jm = hub.connect("JM-CUSTOMS")
    one = _package(hub, "JM-CUSTOMS", 1)
    hub.handle(jm, f.PutKeyPackages(rid=1, packages=(one,)))
    hub.settle()
    claim = f.ClaimKeyPackages(rid=2, op=OP, cid=4, units=("JM-CUSTOMS",))
    hub.handle(ocu, claim)
    hub.fail()
    assert ocu.error(2).code == Code.STORE
    ocu.take()
    hub.handle(ocu, claim)
    hub.settle()
    assert ocu.ok(2).info == {"packages": {"JM-CUSTOMS": one}, "missing": []}


def test_router_hello_after_the_handshake_is_a_pump_bug(hub):
    """The session never passes a second hello on: the router treats one as its caller's
    bug (it raises) rather than answering the peer."""
    jm = hub.connect("JM-CUSTOMS")
    ident = hub.keys["JM-CUSTOMS"]
    with pytest.raises(UsageError):
        hub.handle(jm, f.Hello(credential=ident.signed.body,
                               credential_sig=ident.signed.signature, signature=b"s" * 64))


# --- disconnect -----------------------------------------------------------------------


def test_router_disconnected_peer_gets_nothing_more(hub):
    """After disconnected(): no deliveries, no directed pushes, and reads still in flight
    (its replay, its pending directed messages) queue nothing."""
    ocu = _opened(hub)
    hub.handle(ocu, f.SendDirected(rid=1, op=OP, to="JM-CUSTOMS", payload=b"old"))
    hub.settle()
    jm = _joined(hub, "JM-CUSTOMS")
    late = hub.connect("JM-CUSTOMS")
    hub.subscribe(late, OP)
    assert {type(r) for r in hub.reads} == {ReadDirected, ReadLog}
    hub.execute_reads()
    hub.disconnect(jm)
    hub.disconnect(late)
    late.take()
    hub.deliver_reads()
    hub.publish(ocu, OP, 1)
    hub.handle(ocu, f.SendDirected(rid=2, op=OP, to="JM-CUSTOMS", payload=b"new"))
    hub.settle()
    hub.writable(jm)
    assert jm.frames == []
    assert late.frames == []
    assert hub.router.by_unit.get("JM-CUSTOMS") is None


# --- property: delivery is exactly once and in order -----------------------------------

STEPS = st.lists(st.one_of(
    st.tuples(st.just("pub"), st.sampled_from(["OCU-BB", "JM-CUSTOMS"]),
              st.integers(1, 3), st.booleans()),
    st.tuples(st.sampled_from(["apply", "finish", "execute", "deliver", "late"])),
    st.tuples(st.sampled_from(["fill", "writable"]),
              st.sampled_from(["JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS"])),
), max_size=40)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS, late_after=st.integers(0, 12))
def test_router_property_subscribers_get_every_entry_once_in_order(
        tmp_path_factory, keys, steps, late_after):
    """Whatever the interleaving of publishes (retries included), transactions applied
    and finished, store reads run and answered, and queues filling and draining, each
    subscriber gets every entry it asked for once, in order, in frames of at most
    max_batch (a sender-filtered one only its senders' messages and the statements; one
    subscribing late only what follows its after)."""
    hub = Hub(tmp_path_factory.mktemp("prop") / "hub.db", keys,
              config=RouterConfig(max_batch=3, catchup_page=4))
    try:
        ocu = _opened(hub, ("JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS"))
        jm, tt = hub.connect("JM-CUSTOMS"), hub.connect("TT-POLICE")
        hub.subscribe(jm, OP)
        hub.subscribe(tt, OP, senders=("OCU-BB",))
        peers = {"OCU-BB": ocu, "JM-CUSTOMS": jm, "TT-POLICE": tt}
        dm: FakePeer | None = None
        cids = {"OCU-BB": 0, "JM-CUSTOMS": 0}
        for step in steps:
            match step:
                case ("pub", unit, n, retry):
                    start = cids[unit] - n + 1 if retry and cids[unit] >= n else cids[unit] + 1
                    hub.publish(peers[unit], OP, *range(start, start + n))
                    cids[unit] = max(cids[unit], start + n - 1)
                case ("apply",) if hub.applied is None and hub.writes:
                    hub.apply()
                case ("finish",) if hub.applied is not None:
                    hub.finish()
                case ("execute",):
                    hub.execute_reads()
                case ("deliver",):
                    hub.deliver_reads()
                case ("late",) if dm is None:
                    dm = hub.connect("DM-CUSTOMS")
                    after = min(late_after, hub.router.heads[OP])
                    hub.subscribe(dm, OP, after=after)
                    peers["DM-CUSTOMS"] = dm
                case ("fill", unit) if unit in peers:
                    peers[unit].fill()
                case ("writable", unit) if unit in peers:
                    hub.writable(peers[unit])
        hub.settle()
        for peer in peers.values():
            hub.writable(peer)
        hub.settle()

        log = hub.store.read_log(OP, 0, 10_000)
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
        assert jm.entries(OP) == log
        assert tt.entries(OP) == [e for e in log
                                  if e.kind == f.KIND_COMMIT or e.sender == "OCU-BB"]
        if dm is not None:
            sub_ok = next(x for x in dm.of(f.Ok) if "after" in x.info)
            assert dm.entries(OP) == log[sub_ok.info["after"]:]
        for peer in (jm, tt, dm):
            assert all(0 < len(d.items) <= 3 for d in (peer.delivers(OP) if peer else []))
    finally:
        hub.close()


# --- the harness itself ---------------------------------------------------------------


def test_router_harness_fake_peer_refuses_until_writable(hub):
    """The FakePeer keeps the Peer contract: once it refuses a delivery it refuses every
    one until writable, even if it has room again."""
    peer = FakePeer("JM-CUSTOMS", room=0)
    frame = f.Deliver(op=OP, items=(f.Delivery(1, "OCU-BB", 0, b"", b"x", 0),))
    assert not peer.offer(frame)
    peer.room = None
    assert not peer.offer(frame)
    hub.writable(peer)
    assert peer.offer(frame)
