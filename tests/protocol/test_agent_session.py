"""protocol.agent_session.AgentSession, driven with bytes only (and paired with a
ServerSession in memory for the handshake): no sockets, no event loop."""

from __future__ import annotations

import pytest

from client.identity import Authority, UnitIdentity, UnitSpec
from protocol import agent_session as s
from protocol import codec
from protocol import frames as f
from protocol.credentials import AuthorityRing
from protocol.errors import AuthError, Code, ProtocolError
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


def _ready(agent: s.AgentSession) -> None:
    agent.connection_made()
    agent.receive(codec.encode(f.Challenge(nonce=b"n" * 32, hub="hub")))
    agent.data_to_send()
    agent.receive(codec.encode(f.Ready(unit="JM-CUSTOMS", session="x", limits={})))


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
