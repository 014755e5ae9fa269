"""SecureAgent through a real hub on 127.0.0.1: what a peer's bad input does (rejected with
its own code, the agent goes on), what a bug does (the agent stops, visibly), and the
tasks and queues the agent owns."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from client.connection import TIMEOUT
from client.e2ee import message
from client.e2ee.channel import APPLICATION
from client.e2ee.suite import CLASSIC
from client.messages import content
from client.messages.catalog import SCHEMA_DIR
from client.messages.content import load_file
from client.secure import AgentStopped, SecureAgent
from hub.app import RunningHub
from protocol.errors import Code, CryptoError
from tests.conftest import STORES, Keys

pytestmark = pytest.mark.parametrize("store", STORES, indirect=True)

OP = "OP-SECURE"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE"]

Start = Callable[..., Any]


@pytest.fixture
async def start(hub: RunningHub, keys: Keys) -> AsyncIterator[Start]:
    """Starts SecureAgents on the hub (X25519 suite: fast); closes them at the end."""
    opened: list[SecureAgent] = []

    async def start(unit: str, **kw: Any) -> SecureAgent:
        agent = SecureAgent(hub.url, keys[unit], [keys.authority.public_key], suite=CLASSIC,
                            **kw)
        await agent.start()
        opened.append(agent)
        return agent

    yield start
    for agent in opened:
        await agent.close()


async def _crew(start: Start, keys: Keys, **kw: Any) -> dict[str, SecureAgent]:
    """The OCU and MEMBERS in OP, each holding epoch 0's keys."""
    crew = {u: await start(u, **kw) for u in ["OCU-BB", *MEMBERS]}
    await crew["OCU-BB"].create_operation(OP, "secure", [keys[u].signed for u in MEMBERS])
    for u in MEMBERS:
        await crew[u].wait_for_epoch(OP, 0)
    return crew


def _sealed_raw(agent: SecureAgent, inner: bytes) -> tuple[bytes, bytes]:
    """(header, ciphertext) with ``inner`` as the whole AEAD plaintext on ``agent``'s next
    generation: it decrypts for every member, but is not length || content || signature."""
    agent.member.encrypt(OP, b"sets up the send ratchet", now=time.time())
    epoch = agent.member.channels[OP].current
    assert epoch is not None
    assert epoch.send is not None
    send = epoch.send
    key, nonce, nxt = epoch.tree.ratchet_step(send.secret, send.generation)
    header = message.Header(APPLICATION, epoch.number, epoch.index[agent.unit],
                            send.generation, bytes(4)).to_bytes()
    send.secret, send.generation = nxt, send.generation + 1
    return header, AESGCM(key).encrypt(nonce, inner, header + OP.encode())


def _example(name: str, unit: str) -> dict[str, Any]:
    """The valid example ``name`` (schemas/examples/valid) as ``unit`` sends it in OP."""
    m = copy.deepcopy(load_file(SCHEMA_DIR / "examples" / "valid" / f"{name}.json"))
    m["operation"] = OP
    m["sender"] = {"unit": unit, "country": unit[:2], "agency": "customs"}
    return m  # type: ignore[no-any-return]


def _stopped_on(caplog: pytest.LogCaptureFixture, unit: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info
            and unit in r.getMessage()]


# --- a peer's bad input: rejected with its own code, and the agent goes on ----------------


async def test_secure_message_too_short_to_hold_a_signature_is_rejected(start, keys) -> None:
    """A member's message whose decrypted plaintext is shorter than its length field is
    rejected with decrypt_failed by every reader, which keeps reading."""
    crew = await _crew(start, keys)
    jm, tt, ocu = crew["JM-CUSTOMS"], crew["TT-POLICE"], crew["OCU-BB"]
    header, ct = _sealed_raw(jm, b"\x00\x01")
    await jm.conn.publish(OP, ct, header=header)
    await jm.publish(OP, b"after the short one")
    assert (await tt.next_message()).content == b"after the short one"
    assert (await ocu.next_message()).content == b"after the short one"
    assert [r.code for r in tt.rejected] == [Code.DECRYPT_FAILED]
    assert [r.code for r in ocu.rejected] == [Code.DECRYPT_FAILED]


@pytest.mark.parametrize("payload", [b"\xc1 not msgpack", msgpack.packb([1, 2]),
                                     msgpack.packb({"t": "welcome", "op": 7})],
                         ids=["not-msgpack", "not-a-map", "welcome-of-wrong-types"])
async def test_secure_malformed_directed_message_is_rejected_as_bad_statement(
        start, keys, payload: bytes) -> None:
    """A directed message that is not a well-formed map of a known kind is rejected with
    bad_statement; the receiver acknowledges it and keeps reading."""
    crew = await _crew(start, keys)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]
    await jm.conn.send_directed(OP, "TT-POLICE", payload)
    await jm.publish(OP, b"after the directed one")
    assert (await tt.next_message()).content == b"after the directed one"
    async with asyncio.timeout(TIMEOUT):
        while not tt.rejected:
            await asyncio.sleep(0.01)
    assert [(r.code, r.sender, r.seq) for r in tt.rejected] == [
        (Code.BAD_STATEMENT, "JM-CUSTOMS", None)]


# --- a bug: the agent stops, visibly, and records nothing as the peer's fault -------------


async def test_secure_bug_reading_a_message_stops_the_agent(start, keys, monkeypatch,
                                                          caplog) -> None:
    """An exception that no peer input explains (here: the content decoder is broken) is
    not recorded as a rejected message: the agent stops, logs the traceback, and the
    application's next call raises AgentStopped caused by it."""
    crew = await _crew(start, keys)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]

    def broken(data: bytes) -> Any:
        raise RuntimeError("a bug in the decoder")

    monkeypatch.setattr(content, "decode", broken)
    await jm.publish(OP, b"{}", content_type=content.MESSAGE)
    with pytest.raises(AgentStopped) as info:
        await tt.next_message()
    assert not tt.rejected
    assert isinstance(info.value.__cause__, RuntimeError)
    assert _stopped_on(caplog, "TT-POLICE")
    with pytest.raises(AgentStopped):
        await tt.publish(OP, b"after the bug")


async def test_secure_bug_applying_a_commit_stops_the_agent(start, keys, monkeypatch,
                                                          caplog) -> None:
    """A bug while applying a commit stops the agent instead of being recorded as a
    commit the admin sent wrong; the other members move on to the new epoch."""
    crew = await _crew(start, keys)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("a bug in on_commit")

    monkeypatch.setattr(jm.member, "on_commit", broken)
    epoch = await crew["OCU-BB"].rotate(OP)
    await tt.wait_for_epoch(OP, epoch)
    with pytest.raises(AgentStopped) as info:
        await jm.wait_for_epoch(OP, epoch)
    assert not jm.rejected
    assert isinstance(info.value.__cause__, RuntimeError)
    assert _stopped_on(caplog, "JM-CUSTOMS")


async def test_secure_bug_handling_a_welcome_stops_the_agent(start, keys, monkeypatch,
                                                           caplog) -> None:
    """A bug while handling a directed message (a welcome) stops the agent instead of
    being recorded as the sender's fault."""
    crew = await _crew(start, keys)
    dm = await start("DM-CUSTOMS")

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("a bug in on_welcome")

    monkeypatch.setattr(dm.member, "on_welcome", broken)
    epoch = await crew["OCU-BB"].change(OP, add=[keys["DM-CUSTOMS"].signed])
    with pytest.raises(AgentStopped) as info:
        await dm.wait_for_epoch(OP, epoch)
    assert not dm.rejected
    assert isinstance(info.value.__cause__, RuntimeError)
    assert _stopped_on(caplog, "DM-CUSTOMS")


# --- tasks and queues ------------------------------------------------------------------


def _library_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks whose coroutine belongs to the agent library's I/O classes."""
    owners = ("SecureAgent.", "SecureAdmin.", "AgentConnection.")
    return [t for t in asyncio.all_tasks() if not t.done()
            and getattr(t.get_coro(), "__qualname__", "").startswith(owners)]


async def test_secure_close_stops_every_task_it_started(start, keys) -> None:
    """close() cancels and awaits every task the agent started, a key rotation in
    progress included: none is left running once every agent is closed."""
    crew = await _crew(start, keys, rotate_messages=1)
    ocu = crew["OCU-BB"]
    await ocu.publish(OP, b"this one makes the OCU rotate")
    for agent in crew.values():
        await agent.close()
    assert _library_tasks() == []


async def test_secure_unread_messages_wait_at_the_bound_then_arrive_in_order(start,
                                                                            keys) -> None:
    """An application that does not read holds at most ``max_unread`` decrypted messages;
    the rest wait (the reader stops, backpressure reaches the socket) and arrive in
    order, none lost, once it reads."""
    crew = await _crew(start, keys, max_unread=3)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]
    sent = [b"unread %d" % i for i in range(20)]
    for payload in sent:
        await jm.publish(OP, payload)
    async with asyncio.timeout(TIMEOUT):
        while tt.unread < 3:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # time enough to take more, if it would
    assert tt.unread == 3
    assert [(await tt.next_message()).content for _ in sent] == sent
    assert not tt.rejected


# --- schema messages ----------------------------------------------------------------------


async def test_secure_ledger_of_a_unit_that_joins_late_is_incomplete_after_an_early_send(
        start, keys) -> None:
    """A unit whose send failed before it joined (no keys yet) has used its ledger; once it
    joins at a later epoch it still may refer to a message from before it joined."""
    crew = await _crew(start, keys)
    jm, tt, ocu = crew["JM-CUSTOMS"], crew["TT-POLICE"], crew["OCU-BB"]
    rfi = _example("rfi-firearm-serial", "JM-CUSTOMS")
    await jm.send(OP, rfi)
    assert (await tt.next_message()).body == rfi
    dm = await start("DM-CUSTOMS")
    with pytest.raises(CryptoError) as info:
        await dm.send(OP, _example("alert-auto-sears", "DM-CUSTOMS"))
    assert info.value.code == Code.UNKNOWN_EPOCH
    await dm.wait_for_epoch(OP, await ocu.change(OP, add=[keys["DM-CUSTOMS"].signed]))
    answer = {**_example("rfi-response-multiple-purchases", "DM-CUSTOMS"),
              "refers_to": rfi["id"]}
    seq = await dm.send(OP, answer)
    got = await jm.next_message()
    assert (got.seq, got.body) == (seq, answer)


async def test_secure_ledger_of_a_unit_added_back_accepts_references_to_what_it_missed(
        start, keys) -> None:
    """A unit removed and added back did not read what was sent while it was out: an
    answer referring to a request of that time is accepted, not rejected as a reference
    to a message the operation never carried."""
    crew = await _crew(start, keys)
    jm, tt, ocu = crew["JM-CUSTOMS"], crew["TT-POLICE"], crew["OCU-BB"]
    await jm.wait_for_epoch(OP, await ocu.change(OP, remove=["TT-POLICE"]))
    rfi = _example("rfi-firearm-serial", "JM-CUSTOMS")
    await jm.send(OP, rfi)
    assert (await ocu.next_message()).body == rfi
    epoch = await ocu.change(OP, add=[keys["TT-POLICE"].signed])
    await tt.wait_for_epoch(OP, epoch)
    answer = {**_example("rfi-response-multiple-purchases", "OCU-BB"), "refers_to": rfi["id"],
              "sender": {"unit": "OCU-BB", "country": "BB", "agency": "customs"}}
    await ocu.send(OP, answer)
    assert (await tt.next_message()).body == answer
    assert tt.rejected == []


async def test_secure_rejoin_answer_and_rotation_at_once_both_take_effect(start, keys) -> None:
    """A rotation and a rejoin of the same operation started together are sent one after
    the other: both commits are accepted (two new epochs) and the rejoining member gets its
    welcome, instead of one being refused for a stale epoch."""
    crew = await _crew(start, keys)
    ocu, jm = crew["OCU-BB"], crew["JM-CUSTOMS"]
    epochs = await asyncio.gather(ocu.rotate(OP), ocu.change(OP, rejoin=["JM-CUSTOMS"]))
    assert sorted(epochs) == [1, 2]
    await jm.wait_for_epoch(OP, 2)
    assert jm.epoch(OP) == 2


async def test_secure_rejoin_asked_by_a_non_member_is_refused(start, keys) -> None:
    """A request for keys from a unit that is not a member (removed while its request was
    on its way) starts no new epoch: it is refused with not_member."""
    crew = await _crew(start, keys)
    ocu = crew["OCU-BB"]
    assert ocu._admin is not None
    with pytest.raises(CryptoError) as info:
        await ocu._admin.answer_rejoin(OP, "DM-CUSTOMS")
    assert info.value.code == Code.NOT_MEMBER
    assert ocu.epoch(OP) == 0
