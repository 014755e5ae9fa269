"""AgentConnection given several hub URLs, through real hubs on 127.0.0.1: it tries them in
turn, and resumes on the next node exactly as after any reconnect. Only SQLite hubs exist
here, so "another node" is a hub started on the same database at another port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.connection import TIMEOUT, AgentConnection, Delivered, rotated
from hub.app import RunningHub
from protocol.errors import UsageError
from tests.conftest import Keys, create_operation, stored_seqs

OP = "OP-FAILOVER"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE"]
#: how long a test waits to be sure nothing more arrives
QUIET = TIMEOUT / 20


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but not listening, so a connect to it is refused
    at once (and no other process takes it while the test runs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/v1/ws"


def test_rotated_spreads_agents_round_robin() -> None:
    """Agent i first tries URL i mod n, then the others in turn; one URL stays one."""
    urls = ["ws://a/v1/ws", "ws://b/v1/ws", "ws://c/v1/ws"]
    assert [rotated(urls, i)[0] for i in range(5)] == [urls[0], urls[1], urls[2], urls[0],
                                                       urls[1]]
    assert rotated(urls, 4) == (urls[1], urls[2], urls[0])
    assert rotated("ws://a/v1/ws", 7) == ("ws://a/v1/ws",)


def test_connection_without_a_url_is_refused(keys: Keys) -> None:
    """An empty list of URLs is a usage error, raised at once."""
    with pytest.raises(UsageError, match="no hub URL"):
        AgentConnection([], keys["OCU-BB"])


async def test_connection_first_url_dead_connects_to_the_next(hub: RunningHub,
                                                              keys: Keys) -> None:
    """Given [a URL where nothing listens, the hub's URL], connect() reaches the hub on
    the second and says so in ``current_url``; the connection works as usual."""
    with _refusing_port() as dead:
        async with asyncio.timeout(TIMEOUT), \
                AgentConnection([_url(dead), hub.url], keys["OCU-BB"]) as conn:
            assert conn.current_url == hub.url
            assert conn.urls == (_url(dead), hub.url)
            await create_operation(conn, keys, OP, MEMBERS)
            assert await conn.publish(OP, b"through the second URL") == 2


async def test_connection_node_stopped_resumes_on_the_next_url(
        keys: Keys, db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two agents on [node A, node B]; A stops for good and B starts on the same database.
    Both move to B (logged at INFO): the reader resumes after the last entry it was handed,
    the publishes made while no node answered are stored once each with their cids, and
    the reader gets every entry once, in order, nothing more."""
    caplog.set_level(logging.INFO, logger="opshub.agent")
    node_a = RunningHub(keys.config(db_path))
    node_a.hub.preload([u.signed for u in keys.units.values()])
    await node_a.start()
    node_b: RunningHub | None = None
    reserved = socket.socket()  # B's port, refusing connections until B starts
    reserved.bind(("127.0.0.1", 0))
    port_b = reserved.getsockname()[1]
    urls = [node_a.url, _url(port_b)]
    ocu = AgentConnection(urls, keys["OCU-BB"])
    reader = AgentConnection(urls, keys["TT-POLICE"])
    try:
        async with asyncio.timeout(4 * TIMEOUT):
            await ocu.connect()
            await reader.connect()
            await create_operation(ocu, keys, OP, MEMBERS)
            await reader.subscribe(OP, after=1)
            before = [b"before %d" % i for i in range(20)]
            for payload in before:
                await ocu.publish(OP, payload)
            got = []
            for _ in range(10):  # half of them handed out before the node goes
                entry = await reader.next_delivery()
                assert isinstance(entry, Delivered)
                got.append((entry.seq, entry.payload))
            await node_a.stop()
            while ocu.connected or reader.connected:
                await asyncio.sleep(0.001)
            during = [b"during %d" % i for i in range(20)]
            pending = [ocu.publish_nowait(OP, p) for p in during]
            reserved.close()
            node_b = RunningHub(keys.config(db_path, port=port_b))
            await node_b.start()
            seqs = await asyncio.gather(*pending)
            assert seqs == list(range(22, 42))
            while len(got) < len(before) + len(during):
                entry = await reader.next_delivery()
                assert isinstance(entry, Delivered)
                got.append((entry.seq, entry.payload))
        assert got == list(enumerate(before + during, start=2))
        with pytest.raises(TimeoutError):
            await reader.next_delivery(within=QUIET)  # nothing twice
        assert stored_seqs(db_path, OP) == list(range(1, 42))
        assert ocu.current_url == reader.current_url == node_b.url
        assert reader.connects == ocu.connects == 2
        assert f"switching from {node_a.url} to {node_b.url}" in caplog.text
    finally:
        reserved.close()
        await ocu.close()
        await reader.close()
        if node_b is not None:
            await node_b.stop()
