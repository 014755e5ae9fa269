"""What the hub does with WebSocket messages that are not binary frames, sent over a raw
socket to a real hub on 127.0.0.1 (protocol.md 1): a text message is the hub's to refuse
(``error`` frame, 4400); bad UTF-8, RSV bits and opcodes are refused by the WebSocket
layer (aiohttp) before the hub sees them (1007 / 1002, no ``error`` frame)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from client.connection import TIMEOUT
from hub.app import RunningHub
from protocol import codec
from protocol import frames as f
from protocol.errors import CloseCode, Code
from tests.conftest import Keys
from tests.hub.raw_websocket import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, RawWebSocket

#: An operation no hub has.
OP = "OP-NOWHERE"


async def connected(hub: RunningHub, keys: Keys, *, authenticated: bool) -> RawWebSocket:
    """A raw socket to the hub, past the handshake (as JM-CUSTOMS) or with the challenge
    read and no hello sent."""
    ws = await RawWebSocket.connect("127.0.0.1", hub.port)
    if authenticated:
        await ws.handshake(keys["JM-CUSTOMS"])
    else:
        assert isinstance(await ws.frame(), f.Challenge)
    return ws


async def last_word(ws: RawWebSocket) -> tuple[list[f.Frame], int, str]:
    """What the hub sends before it closes: its frames, the close code, the close reason."""
    frames: list[f.Frame] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            opcode, payload = await ws.read_frame()
            if opcode == OP_CLOSE:
                return frames, struct.unpack("!H", payload[:2])[0], payload[2:].decode()
            assert opcode == OP_BINARY, f"opcode {opcode}: {payload!r}"
            frames.append(codec.decode(payload))


@pytest.mark.parametrize("authenticated", [False, True], ids=["before-hello", "after-hello"])
async def test_transport_text_message_gets_malformed_frame_and_4400(hub, keys, authenticated):
    """A text message (valid UTF-8) reaches the hub, which refuses it like a malformed
    frame: an ``error`` frame malformed_frame, then close 4400 malformed_frame."""
    ws = await connected(hub, keys, authenticated=authenticated)
    try:
        ws.send_frame(b'{"t": "sub", "rid": 1, "op": "OP-NOWHERE"}', opcode=OP_TEXT)
        frames, code, reason = await last_word(ws)
    finally:
        ws.close()
    [error] = frames
    assert isinstance(error, f.Error)
    assert (error.code, error.message) == (
        Code.MALFORMED, "text frames are not accepted; send binary msgpack")
    assert (code, reason) == (CloseCode.MALFORMED, Code.MALFORMED)


@pytest.mark.parametrize("authenticated", [False, True], ids=["before-hello", "after-hello"])
async def test_transport_text_with_invalid_utf8_closes_with_1007(hub, keys, authenticated):
    """A text message that is not UTF-8 is refused by the WebSocket layer: close 1007
    (invalid frame payload data), empty reason, no ``error`` frame."""
    ws = await connected(hub, keys, authenticated=authenticated)
    try:
        ws.send_frame(b"\xff\xfe not utf-8", opcode=OP_TEXT)
        assert await last_word(ws) == ([], 1007, "")
    finally:
        ws.close()


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param({"rsv": 0b100}, id="rsv1-without-compression"),
        pytest.param({"rsv": 0b010}, id="rsv2"),
        pytest.param({"rsv": 0b001}, id="rsv3"),
        pytest.param({"opcode": 0x3}, id="reserved-data-opcode"),
        pytest.param({"opcode": 0xB}, id="reserved-control-opcode"),
        pytest.param({"opcode": 0x0}, id="continuation-without-a-start"),
        pytest.param({"opcode": OP_PING, "fin": False}, id="fragmented-ping"),
    ],
)
async def test_transport_bad_rsv_or_opcode_closes_with_1002(hub, keys, frame):
    """RSV bits without an extension that defines them, reserved opcodes and broken
    fragmentation are refused by the WebSocket layer: close 1002 (protocol error), empty
    reason, no ``error`` frame."""
    ws = await connected(hub, keys, authenticated=True)
    try:
        ws.send_frame(b"\x80", **frame)
        assert await last_word(ws) == ([], 1002, "")
    finally:
        ws.close()


async def test_transport_unmasked_frame_is_accepted(hub, keys):
    """An agent's frame without a mask is accepted, although RFC 6455 5.1 says a server
    must close the connection: aiohttp does not check (agents must mask anyway)."""
    ws = await connected(hub, keys, authenticated=True)
    try:
        ws.send_frame(codec.encode(f.Subscribe(rid=7, op=OP, after=0)), masked=False)
        answer = await ws.frame()
    finally:
        ws.close()
    assert isinstance(answer, f.Error)
    assert (answer.rid, answer.code) == (7, Code.UNKNOWN_OPERATION)
