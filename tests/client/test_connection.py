"""AgentConnection through a real hub on 127.0.0.1: waits under a timeout, bounded queues
with backpressure when the application does not read, and tasks that close() stops."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from client.connection import TIMEOUT, AgentConnection, Delivered
from hub.app import RunningHub
from protocol.errors import Code, RequestError
from tests.conftest import Keys, create_operation, stored_seqs

OP = "OP-LINK"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE"]
#: slow_consumer_timeout of the hub that gives up on a reader: short, scaled with TIMEOUT
STALL = TIMEOUT / 20


def _directed_acked(db: Path, directed_id: int) -> bool:
    """Whether the hub's SQLite file marks the directed message acknowledged (read
    straight from the directed table, not through the store)."""
    with sqlite3.connect(db) as conn:
        [(acked,)] = conn.execute("SELECT acked FROM directed WHERE id = ?", (directed_id,))
    return bool(acked)


def _library_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks whose coroutine belongs to the connection (or writes for it)."""
    owners = ("AgentConnection.", "ClientWebSocketResponse.")
    return [t for t in asyncio.all_tasks() if not t.done()
            and getattr(t.get_coro(), "__qualname__", "").startswith(owners)]


async def test_connection_publish_not_acknowledged_in_time_is_stored_once_later(
        keys: Keys, db_path: Path) -> None:
    """publish raises TimeoutError when the hub does not acknowledge it within
    ``within``; the publish stays queued with its cid, so when the hub is back it is
    stored once, and publishing the same cid again returns its seq."""
    first = RunningHub(keys.config(db_path))
    first.hub.preload([u.signed for u in keys.units.values()])
    await first.start()
    conn = AgentConnection(first.url, keys["OCU-BB"])
    second: RunningHub | None = None
    try:
        await conn.connect()
        await create_operation(conn, keys, OP, MEMBERS)
        await first.stop()
        cid = conn.next_cid()
        with pytest.raises(TimeoutError):
            await conn.publish(OP, b"while the hub is down", cid=cid, within=TIMEOUT / 20)
        second = RunningHub(keys.config(db_path, port=first.port))
        await second.start()
        assert await conn.publish(OP, b"while the hub is down", cid=cid) == 2
        assert stored_seqs(db_path, OP) == [1, 2]
    finally:
        await conn.close()
        if second is not None:
            await second.stop()


async def test_connection_wait_unacked_at_most_raises_timeout(hub, agents, keys) -> None:
    """Waiting for the pipelining window to drain raises TimeoutError when the hub does
    not acknowledge within ``within``."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, OP, MEMBERS)
    await hub.stop()
    pending = ocu.publish_nowait(OP, b"never acknowledged")
    with pytest.raises(TimeoutError):
        await ocu.wait_unacked_at_most(0, within=TIMEOUT / 20)
    assert ocu.unacked == 1
    assert not pending.done()


async def test_connection_application_that_does_not_read_loses_nothing(keys,
                                                                        tmp_path) -> None:
    """An application that stops reading: the connection holds at most ``max_backlog``
    deliveries and ``max_directed`` directed messages, then stops reading the socket; the
    hub gives up on it (slow consumer); once the application reads again the connection
    resumes, and every entry and directed message arrives once, in order."""
    running = RunningHub(keys.config(tmp_path / "slow.db", max_outbound_bytes=256 * 1024,
                                     slow_consumer_timeout=STALL))
    running.hub.preload([u.signed for u in keys.units.values()])
    async with running, AgentConnection(running.url, keys["OCU-BB"]) as ocu, \
            AgentConnection(running.url, keys["TT-POLICE"], max_backlog=8,
                            max_directed=2) as reader:
        await create_operation(ocu, keys, OP, MEMBERS)
        await reader.subscribe(OP, after=1)
        directed = [b"directed %d" % i for i in range(5)]
        for payload in directed:
            await ocu.send_directed(OP, "TT-POLICE", payload)
        def payload(i: int) -> bytes:
            return b"%06d" % i + bytes(1018)

        # The hub gives up once the reader takes no bytes for STALL; until then the
        # reader's kernel keeps taking them, up to its receive buffer (autotuned up to
        # net.ipv4.tcp_rmem's maximum, 32 MiB on some machines): publish past that.
        sent = 0
        async with asyncio.timeout(TIMEOUT * 3):
            while running.hub.metrics.slow_consumers == 0:
                assert sent < 96 * 1024, "the hub never gave up on the reader"
                await asyncio.gather(*(ocu.publish_nowait(OP, payload(i))
                                       for i in range(sent, sent + 64)))
                sent += 64
        got = []
        for _ in directed:
            item = await reader.next_directed()
            reader.ack_directed(item.id)
            got.append(item.payload)
        assert got == directed
        for i in range(sent):
            entry = await reader.next_delivery()
            assert isinstance(entry, Delivered)
            assert (entry.seq, entry.payload) == (i + 2, payload(i))
        assert reader.connects >= 2  # it was given up on, and resumed
        with pytest.raises(TimeoutError):
            await reader.next_directed(within=STALL)  # none of them twice


async def test_connection_close_stops_every_task_it_started(hub, keys) -> None:
    """close() cancels and awaits every task the connection started (reader, acks,
    writes): none is left running."""
    conn = AgentConnection(hub.url, keys["OCU-BB"])
    await conn.connect()
    await create_operation(conn, keys, OP, MEMBERS)
    pending = [conn.publish_nowait(OP, b"%d" % i) for i in range(50)]
    await asyncio.gather(*pending[:10])
    await conn.close()
    assert _library_tasks() == []


async def test_connection_cancelled_while_connecting_leaves_no_task(hub, keys) -> None:
    """A connect() cancelled before the handshake ends closes what it opened: no task of
    the library is left running (and no unclosed HTTP session warning fails the test)."""
    conn = AgentConnection(hub.url, keys["OCU-BB"])
    connecting = asyncio.create_task(conn.connect())
    await asyncio.sleep(0)  # the runner has started; the handshake has not finished
    connecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connecting
    assert _library_tasks() == []


async def test_connection_directed_ack_lost_with_the_socket_is_sent_again(
        hub, agents, keys, db_path) -> None:
    """A directed message acknowledged while the socket is down (its dack never reaches
    the hub) is pushed again on reconnect and acknowledged again, so the hub stops pushing
    it; the application does not get it twice."""
    ocu, tt = await agents("OCU-BB"), await agents("TT-POLICE")
    await create_operation(ocu, keys, OP, MEMBERS)
    sent = await ocu.send_directed(OP, "TT-POLICE", b"a welcome")
    item = await tt.next_directed()
    assert item.id == sent
    await tt.drop()
    async with asyncio.timeout(TIMEOUT):
        while tt.connected:
            await asyncio.sleep(0.001)
    tt.ack_directed(item.id)  # no socket: this dack is lost
    async with asyncio.timeout(TIMEOUT):
        while not _directed_acked(db_path, item.id):
            await asyncio.sleep(0.01)
    assert tt.connects == 2
    with pytest.raises(TimeoutError):
        await tt.next_directed(within=STALL)


async def test_connection_wait_unacked_at_most_wakes_when_a_publish_is_refused(
        hub, agents, keys) -> None:
    """A publish the hub refuses leaves the pipelining window like an acknowledged one:
    a wait for the window to drain returns instead of timing out."""
    ocu, tt = await agents("OCU-BB"), await agents("DM-CUSTOMS")
    await create_operation(ocu, keys, OP, MEMBERS)
    refused = tt.publish_nowait(OP, b"from a unit that is not a member")
    await tt.wait_unacked_at_most(0, within=TIMEOUT / 4)
    with pytest.raises(RequestError) as info:
        await refused
    assert info.value.code == Code.NOT_MEMBER
