"""protocol.agent_session.AgentSession, driven with bytes only (and paired with a
ServerSession in memory for the handshake): no sockets, no event loop."""

from __future__ import annotations

import pytest

from client.identity import Authority, UnitIdentity, UnitSpec
from protocol import agent_session as s
from protocol import codec
from protocol import frames as f
from protocol.credentials import AuthorityRing
from protocol.errors import AuthError, Code, ProtocolError, UsageError
from protocol.session import Authenticated, ServerSession

NOW = 1_700_000_000


@pytest.fixture
def authority() -> Authority:
    return Authority.generate()


@pytest.fixture
def unit(authority: Authority) -> UnitIdentity:
    return authority.enroll(UnitSpec("JM-CUSTOMS", "JM", "customs"), now=NOW - 10)


def _agent(unit: UnitIdentity) -> s.AgentSession:
    return s.AgentSession(credential=unit.signed, answer=unit.answer)


def _server(authority: Authority, unit: UnitIdentity) -> ServerSession:
    return ServerSession(hub_id="hub-test", ring=AuthorityRing([authority.public_key]),
                         directory={unit.unit: unit.signed}.get, now=lambda: NOW,
                         token_bytes=lambda n: b"\x01" * n)


def _connect(agent: s.AgentSession, server: ServerSession) -> list[s.Event]:
    """Pump bytes between the two sessions until neither has anything to say."""
    agent.connection_made()
    events: list[s.Event] = []
    while True:
        to_agent, to_server = server.data_to_send(), agent.data_to_send()
        if not to_agent and not to_server:
            return events
        for data in to_agent:
            events += agent.receive(data)
        for data in to_server:
            server.receive(data)


def _ready(agent: s.AgentSession, **limits: int) -> list[s.Event]:
    """Through the handshake with a hub that announces ``limits``; returns the events."""
    agent.connection_made()
    agent.receive(codec.encode(f.Challenge(nonce=b"n" * 32, hub="hub")))
    agent.data_to_send()
    return agent.receive(codec.encode(f.Ready(unit="JM-CUSTOMS", session="x",
                                              limits=limits)))


def _sent(agent: s.AgentSession) -> list[f.Frame]:
    return [codec.decode(d) for d in agent.data_to_send()]


def test_agent_session_handshake_with_a_server_session(authority, unit):
    """Paired with a ServerSession, the agent answers the challenge and ends Connected."""
    agent, server = _agent(unit), _server(authority, unit)
    events = _connect(agent, server)
    assert [type(e) for e in events] == [s.Connected]
    assert agent.state is s.State.READY
    assert server.unit == "JM-CUSTOMS"


def test_agent_session_refused_handshake_raises_auth_error(unit):
    """An error frame instead of ready raises AuthError with the hub's code."""
    agent = _agent(unit)
    agent.connection_made()
    agent.receive(codec.encode(f.Challenge(nonce=b"n" * 32, hub="hub")))
    with pytest.raises(AuthError) as info:
        agent.receive(codec.encode(f.Error(code=Code.UNKNOWN_UNIT, message="no")))
    assert info.value.code == Code.UNKNOWN_UNIT


def test_agent_session_publishes_of_a_tick_share_one_frame(unit):
    """Publishes queued before data_to_send go out in one pub frame, in order."""
    agent = _agent(unit)
    _ready(agent)
    for cid in (1, 2, 3):
        agent.publish("OP", cid, b"m%d" % cid)
    [frame] = _sent(agent)
    assert isinstance(frame, f.Publish)
    assert [i.cid for i in frame.items] == [1, 2, 3]


def test_agent_session_resends_unacked_publishes_after_reconnect(unit):
    """After a reconnect every unacknowledged publish is sent again with its cid."""
    agent = _agent(unit)
    _ready(agent)
    agent.publish("OP", 1, b"a")
    agent.publish("OP", 2, b"b")
    _sent(agent)
    events = agent.receive(codec.encode(f.Acks(items=(("OP", 1, 7),))))
    assert events == [s.PublishAcked(("OP", 1), 7)]
    agent.connection_lost()
    _ready(agent)
    [frame] = _sent(agent)
    assert isinstance(frame, f.Publish)
    assert [(i.cid, i.payload) for i in frame.items] == [(2, b"b")]


def test_agent_session_resubscribes_from_its_positions(unit):
    """After a reconnect the agent subscribes again after the last seq it handed out."""
    agent = _agent(unit)
    _ready(agent)
    rid = agent.request(lambda r: f.Subscribe(rid=r, op="OP", after=0))
    _sent(agent)
    agent.receive(codec.encode(f.Ok(rid=rid, info={"op": "OP", "after": 0, "head": 0})))
    items = tuple(f.Delivery(seq, "OCU", 0, b"", b"x", 1) for seq in (1, 2, 3))
    delivered = agent.receive(codec.encode(f.Deliver(op="OP", items=items)))
    assert [e.seq for e in delivered if isinstance(e, s.Delivered)] == [1, 2, 3]
    agent.connection_lost()
    _ready(agent)
    [frame] = _sent(agent)
    assert isinstance(frame, f.Subscribe)
    assert (frame.op, frame.after) == ("OP", 3)


def test_agent_session_skips_entries_already_handed_out(unit):
    """Entries at or below the position (a replay overlapping what was seen) are dropped."""
    agent = _agent(unit)
    _ready(agent)
    agent.positions["OP"] = 2
    items = tuple(f.Delivery(seq, "OCU", 0, b"", b"x", 1) for seq in (1, 2, 3))
    events = agent.receive(codec.encode(f.Deliver(op="OP", items=items)))
    assert [e.seq for e in events if isinstance(e, s.Delivered)] == [3]


def test_agent_session_gap_is_a_protocol_error(unit):
    """A delivery that skips a seq is the hub's fault: ProtocolError, nothing handed out."""
    agent = _agent(unit)
    _ready(agent)
    agent.positions["OP"] = 1
    with pytest.raises(ProtocolError, match="gap"):
        agent.receive(codec.encode(f.Deliver(op="OP", items=(
            f.Delivery(3, "OCU", 0, b"", b"x", 1),))))
    assert agent.positions["OP"] == 1


def test_agent_session_store_failure_asks_for_a_retry(unit):
    """store_failure on a publish keeps it unacked and asks for a retry with the same cid."""
    agent = _agent(unit)
    _ready(agent)
    key = agent.publish("OP", 5, b"x")
    _sent(agent)
    events = agent.receive(codec.encode(f.Error(code=Code.STORE, message="disk", op="OP",
                                                cid=5)))
    assert events == [s.PublishRetry(key)]
    agent.retry(key)
    [frame] = _sent(agent)
    assert isinstance(frame, f.Publish)
    assert frame.items[0].cid == 5


def test_agent_session_refused_publish_fails_for_good(unit):
    """not_member on a publish fails it and forgets it (not re-sent after reconnect)."""
    agent = _agent(unit)
    _ready(agent)
    key = agent.publish("OP", 5, b"x")
    _sent(agent)
    [event] = agent.receive(codec.encode(f.Error(code=Code.NOT_MEMBER, message="no",
                                                 op="OP", cid=5)))
    assert isinstance(event, s.PublishFailed)
    assert (event.key, event.error.code) == (key, Code.NOT_MEMBER)
    assert agent.unacked == 0


def test_agent_session_pending_subscribe_is_answered_on_resume(unit):
    """A subscribe whose answer was lost with the connection is answered by the resume."""
    agent = _agent(unit)
    _ready(agent)
    agent.positions["OP"] = 4
    rid = agent.request(lambda r: f.Subscribe(rid=r, op="OP", after=None))
    agent.connection_lost()
    agent.connection_made()
    agent.receive(codec.encode(f.Challenge(nonce=b"n" * 32, hub="hub")))
    events = agent.receive(codec.encode(f.Ready(unit="JM-CUSTOMS", session="y", limits={})))
    assert s.Replied(rid, {"op": "OP", "after": 4, "resumed": True}) in events


def test_agent_session_acks_only_moved_positions(unit):
    """Cumulative acks go out once per moved position, not again until it moves."""
    agent = _agent(unit)
    _ready(agent)
    agent.positions.update({"A": 3, "B": 0})
    agent.send_acks()
    assert [(a.op, a.seq) for a in _sent(agent) if isinstance(a, f.Ack)] == [("A", 3)]
    agent.send_acks()
    assert _sent(agent) == []


def test_agent_session_directed_duplicates_are_dropped(unit):
    """A directed message seen before (re-pushed at reconnect) is not handed out twice."""
    agent = _agent(unit)
    _ready(agent)
    item = f.DirectedItem(id=9, op="OP", sender="OCU", payload=b"w", at_ms=1)
    frame = codec.encode(f.Directed(items=(item,)))
    assert agent.receive(frame) == [s.DirectedReceived(item)]
    assert agent.receive(frame) == []


def test_agent_session_server_authenticates_the_pair(authority, unit):
    """The server side of the in-memory pair sees the agent's credential."""
    agent, server = _agent(unit), _server(authority, unit)
    agent.connection_made()
    events = []
    for _ in range(3):
        for data in server.data_to_send():
            agent.receive(data)
        for data in agent.data_to_send():
            events += server.receive(data)
    [auth] = events
    assert isinstance(auth, Authenticated)
    assert auth.credential.unit == "JM-CUSTOMS"


def test_agent_session_adopts_smaller_hub_limits(unit):
    """Publishes are batched by the hub's max_batch when it is smaller than the agent's."""
    agent = _agent(unit)
    agent.connection_made()
    agent.receive(codec.encode(f.Challenge(nonce=b"n" * 32, hub="hub")))
    agent.receive(codec.encode(f.Ready(unit="JM-CUSTOMS", session="x",
                                       limits={"max_batch": 2})))
    _sent(agent)
    for cid in range(5):
        agent.publish("OP", cid, b"m")
    frames = _sent(agent)
    assert [len(fr.items) for fr in frames if isinstance(fr, f.Publish)] == [2, 2, 1]


def test_agent_session_refuses_another_protocol_version(unit):
    """A challenge announcing another protocol version is fatal (AuthError), not retried."""
    agent = _agent(unit)
    agent.connection_made()
    with pytest.raises(AuthError) as info:
        agent.receive(codec.encode(f.Challenge(nonce=b"n" * 32, hub="hub", version=2)))
    assert info.value.code == Code.UNSUPPORTED_VERSION
    assert agent.data_to_send() == []  # no hello was sent


# --- the hub's announced limits ----------------------------------------------------------


@pytest.mark.parametrize(("payload", "header"), [(bytes(65), b""), (b"x", bytes(17))],
                         ids=["payload", "header"])
def test_agent_session_publish_over_the_announced_limits_raises_usage_error(
        unit, payload: bytes, header: bytes) -> None:
    """A publish over the max_payload or max_header the hub announced raises UsageError
    (limit_exceeded) naming the sizes; nothing is queued or sent."""
    agent = _agent(unit)
    _ready(agent, max_payload=64, max_header=16)
    with pytest.raises(UsageError, match=f"{len(payload)}-byte payload with a "
                                         f"{len(header)}-byte header") as info:
        agent.publish("OP", 1, payload, header)
    assert info.value.code == Code.LIMIT
    assert "max_payload 64, max_header 16" in info.value.message
    assert agent.unacked == 0
    assert _sent(agent) == []


def test_agent_session_publishes_are_cut_into_frames_within_max_frame(unit) -> None:
    """Publishes of one tick go out in as many pub frames as keep each within the
    max_frame the hub announced (which decodes every one of them), in order."""
    agent = _agent(unit)
    _ready(agent, max_frame=4096)
    for cid in range(10):
        agent.publish("OP", cid, bytes(1000))
    data = agent.data_to_send()
    hub = codec.Limits(max_frame=4096)
    frames = [codec.decode(d, hub) for d in data]
    assert all(len(d) <= 4096 for d in data)
    assert [i.cid for fr in frames if isinstance(fr, f.Publish) for i in fr.items] == list(
        range(10))


def test_agent_session_publish_that_cannot_fit_a_frame_raises_usage_error(unit) -> None:
    """A publish within max_payload that still cannot fit the announced max_frame with its
    framing is refused (the hub would close the connection on every attempt)."""
    agent = _agent(unit)
    _ready(agent, max_frame=1024, max_payload=1024)
    with pytest.raises(UsageError, match="max_frame 1024") as info:
        agent.publish("OP", 1, bytes(1024))
    assert info.value.code == Code.LIMIT


def test_agent_session_unacked_publish_over_lowered_limits_fails_on_reconnect(unit) -> None:
    """A publish queued under the limits of one connection, over the lower ones the hub
    announces at the next, fails (PublishFailed, limit_exceeded) instead of being re-sent
    after every reconnect; the others are re-sent."""
    agent = _agent(unit)
    _ready(agent)
    big = agent.publish("OP", 1, bytes(100))
    agent.publish("OP", 2, bytes(10))
    _sent(agent)
    agent.connection_lost()
    events = _ready(agent, max_payload=50)
    [failed] = [e for e in events if isinstance(e, s.PublishFailed)]
    assert failed.key == big
    assert isinstance(failed.error, UsageError)
    assert failed.error.code == Code.LIMIT
    [frame] = _sent(agent)
    assert isinstance(frame, f.Publish)
    assert [i.cid for i in frame.items] == [2]


def test_agent_session_directed_acks_are_cut_by_max_batch(unit) -> None:
    """Acknowledging more directed messages than the hub's max_batch sends several dack
    frames, each within it."""
    agent = _agent(unit)
    _ready(agent, max_batch=4)
    agent.ack_directed(tuple(range(1, 11)))
    frames = [codec.decode(d, codec.Limits(max_batch=4)) for d in agent.data_to_send()]
    assert [fr.ids for fr in frames if isinstance(fr, f.DirectedAck)] == [
        (1, 2, 3, 4), (5, 6, 7, 8), (9, 10)]


# --- directed messages pushed again ------------------------------------------------------


def test_agent_session_directed_acked_then_pushed_again_is_acked_again(unit) -> None:
    """A directed message the application acknowledged, pushed again after a reconnect
    (the dack was lost with the connection), is acknowledged again, not handed out."""
    agent = _agent(unit)
    _ready(agent)
    item = f.DirectedItem(id=9, op="OP", sender="OCU", payload=b"w", at_ms=1)
    frame = codec.encode(f.Directed(items=(item,)))
    assert agent.receive(frame) == [s.DirectedReceived(item)]
    agent.connection_lost()  # before the application acknowledged it
    agent.ack_directed((9,))
    _ready(agent)
    assert _sent(agent) == []
    assert agent.receive(frame) == []
    assert _sent(agent) == [f.DirectedAck(ids=(9,))]


def test_agent_session_directed_pushed_again_before_its_ack_is_not_acked(unit) -> None:
    """A directed message pushed again while the application still handles it is neither
    handed out again nor acknowledged for it: the application's own ack follows."""
    agent = _agent(unit)
    _ready(agent)
    item = f.DirectedItem(id=9, op="OP", sender="OCU", payload=b"w", at_ms=1)
    frame = codec.encode(f.Directed(items=(item,)))
    agent.receive(frame)
    agent.connection_lost()
    _ready(agent)
    assert agent.receive(frame) == []
    assert _sent(agent) == []
    agent.ack_directed((9,))
    assert _sent(agent) == [f.DirectedAck(ids=(9,))]
