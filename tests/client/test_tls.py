"""Agents over wss:// with a real hub on 127.0.0.1 serving TLS (certificates of a local CA,
opshub/tls.py): they exchange messages, nothing readable crosses the wire, and a certificate
that does not verify, a name it lacks or a hub without TLS is refused at once with one line
naming the URL and the reason (client/tls.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client.connection import TIMEOUT, AgentConnection, Delivered
from client.e2ee.suite import CLASSIC
from client.secure import SecureAgent
from client.tls import client_context
from hub.app import RunningHub
from opshub.tls import TlsFiles, write_tls_folder
from protocol.errors import TlsError
from tests.conftest import Keys, create_operation

OP = "OP-TLS"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE"]


async def test_tls_agents_exchange_messages_over_wss(tls_hub: RunningHub, keys: Keys,
                                                     tls_files: TlsFiles) -> None:
    """Agents that trust the hub's CA connect over wss://, create an operation, publish
    and receive in order, and send a directed message."""
    context = client_context(tls_files.ca)
    assert tls_hub.url.startswith("wss://")
    async with AgentConnection(tls_hub.url, keys["OCU-BB"], ssl=context) as ocu, \
            AgentConnection(tls_hub.url, keys["JM-CUSTOMS"], ssl=context) as jm:
        await create_operation(ocu, keys, OP, MEMBERS)
        await jm.subscribe(OP)
        seqs = [await ocu.publish(OP, f"seizure {i}".encode()) for i in range(3)]
        got = [await jm.next_delivery() for _ in range(4)]  # the statement, then 3
        assert [d.seq for d in got if isinstance(d, Delivered)] == [1, *seqs]
        assert [d.payload for d in got[1:] if isinstance(d, Delivered)] == [
            b"seizure 0", b"seizure 1", b"seizure 2"]
        await ocu.send_directed(OP, "JM-CUSTOMS", b"call me")
        assert (await jm.next_directed()).payload == b"call me"


async def test_tls_secure_agents_read_each_other_over_wss(tls_hub: RunningHub, keys: Keys,
                                                          tls_files: TlsFiles) -> None:
    """SecureAgents pass their ``ssl`` to their connection: end-to-end encrypted traffic
    over wss:// decrypts at the member."""
    context = client_context(tls_files.ca)
    agents = [SecureAgent(tls_hub.url, keys[u], [keys.authority.public_key], suite=CLASSIC,
                          ssl=context) for u in ("OCU-BB", "JM-CUSTOMS")]
    ocu, jm = agents
    try:
        for agent in agents:
            await agent.start()
        await ocu.create_operation(OP, "tls", [keys["JM-CUSTOMS"].signed])
        await jm.wait_for_epoch(OP, 0)
        await ocu.publish(OP, b"container MSCU1234567 flagged")
        message = await jm.next_message()
        assert (message.sender, message.content) == ("OCU-BB", b"container MSCU1234567 flagged")
    finally:
        for agent in agents:
            await agent.close()


@contextlib.asynccontextmanager
async def _tap(port: int, seen: bytearray) -> AsyncIterator[int]:
    """A TCP relay to 127.0.0.1:``port`` that keeps every byte it relays, both ways, in
    ``seen``; yields its own port."""
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                seen.extend(data)
                dst.write(data)
                await dst.drain()
        dst.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_tls_wire_carries_nothing_readable(tls_hub: RunningHub, keys: Keys,
                                                 tls_files: TlsFiles) -> None:
    """Between agent and hub, over wss://, neither the credential's unit and agency, nor
    the operation's id, nor a payload appears in the bytes on the wire."""
    seen = bytearray()
    context = client_context(tls_files.ca)
    async with _tap(tls_hub.port, seen) as port:
        url = f"wss://127.0.0.1:{port}/v1/ws"
        async with AgentConnection(url, keys["OCU-BB"], ssl=context) as ocu:
            await create_operation(ocu, keys, OP, MEMBERS)
            await ocu.publish(OP, b"PAYLOAD-IN-THE-CLEAR" * 4)
    assert len(seen) > 1000
    for clear in (b"OCU-BB", b"customs", OP.encode(), b"PAYLOAD-IN-THE-CLEAR", b"/v1/ws"):
        assert clear not in seen


async def _refused(url: str, keys: Keys, **kw: object) -> tuple[str, float]:
    """The message an agent that reconnects on failures gets, and how long it took."""
    started = time.monotonic()
    conn = AgentConnection(url, keys["OCU-BB"], **kw)  # type: ignore[arg-type]
    with pytest.raises(TlsError) as refused:
        await conn.connect()
    return str(refused.value), time.monotonic() - started


async def test_tls_agent_without_the_ca_is_refused_at_once(tls_hub: RunningHub,
                                                           keys: Keys) -> None:
    """An agent that trusts only the system's CAs is refused with one line naming the URL
    and why, at the first attempt instead of retrying until its timeout."""
    message, took = await _refused(tls_hub.url, keys)
    assert message == (
        f"TLS with {tls_hub.url} failed: the hub's certificate does not verify (unable to "
        f"get local issuer certificate); trust the CA that signed it (--tls-ca FILE)")
    assert took < TIMEOUT / 4


async def test_tls_agent_trusting_another_ca_is_refused(tls_hub: RunningHub, keys: Keys,
                                                        tmp_path: Path) -> None:
    """A CA that did not sign the hub's certificate does not make it verify."""
    other = write_tls_folder(tmp_path / "other")
    message, _ = await _refused(tls_hub.url, keys, ssl=client_context(other.ca))
    assert "the hub's certificate does not verify" in message


async def test_tls_agent_at_a_name_the_certificate_lacks_is_refused(
        keys: Keys, db_path: Path, tmp_path: Path) -> None:
    """A certificate for 127.0.0.1 only does not verify for an agent that reaches the same
    hub as localhost: the reason names the mismatch."""
    files = write_tls_folder(tmp_path / "tls", ["127.0.0.1"])
    running = RunningHub(keys.config(db_path, tls_cert=files.cert, tls_key=files.key))
    async with running:
        url = f"wss://localhost:{running.port}/v1/ws"
        message, _ = await _refused(url, keys, ssl=client_context(files.ca))
    assert message.startswith(f"TLS with {url} failed: the hub's certificate does not verify "
                              f"(Hostname mismatch, certificate is not valid for 'localhost'")


async def test_tls_wss_url_of_a_hub_without_tls_is_refused(hub: RunningHub, keys: Keys,
                                                           tls_files: TlsFiles) -> None:
    """wss:// to a hub that speaks plain ws:// fails the handshake: refused at once, with
    OpenSSL's reason and not its wrapping."""
    url = hub.url.replace("ws://", "wss://")
    message, took = await _refused(url, keys, ssl=client_context(tls_files.ca))
    assert message == (f"TLS with {url} failed: wrong version number (the answer was not "
                       f"TLS: a hub without TLS is at ws://)")
    assert took < TIMEOUT / 4
