"""End-to-end bad input against a real hub on 127.0.0.1: each case gets a stable error
code (and close code where the connection ends), and the hub keeps serving everyone else.

Every test starts two well-behaved agents on their own operation *before* the bad
input (``Bystanders``) and proves afterwards that both can still publish and receive.
Raw WebSocket clients speak the wire protocol through ``protocol.codec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client.connection import TIMEOUT, AgentConnection, Delivered, handshake
from client.identity import Authority, UnitIdentity, UnitSpec
from hub.app import RunningHub
from protocol import codec
from protocol import frames as f
from protocol.codec import Limits
from protocol.errors import AuthError, CloseCode, Code, RequestError
from protocol.statements import Statement, roster_hash, sign
from tests.conftest import Keys, create_operation

OP = "OP-TIDE"
CONTROL = "OP-CONTROL"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE"]
#: Enrolled nowhere, but its credential comes from the hub's trusted authority.
STRANGER = UnitSpec("GY-POLICE", "GY", "police")

Connect = Callable[[str], Awaitable[AgentConnection]]
_marks = itertools.count(1)


# --- helpers ------------------------------------------------------------------------------


@dataclass
class Bystanders:
    """Two well-behaved agents subscribed to their own operation, unaware of the bad input."""

    ocu: AgentConnection
    member: AgentConnection

    @classmethod
    async def start(cls, connect: Connect, keys: Keys) -> Bystanders:
        ocu = await connect("OCU-BB")
        await create_operation(ocu, keys, CONTROL, ["DM-CUSTOMS"])
        member = await connect("DM-CUSTOMS")
        for conn in (ocu, member):
            await conn.subscribe(CONTROL, after=1)  # skip the creating commit
        return cls(ocu, member)

    async def assert_served(self) -> None:
        """Each agent publishes once; both receive both messages, in publish order."""
        for sender in (self.member, self.ocu):
            payload = f"still served {next(_marks)}".encode()
            async with asyncio.timeout(TIMEOUT):
                seq = await sender.publish(CONTROL, payload)
            for receiver in (self.ocu, self.member):
                got = await receiver.next_delivery()
                assert isinstance(got, Delivered)
                assert (got.seq, got.sender, got.payload) == (seq, sender.unit, payload)


@pytest.fixture
async def bystanders(agents: Connect, keys: Keys) -> Bystanders:
    return await Bystanders.start(agents, keys)


@contextlib.asynccontextmanager
async def custom_hub(keys: Keys, db: Path, **config: Any) -> AsyncIterator[
        tuple[RunningHub, Connect]]:
    """A hub with its own config and a ``connect`` whose agents close before the hub stops."""
    running = RunningHub(keys.config(db, **config))
    running.hub.preload([u.signed for u in keys.units.values()])
    async with running, contextlib.AsyncExitStack() as stack:

        async def connect(unit: str) -> AgentConnection:
            return await stack.enter_async_context(AgentConnection(running.url, keys[unit]))

        yield running, connect


@contextlib.asynccontextmanager
async def raw_socket(url: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A bare WebSocket to the hub: no handshake, no reconnect, closed on exit."""
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(TIMEOUT):
            ws = await http.ws_connect(url, compress=0)
        try:
            yield ws
        finally:
            async with asyncio.timeout(TIMEOUT):
                await ws.close()


async def receive_frame(ws: aiohttp.ClientWebSocketResponse) -> f.Frame:
    async with asyncio.timeout(TIMEOUT):
        msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.BINARY, f"expected a frame, got {msg.type!r} {msg.data!r}"
    return codec.decode(msg.data)


async def receive_close(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    """The close code and reason the hub sent (skipping any frames still in flight)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.BINARY:
                break
    assert msg.type is aiohttp.WSMsgType.CLOSE, f"expected a close, got {msg.type!r}"
    return msg.data, msg.extra


async def expect_refusal(ws: aiohttp.ClientWebSocketResponse) -> tuple[f.Error, int, str]:
    """The hub's last word: one error frame, then the close code and reason."""
    error = await receive_frame(ws)
    assert isinstance(error, f.Error), f"expected an error frame, got {error!r}"
    code, reason = await receive_close(ws)
    return error, code, reason


async def send_after_handshake(url: str, keys: Keys, data: bytes | str) -> tuple[f.Error, int, str]:
    """Authenticate as JM-CUSTOMS on a raw socket, send ``data``, return the refusal."""
    async with raw_socket(url) as ws:
        ready = await handshake(ws, keys["JM-CUSTOMS"])
        assert ready.unit == "JM-CUSTOMS"
        if isinstance(data, str):
            await ws.send_str(data)
        else:
            await ws.send_bytes(data)
        return await expect_refusal(ws)


async def assert_connect_refused(url: str, identity: UnitIdentity, code: str) -> AuthError:
    """An agent's connect raises AuthError(code); on the wire the hub closes with 4401."""
    conn = AgentConnection(url, identity, reconnect=False)
    try:
        with pytest.raises(AuthError) as info:
            await conn.connect()
    finally:
        await conn.close()
    assert info.value.code == code
    async with raw_socket(url) as ws:
        with pytest.raises(AuthError) as raw:
            await handshake(ws, identity)
        assert raw.value.code == code
        assert await receive_close(ws) == (CloseCode.AUTH, code)
    return info.value


async def get_json(keys: Keys, url: str) -> tuple[int, Any]:
    """GET an API URL signed by OCU-BB, a registrar (it sees every operation and the whole
    directory: docs/protocol.md 15)."""
    headers = keys["OCU-BB"].sign_request("GET", url[url.index("/v1/"):], at=int(time.time()))
    async with (aiohttp.ClientSession() as http, asyncio.timeout(TIMEOUT),
                http.get(url, headers=headers) as resp):
        return resp.status, await resp.json()


async def get_operation(hub: RunningHub, keys: Keys, op: str) -> dict[str, Any]:
    status, body = await get_json(keys, f"{hub.http}/v1/operations/{op}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


# --- handshake ------------------------------------------------------------------------------


async def test_handshake_refuses_unknown_unit(hub, keys, bystanders):
    """A unit with a trusted credential but not enrolled is refused with unknown_unit."""
    stranger = keys.authority.enroll(STRANGER, now=keys.now - 60)
    err = await assert_connect_refused(hub.url, stranger, Code.UNKNOWN_UNIT)
    assert "GY-POLICE" in err.message
    status, _ = await get_json(keys, f"{hub.http}/v1/directory/GY-POLICE")
    assert status == 404  # a refused handshake enrolls nothing
    await bystanders.assert_served()


async def test_handshake_refuses_untrusted_authority(hub, keys, bystanders):
    """A credential for an enrolled unit signed by another authority gets unknown_authority."""
    impostor = Authority.generate().enroll(
        UnitSpec("JM-CUSTOMS", "JM", "customs"), now=keys.now - 30)
    await assert_connect_refused(hub.url, impostor, Code.UNKNOWN_AUTHORITY)
    _, entry = await get_json(keys, f"{hub.http}/v1/directory/JM-CUSTOMS")
    assert entry["fingerprint"] == keys["JM-CUSTOMS"].fingerprint
    await bystanders.assert_served()


async def test_handshake_refuses_bad_challenge_signature(hub, keys, bystanders):
    """A hello whose challenge signature is made with the wrong key gets bad_signature, 4401."""
    ident = keys["JM-CUSTOMS"]
    async with raw_socket(hub.url) as ws:
        challenge = await receive_frame(ws)
        assert isinstance(challenge, f.Challenge)
        wrong = UnitIdentity(Ed25519PrivateKey.generate(), ident.signed)
        await ws.send_bytes(codec.encode(f.Hello(
            credential=ident.signed.body, credential_sig=ident.signed.signature,
            signature=wrong.answer(challenge.nonce, challenge.hub))))
        error, close, reason = await expect_refusal(ws)
    assert error.code == Code.BAD_SIGNATURE
    assert "JM-CUSTOMS" in error.message
    assert (close, reason) == (CloseCode.AUTH, Code.BAD_SIGNATURE)
    await bystanders.assert_served()


async def test_handshake_refuses_expired_credential(hub, keys, bystanders):
    """A trusted credential whose validity ended is refused with expired_credential."""
    expired = keys.authority.enroll(UnitSpec("TT-POLICE", "TT", "police"),
                                    now=keys.now - 7200, validity=3600)
    err = await assert_connect_refused(hub.url, expired, Code.EXPIRED_CREDENTIAL)
    assert "expired" in err.message
    await bystanders.assert_served()


# --- requests that are refused, connection kept --------------------------------------------


async def test_publish_by_non_member_is_refused(hub, agents, keys, bystanders):
    """A unit publishing to an operation it is not in gets not_member; nothing is stored."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, ["JM-CUSTOMS"])
    outsider = await agents("TT-POLICE")
    with pytest.raises(RequestError) as info:
        async with asyncio.timeout(TIMEOUT):
            await outsider.publish(OP, b"not for you")
    assert info.value.code == Code.NOT_MEMBER
    assert f"unit 'TT-POLICE' is not a member of operation {OP!r}" in info.value.message
    assert (await get_operation(hub, keys, OP))["head"] == 1  # only the creating commit
    assert (outsider.connected, outsider.connects) == (True, 1)  # same socket, no reconnect
    await bystanders.assert_served()


async def test_subscribe_by_non_member_is_refused(hub, agents, keys, bystanders):
    """A unit subscribing to an operation it is not in gets not_member and no subscription."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, ["JM-CUSTOMS"])
    outsider = await agents("TT-POLICE")
    with pytest.raises(RequestError) as info:
        await outsider.subscribe(OP, after=0)
    assert info.value.code == Code.NOT_MEMBER
    assert (await get_operation(hub, keys, OP))["subscribers"] == 0
    assert (outsider.connected, outsider.connects) == (True, 1)
    await bystanders.assert_served()


async def test_publish_to_unknown_operation_is_refused(hub, agents, keys, bystanders):
    """Publishing to an operation the hub does not have gets unknown_operation."""
    conn = await agents("JM-CUSTOMS")
    with pytest.raises(RequestError) as info:
        async with asyncio.timeout(TIMEOUT):
            await conn.publish("OP-NOWHERE", b"hello?")
    assert info.value.code == Code.UNKNOWN_OPERATION
    assert "OP-NOWHERE" in info.value.message
    status, body = await get_json(keys, f"{hub.http}/v1/operations/OP-NOWHERE")
    assert (status, body["error"]["code"]) == (404, Code.UNKNOWN_OPERATION)
    assert (conn.connected, conn.connects) == (True, 1)
    await bystanders.assert_served()


# --- frames that end the connection -----------------------------------------------------------


async def test_frame_over_max_frame_closes_with_1009(keys, tmp_path):
    """A frame over Limits.max_frame (under twice it) gets frame_too_large and close 1009."""
    limit = 64 * 1024
    async with custom_hub(keys, tmp_path / "small.db", limits=Limits(max_frame=limit)) as (
            small, connect):
        bystanders = await Bystanders.start(connect, keys)
        big = codec.encode(f.Publish(items=(f.PublishItem(
            op=CONTROL, cid=1, header=b"", payload=bytes(limit + limit // 2)),)))
        assert limit < len(big) < 2 * limit
        error, close, reason = await send_after_handshake(small.url, keys, big)
        assert error.code == Code.TOO_LARGE
        assert f"frame of {len(big)} bytes exceeds the limit of {limit}" in error.message
        assert (close, reason) == (CloseCode.TOO_LARGE, Code.TOO_LARGE)
        await bystanders.assert_served()


async def test_frame_over_twice_max_frame_closes_with_1009(keys, tmp_path):
    """A frame over twice Limits.max_frame is cut off by the WebSocket layer with 1009."""
    limit = 64 * 1024
    async with custom_hub(keys, tmp_path / "small.db", limits=Limits(max_frame=limit)) as (
            small, connect):
        bystanders = await Bystanders.start(connect, keys)
        async with raw_socket(small.url) as ws:
            await handshake(ws, keys["JM-CUSTOMS"])
            await ws.send_bytes(bytes(3 * limit))
            close, _ = await receive_close(ws)
        assert close == CloseCode.TOO_LARGE
        await bystanders.assert_served()


@pytest.mark.parametrize(
    ("data", "where"),
    [
        pytest.param(b"\xc1", "$", id="never-used-byte"),
        pytest.param(msgpack.packb({"t": "sub", "rid": 1, "op": "X"})[:-1], "$", id="truncated"),
        pytest.param(b"\xdd\xff\xff\xff\xff", "$", id="array-claiming-4g-entries"),
        pytest.param(b"\x91" * 10_000 + b"\xc0", "$", id="deeply-nested"),
        pytest.param(msgpack.packb(["sub", 1, "X"]), "$", id="not-a-map"),
        pytest.param(msgpack.packb({"t": "shout"}), "$.t", id="unknown-type"),
        pytest.param(msgpack.packb({"t": "sub", "rid": 1}), "$.op", id="missing-field"),
        pytest.param(msgpack.packb({"t": "sub", "rid": "1", "op": "X"}), "$.rid",
                     id="mistyped-field"),
        pytest.param(msgpack.packb({"t": "sub", "rid": 1, "op": "no spaces"}), "$.op",
                     id="invalid-identifier"),
    ],
)
async def test_malformed_frame_closes_with_4400(hub, keys, bystanders, data, where):
    """Bytes that are not a valid frame get malformed_frame naming the path, and close 4400."""
    error, close, reason = await send_after_handshake(hub.url, keys, data)
    assert error.code == Code.MALFORMED
    assert error.message.endswith(f"(at {where})")
    assert (close, reason) == (CloseCode.MALFORMED, Code.MALFORMED)
    await bystanders.assert_served()


async def test_text_frame_closes_with_4400(hub, keys, bystanders):
    """A WebSocket text frame gets malformed_frame and close 4400."""
    error, close, reason = await send_after_handshake(hub.url, keys, '{"t": "sub"}')
    assert error.code == Code.MALFORMED
    assert "text" in error.message
    assert (close, reason) == (CloseCode.MALFORMED, Code.MALFORMED)
    await bystanders.assert_served()


async def test_publish_before_hello_closes_with_4409(hub, keys, bystanders):
    """A well-formed 'pub' before the handshake gets unexpected_frame, close 4409, no append."""
    async with raw_socket(hub.url) as ws:
        assert isinstance(await receive_frame(ws), f.Challenge)
        await ws.send_bytes(codec.encode(f.Publish(items=(f.PublishItem(
            op=CONTROL, cid=1, header=b"", payload=b"sneaky"),))))
        error, close, reason = await expect_refusal(ws)
    assert error.code == Code.UNEXPECTED
    assert "expected 'hello' before anything else, got 'pub'" in error.message
    assert (close, reason) == (CloseCode.UNEXPECTED, Code.UNEXPECTED)
    assert (await get_operation(hub, keys, CONTROL))["head"] == 1
    await bystanders.assert_served()


async def test_second_hello_closes_with_4409(hub, keys, bystanders):
    """A 'hello' after a completed handshake gets unexpected_frame and close 4409."""
    ident = keys["JM-CUSTOMS"]
    hello = codec.encode(f.Hello(credential=ident.signed.body,
                                 credential_sig=ident.signed.signature, signature=bytes(64)))
    error, close, reason = await send_after_handshake(hub.url, keys, hello)
    assert error.code == Code.UNEXPECTED
    assert "'hello' after the handshake has completed" in error.message
    assert (close, reason) == (CloseCode.UNEXPECTED, Code.UNEXPECTED)
    await bystanders.assert_served()


HUB_FRAMES: list[f.ServerFrame] = [
    f.Challenge(nonce=bytes(32), hub="opshub"),
    f.Ready(unit="JM-CUSTOMS", session="s", limits={}),
    f.Error(code=Code.NOT_MEMBER, message="no"),
    f.Ok(rid=1),
    f.Acks(items=((CONTROL, 1, 2),)),
    f.Deliver(op=CONTROL, items=(f.Delivery(seq=2, sender="OCU-BB", kind=f.KIND_MESSAGE,
                                            header=b"", payload=b"forged", at_ms=0),)),
    f.Ended(op=CONTROL, reason="forged"),
    f.Directed(items=(f.DirectedItem(id=1, op=CONTROL, sender="OCU-BB", payload=b"x",
                                     at_ms=0),)),
]


@pytest.mark.parametrize("frame", HUB_FRAMES, ids=lambda fr: fr.T)
async def test_hub_to_agent_frame_from_agent_closes_with_4409(hub, keys, bystanders, frame):
    """An agent sending a frame only the hub may send gets unexpected_frame and close 4409."""
    error, close, reason = await send_after_handshake(hub.url, keys, codec.encode(frame))
    assert error.code == Code.UNEXPECTED
    assert f"'{frame.T}'" in error.message
    assert (close, reason) == (CloseCode.UNEXPECTED, Code.UNEXPECTED)
    await bystanders.assert_served()


# --- membership statements ------------------------------------------------------------------


async def test_commit_not_signed_by_admin_is_refused(hub, agents, keys, bystanders):
    """A member's own signature on a change of the operation gets bad_signature; epoch stays."""
    ocu = await agents("OCU-BB")
    admin = await create_operation(ocu, keys, OP, MEMBERS)
    assert admin.state is not None
    member = await agents("JM-CUSTOMS")
    remaining = admin.state.members - {"TT-POLICE"}
    forged = Statement(op=OP, epoch=1, prev=admin.state.head, admin="OCU-BB",
                       removes=("TT-POLICE",), roster=roster_hash(remaining))
    with pytest.raises(RequestError) as info:
        await member.commit(*sign(keys["JM-CUSTOMS"].key, forged))
    assert info.value.code == Code.BAD_SIGNATURE
    after = await get_operation(hub, keys, OP)
    assert (after["epoch"], after["members"]) == (0, sorted(admin.state.members))
    async with asyncio.timeout(TIMEOUT):
        assert await member.publish(OP, b"still a member") == 2
    await bystanders.assert_served()


@pytest.mark.parametrize(("epoch", "code", "says"), [
    pytest.param(0, Code.OPERATION_EXISTS, f"operation {OP!r} already exists", id="repeated"),
    pytest.param(2, Code.WRONG_EPOCH, "expected epoch 1, got 2", id="skipped")])
async def test_commit_with_wrong_epoch_is_refused(hub, agents, keys, bystanders, epoch, code,
                                                  says):
    """An admin-signed statement with an epoch other than the next is refused: a second
    epoch 0 with operation_exists, a skipped epoch with wrong_epoch."""
    ocu = await agents("OCU-BB")
    admin = await create_operation(ocu, keys, OP, MEMBERS)
    assert admin.state is not None
    remaining = admin.state.members - {"TT-POLICE"}
    wrong = Statement(op=OP, epoch=epoch, prev=admin.state.head, admin="OCU-BB",
                      removes=("TT-POLICE",), roster=roster_hash(remaining))
    with pytest.raises(RequestError) as info:
        await ocu.commit(*sign(keys["OCU-BB"].key, wrong))
    assert info.value.code == code
    assert says in info.value.message
    assert (await get_operation(hub, keys, OP))["epoch"] == 0
    await admin.send(ocu, admin.change(remove=["TT-POLICE"]))
    assert (await get_operation(hub, keys, OP))["epoch"] == 1
    await bystanders.assert_served()


async def test_create_by_non_ocu_unit_is_refused(hub, agents, keys, bystanders):
    """An epoch-0 statement signed by a unit without role 'ocu' gets not_admin; no operation."""
    conn = await agents("JM-CUSTOMS")
    units = frozenset({"JM-CUSTOMS", "TT-POLICE"})
    rogue = Statement(op="OP-ROGUE", epoch=0, prev=b"", admin="JM-CUSTOMS",
                      adds=("TT-POLICE",), roster=roster_hash(units), name="Rogue")
    with pytest.raises(RequestError) as info:
        await conn.commit(*sign(keys["JM-CUSTOMS"].key, rogue))
    assert info.value.code == Code.NOT_ADMIN
    assert "'unit'" in info.value.message
    status, body = await get_json(keys, f"{hub.http}/v1/operations/OP-ROGUE")
    assert (status, body["error"]["code"]) == (404, Code.UNKNOWN_OPERATION)
    await bystanders.assert_served()


# --- slow consumer -----------------------------------------------------------------------------

SMALL_OUTBOUND = 256 * 1024
#: slow_consumer_timeout of the hubs below: short, and scaled with the client's TIMEOUT.
STALL = TIMEOUT / 20


def kib_payloads(start: int, n: int) -> list[bytes]:
    return [f"{i:06d}".encode().ljust(1024, b".") for i in range(start, start + n)]


async def publish_all(conn: AgentConnection, payloads: list[bytes], *, per_frame: int) -> None:
    """Publish in frames of ``per_frame`` messages, each frame acknowledged before the next."""
    async with asyncio.timeout(TIMEOUT):
        for i in range(0, len(payloads), per_frame):
            await asyncio.gather(*(conn.publish_nowait(OP, p)
                                   for p in payloads[i : i + per_frame]))


async def until(predicate: Callable[[], bool], within: float = TIMEOUT) -> None:
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.01)


async def assert_delivered_in_order(conn: AgentConnection, payloads: list[bytes]) -> None:
    """``payloads`` arrive as seq 2, 3, ... (seq 1 is the creating commit)."""
    async with asyncio.timeout(TIMEOUT):
        for i, payload in enumerate(payloads):
            got = await conn.next_delivery()
            assert isinstance(got, Delivered)
            assert (got.seq, got.payload) == (i + 2, payload)


async def scrape(running: RunningHub) -> dict[str, float]:
    async with (aiohttp.ClientSession() as http, asyncio.timeout(TIMEOUT),
                http.get(f"{running.metrics_http}/metrics") as resp):
        text = await resp.text()
    return {name: float(value) for name, value in
            re.findall(r"^(opshub_\w+) (\S+)$", text, re.MULTILINE)}


@dataclass
class Stalled:
    """A hub on which the raw subscriber ``slow`` stopped reading and was given up on."""

    running: RunningHub
    bystanders: Bystanders
    reader: AgentConnection
    slow: aiohttp.ClientWebSocketResponse
    payloads: list[bytes]


@contextlib.asynccontextmanager
async def stalled_consumer(keys: Keys, db: Path) -> AsyncIterator[Stalled]:
    """Publish 1 KiB messages until the hub gives up on a subscriber that stopped reading,
    while a well-behaved agent subscribes to the same operation."""
    async with custom_hub(keys, db, max_outbound_bytes=SMALL_OUTBOUND,
                          slow_consumer_timeout=STALL) as (running, connect):
        bystanders = await Bystanders.start(connect, keys)
        ocu = await connect("OCU-BB")
        await create_operation(ocu, keys, OP, MEMBERS)
        reader = await connect("TT-POLICE")
        await reader.subscribe(OP, after=1)
        async with raw_socket(running.url) as slow:
            await handshake(slow, keys["JM-CUSTOMS"])
            await slow.send_bytes(codec.encode(f.Subscribe(rid=1, op=OP, after=1)))
            assert isinstance(await receive_frame(slow), f.Ok)
            # From here on ``slow`` reads nothing; the socket buffers fill, then the
            # hub's queue, then nothing moves for ``STALL`` seconds.
            payloads: list[bytes] = []
            metrics = running.hub.metrics
            async with asyncio.timeout(TIMEOUT):
                while metrics.slow_consumers == 0:
                    assert len(payloads) < 32 * 1024, "the hub never gave up on the reader"
                    batch = kib_payloads(len(payloads), 64)
                    await publish_all(ocu, batch, per_frame=64)
                    payloads.extend(batch)
            yield Stalled(running, bystanders, reader, slow, payloads)


async def test_slow_consumer_is_closed_with_1013(keys, tmp_path):
    """A subscriber that stops reading is closed with 1013 while others get every message."""
    async with stalled_consumer(keys, tmp_path / "slow.db") as st:
        # The close frame waits behind what the socket already holds: read on to it.
        close, reason = await receive_close(st.slow)
        assert (close, reason) == (CloseCode.TRY_AGAIN_LATER, Code.SLOW_CONSUMER)
        await assert_delivered_in_order(st.reader, st.payloads)
        assert st.reader.connects == 1  # the well-behaved subscriber was never dropped
        assert (await scrape(st.running))["opshub_slow_consumers_total"] >= 1
        await st.bystanders.assert_served()


async def test_slow_consumer_is_counted_once(keys, tmp_path):
    """opshub_slow_consumers_total counts a stalled subscriber once, however long it stalls."""
    async with stalled_consumer(keys, tmp_path / "count.db") as st:
        await asyncio.sleep(2 * STALL)  # several housekeeping ticks while still stalled
        assert (await scrape(st.running))["opshub_slow_consumers_total"] == 1


async def test_slow_consumer_that_never_reads_again_is_disconnected(keys, tmp_path):
    """A stalled subscriber is disconnected even if it never reads again."""
    async with stalled_consumer(keys, tmp_path / "gone.db") as st:
        before = (await scrape(st.running))["opshub_connections"]
        assert before == 5  # bystanders, publisher, reader, slow
        # bounded well under TIMEOUT: the hub has given up already
        async with asyncio.timeout(TIMEOUT / 5):
            while (await scrape(st.running))["opshub_connections"] == before:
                await asyncio.sleep(STALL / 5)
        await st.bystanders.assert_served()


async def test_slow_consumer_policy_spares_fast_reader_catching_up(keys, tmp_path):
    """A reader that subscribes behind a backlog larger than the outbound limit gets it all."""
    async with custom_hub(keys, tmp_path / "catchup.db", max_outbound_bytes=SMALL_OUTBOUND) as (
            running, connect):
        ocu = await connect("OCU-BB")
        await create_operation(ocu, keys, OP, MEMBERS)
        payloads = kib_payloads(0, 600)  # ~600 KiB of backlog, more than twice the limit
        await publish_all(ocu, payloads, per_frame=64)
        reader = await connect("TT-POLICE")
        await reader.subscribe(OP, after=1)
        metrics = running.hub.metrics
        await until(lambda: reader.positions.get(OP, 0) == 601 or metrics.slow_consumers > 0)
        assert metrics.slow_consumers == 0
        await assert_delivered_in_order(reader, payloads)
        assert reader.connects == 1


async def test_slow_consumer_policy_spares_fast_reader_of_large_transaction(keys, tmp_path):
    """A live reader is not closed because one transaction carried more than the limit."""
    async with custom_hub(keys, tmp_path / "burst.db", max_outbound_bytes=SMALL_OUTBOUND) as (
            running, connect):
        ocu = await connect("OCU-BB")
        await create_operation(ocu, keys, OP, MEMBERS)
        reader = await connect("TT-POLICE")
        await reader.subscribe(OP, after=1)
        payloads = kib_payloads(0, 300)  # one publish frame, one transaction, ~310 KiB
        await publish_all(ocu, payloads, per_frame=300)
        metrics = running.hub.metrics
        await until(lambda: reader.positions.get(OP, 0) == 301 or metrics.slow_consumers > 0)
        assert metrics.slow_consumers == 0
        await assert_delivered_in_order(reader, payloads)
        assert reader.connects == 1
