"""The idempotency key of `send` (protocol.md 7.1), over a real hub: a retry is stored
once, a new message that reuses a cid in another operation or for another recipient is
not mistaken for one."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from client.connection import TIMEOUT, handshake
from protocol import codec
from protocol import frames as f
from tests.conftest import STORES, create_operation

pytestmark = pytest.mark.parametrize("store", STORES, indirect=True)

MEMBERS = ["JM-CUSTOMS", "TT-POLICE", "INTERPOL-LO"]


async def _send_all(url: str, keys, frames: list[f.SendDirected]) -> list[f.Ok | f.Error]:
    """Send the frames one at a time as the OCU on a bare socket; the hub's answers."""
    answers: list[f.Ok | f.Error] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await handshake(ws, keys["OCU-BB"])
        for frame in frames:
            await ws.send_bytes(codec.encode(frame))
            async with asyncio.timeout(TIMEOUT):
                while True:
                    got = codec.decode((await ws.receive()).data)
                    if isinstance(got, f.Ok | f.Error) and got.rid == frame.rid:
                        answers.append(got)
                        break
    return answers


async def _setup(agents, keys) -> None:
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, "OP-A", MEMBERS)
    await create_operation(ocu, keys, "OP-B", MEMBERS)


async def test_send_cid_reused_in_another_operation_or_for_another_recipient_is_delivered(
        hub, agents, keys):
    """The same cid in another operation, or to another recipient, is a new message: each
    gets its own id and reaches its recipient."""
    await _setup(agents, keys)
    answers = await _send_all(hub.url, keys, [
        f.SendDirected(rid=1, op="OP-A", to="JM-CUSTOMS", payload=b"a-jm", cid=777),
        f.SendDirected(rid=2, op="OP-B", to="JM-CUSTOMS", payload=b"b-jm", cid=777),
        f.SendDirected(rid=3, op="OP-A", to="TT-POLICE", payload=b"a-tt", cid=777),
    ])
    assert all(isinstance(a, f.Ok) for a in answers), answers
    ids = [a.info["id"] for a in answers if isinstance(a, f.Ok)]
    assert len(set(ids)) == 3
    jm, tt = await agents("JM-CUSTOMS"), await agents("TT-POLICE")
    got_jm = {(await jm.next_directed()).payload for _ in range(2)}
    assert got_jm == {b"a-jm", b"b-jm"}
    assert (await tt.next_directed()).payload == b"a-tt"


async def test_send_cid_retry_is_answered_with_the_first_id_and_stored_once(hub, agents, keys):
    """A retry (same operation, recipient and cid) gets the first message's id, and the
    recipient receives one copy."""
    await _setup(agents, keys)
    frame = f.SendDirected(rid=1, op="OP-A", to="JM-CUSTOMS", payload=b"welcome", cid=5)
    first, again = await _send_all(hub.url, keys, [frame, f.SendDirected(
        rid=2, op="OP-A", to="JM-CUSTOMS", payload=b"welcome", cid=5)])
    assert isinstance(first, f.Ok)
    assert isinstance(again, f.Ok)
    assert first.info["id"] == again.info["id"]
    jm = await agents("JM-CUSTOMS")
    assert (await jm.next_directed()).payload == b"welcome"
    await asyncio.sleep(0.3)
    assert jm._directed.empty()
