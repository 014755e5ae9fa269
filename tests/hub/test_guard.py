"""Unauthenticated and malformed traffic against a real hub on 127.0.0.1 (hub/guard.py):
per-source limits on connections and handshakes, counted in /metrics, and one WARNING
line per rejected request, without a traceback, at a bounded rate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from client.connection import TIMEOUT, AgentConnection
from client.identity import UnitSpec
from hub.app import RunningHub
from hub.config import HubConfig
from hub.guard import IDLE, RejectLog, SourceGuard
from hub.metrics import Metrics
from protocol.errors import AuthError, Code
from tests.conftest import Keys
from tests.test_api import parse_metrics


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@contextlib.asynccontextmanager
async def running(keys: Keys, db_path, **settings: object) -> AsyncIterator[RunningHub]:
    async with RunningHub(keys.config(db_path, **settings)) as hub:
        hub.hub.preload([u.signed for u in keys.units.values()])
        yield hub


async def rejected(hub: RunningHub) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{hub.metrics_http}/metrics") as r:
        samples = parse_metrics(await r.text())
    return {k.split('"')[1]: v for k, v in samples.items() if k.startswith("opshub_rejected")}


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection; what comes back until the hub closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def is_reset(port: int) -> bool:
    """Whether a new connection is closed by the hub before it answers a request."""
    try:
        answer = await raw_exchange(port, b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n"
                                          b"Connection: close\r\n\r\n")
    except ConnectionError:
        return True
    return not answer.startswith(b"HTTP/1.1 200")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "opshub.rejected"]


# --- the log of rejected requests ---------------------------------------------------------------


@pytest.mark.parametrize("request_bytes", [
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, id="tls-hello"),
    pytest.param(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n", id="line-too-long"),
    pytest.param(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", id="bad-header"),
    pytest.param(b"GET / HTTP/7.7\r\n\r\n", id="bad-version"),
])
async def test_a_malformed_request_is_one_warning_line_without_traceback(
        keys, db_path, caplog, request_bytes):
    """aiohttp logged these at ERROR with a full traceback (28 from one probe run): now one
    WARNING line each, naming the source, and a 400 for the peer."""
    caplog.set_level(logging.DEBUG)
    async with running(keys, db_path) as hub:
        answer = await raw_exchange(hub.port, request_bytes)
        assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:80]
        assert (await rejected(hub)).get("http_malformed") == 1
    lines = warnings_of(caplog)
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert lines[0].levelno == logging.WARNING
    assert "from 127.0.0.1" in lines[0].getMessage()
    assert lines[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_rejected_requests_are_logged_at_a_bounded_rate(keys, db_path, caplog):
    """40 unsigned requests in a burst make a few lines, not 40; the next line after a
    pause says how many were left out."""
    caplog.set_level(logging.WARNING)
    async with running(keys, db_path, reject_log_rate=2.0) as hub, aiohttp.ClientSession() as http:
        for _ in range(40):
            async with http.get(f"{hub.http}/v1/directory") as resp:
                assert resp.status == 401
        assert len(warnings_of(caplog)) <= 4
        await asyncio.sleep(1.0)
        async with http.get(f"{hub.http}/v1/operations") as resp:
            assert resp.status == 401
        last = warnings_of(caplog)[-1].getMessage()
        assert "GET /v1/operations: 401 unauthenticated" in last
        assert "more rejected requests not logged" in last
        assert (await rejected(hub))["http_401"] == 41


async def test_a_refused_websocket_handshake_is_one_warning_line(keys, db_path, caplog):
    """A unit the hub does not know is refused at the handshake: one WARNING line naming
    the unit it claimed and the code."""
    caplog.set_level(logging.DEBUG)
    stranger = keys.authority.enroll(UnitSpec("GY-POLICE", "GY", "police"), now=keys.now - 60)
    async with running(keys, db_path) as hub:
        conn = AgentConnection(hub.url, stranger, reconnect=False)
        with pytest.raises(AuthError):
            await conn.connect()
        await conn.close()
    lines = [r.getMessage() for r in warnings_of(caplog)]
    assert len(lines) == 1, lines
    assert "WebSocket handshake of GY-POLICE: unknown_unit" in lines[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_reject_log_counts_what_it_leaves_out(caplog):
    clock = Clock()
    rejects = RejectLog(1.0, now=clock)
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        rejects.warn("10.0.0.1", "GET /v1/directory: 401")
    assert len(warnings_of(caplog)) == 1
    clock.t += 1.0
    rejects.warn("10.0.0.2", "GET /v1/operations: 401")
    assert warnings_of(caplog)[-1].getMessage() == (
        "rejected GET /v1/operations: 401 from 10.0.0.2 (4 more rejected requests not logged)")


# --- limits per source --------------------------------------------------------------------------


async def test_connections_per_source_are_limited_and_counted(keys, db_path):
    """With 3 connections open from one address, the 4th is reset before it is read; once
    one closes, a new one is served again."""
    async with running(keys, db_path, max_connections_per_source=3) as hub:
        held = [await asyncio.open_connection("127.0.0.1", hub.port) for _ in range(3)]
        try:
            await asyncio.sleep(0.1)  # the hub has accepted them
            assert await is_reset(hub.port)
            assert (await rejected(hub)).get("connection_limit") == 1
        finally:
            _, writer = held.pop()
            writer.close()
        async with asyncio.timeout(TIMEOUT):
            while await is_reset(hub.port):
                await asyncio.sleep(0.05)
        for _, writer in held:
            writer.close()


async def test_new_connections_per_source_are_rate_limited(keys, db_path):
    """A burst of 3 allowed, then 1 a second: the 4th at once is refused."""
    async with running(keys, db_path, connection_rate=1.0, connection_burst=3) as hub:
        results = [await is_reset(hub.port) for _ in range(4)]
        assert results == [False, False, False, True]
        assert (await rejected(hub)).get("connection_limit") == 1


async def test_websocket_handshakes_per_source_are_rate_limited(keys, db_path):
    """Past its handshake burst an address gets 429 rate_limited; agents already
    connected are not disturbed."""
    async with running(keys, db_path, handshake_rate=0.01, handshake_burst=2) as hub:
        first = AgentConnection(hub.url, keys["JM-CUSTOMS"], reconnect=False)
        await first.connect()
        second = AgentConnection(hub.url, keys["TT-POLICE"], reconnect=False)
        await second.connect()
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(hub.url)
            assert info.value.status == 429
            async with http.get(hub.url) as resp:  # not an upgrade: the same answer
                body = await resp.json()
                assert (resp.status, body["error"]["code"]) == (429, Code.RATE_LIMITED)
        assert first.connected
        assert second.connected
        assert (await rejected(hub)).get("handshake_limit") == 2
        await first.close()
        await second.close()


def test_idle_sources_are_forgotten():
    """Buckets of addresses not seen for IDLE seconds are dropped: many addresses cost no
    lasting memory."""
    clock = Clock()
    guard = SourceGuard(HubConfig(), Metrics(), RejectLog(1.0, now=clock), now=clock)
    for i in range(1000):
        assert guard.admit(f"10.0.{i // 256}.{i % 256}")
        guard.release(f"10.0.{i // 256}.{i % 256}")
        assert guard.admit_handshake(f"10.0.{i // 256}.{i % 256}")
    assert guard.open == {}
    clock.t += IDLE + 1
    assert guard.admit("192.0.2.1")
    assert len(guard._connects) == 1
    assert not guard._handshakes


