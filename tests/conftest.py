"""Shared fixtures: a key folder with an authority and units, and a real hub on 127.0.0.1."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, settings

from client.connection import AgentConnection
from client.identity import Authority, UnitIdentity, UnitSpec
from client.membership import OperationAdmin
from hub.app import RunningHub
from hub.config import HubConfig
from opshub.tls import TlsFiles, write_tls_folder

# The machine is shared: a property test's examples may take longer than hypothesis
# expects when other work runs. Time is not what these tests check, so no deadline and no
# "too slow" health check (the number of examples stays each test's own).
settings.register_profile("shared-machine", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")

UNITS = [
    UnitSpec("OCU-BB", "BB", "customs", "ocu"),
    UnitSpec("JM-CUSTOMS", "JM", "customs"),
    UnitSpec("TT-POLICE", "TT", "police"),
    UnitSpec("DM-CUSTOMS", "DM", "customs"),
    UnitSpec("INTERPOL-LO", "FR", "INTERPOL", "liaison"),
]


class Keys:
    def __init__(self) -> None:
        self.now = int(time.time())
        self.authority = Authority.generate()
        self.units: dict[str, UnitIdentity] = {
            s.unit: self.authority.enroll(s, now=self.now - 60) for s in UNITS}

    def __getitem__(self, unit: str) -> UnitIdentity:
        return self.units[unit]

    def config(self, db: Path, **kw: object) -> HubConfig:
        # metrics_port 0: a hub restarted on its old port must not find port + 1 taken by
        # a client socket of the ephemeral range
        settings: dict[str, object] = {"host": "127.0.0.1", "port": 0, "metrics_port": 0,
                                       "db": db, "authorities": (self.authority.public_key,),
                                       **kw}
        return HubConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "hub.db"


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The hub's store, as ``HubConfig.store`` has it: "" for SQLite (the default), NATS
    URLs for JetStream. Tests of the store contract run on both:
    ``pytest.mark.parametrize("store", STORES, indirect=True)``; JetStream then gets a
    NATS server of its own (one, R1: the cluster's own tests are in tests/cluster/)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield ""
        return
    from opshub.cluster import NatsCluster

    with NatsCluster(tmp_path / "nats", servers=1) as cluster:
        yield ",".join(cluster.urls)


#: The stores every contract test runs on.
STORES = ["sqlite", "jetstream"]


@pytest.fixture
def hub_config(keys: Keys, db_path: Path, store: str) -> Callable[..., HubConfig]:
    """Settings of a hub on this test's store."""
    return lambda **kw: keys.config(db_path, store=store, **kw)


@pytest.fixture
async def hub(keys: Keys, hub_config: Callable[..., HubConfig]) -> AsyncIterator[RunningHub]:
    running = RunningHub(hub_config())
    await running.hub.open()
    running.hub.preload([u.signed for u in keys.units.values()])
    async with running:
        yield running


@pytest.fixture
def stored(store: str, db_path: Path) -> Callable[[str], Awaitable[list[int]]]:
    """The seqs of an operation's log as the store holds them (SQLite: read from the file;
    JetStream: read from the operation's stream by a connection of its own)."""

    async def seqs(op: str) -> list[int]:
        if not store:
            return stored_seqs(db_path, op)
        from hub.store.jetstream import JetStreamStore

        js = JetStreamStore(store.split(","))
        await js.open()
        try:
            return [e.seq for e in await js.read_log(op, 0, 1 << 20)]
        finally:
            await js.close()

    return seqs


@pytest.fixture
def stored_directed(store: str, db_path: Path) -> Callable[[str], Awaitable[list[int]]]:
    """The ids of the directed messages the store holds for a recipient, acked or not
    (SQLite) or not yet acked (JetStream deletes what is acknowledged)."""

    async def ids(recipient: str) -> list[int]:
        if not store:
            with sqlite3.connect(db_path) as conn:
                return [r[0] for r in conn.execute(
                    "SELECT id FROM directed WHERE recipient = ?", (recipient,))]
        from hub.store.jetstream import JetStreamStore

        js = JetStreamStore(store.split(","))
        await js.open()
        try:
            return [e.id for e in await js.pending_directed(recipient, 1 << 16)]
        finally:
            await js.close()

    return ids


@pytest.fixture
async def agents(hub: RunningHub, keys: Keys) -> AsyncIterator[Callable[..., AgentConnection]]:
    """Factory of connected agents, closed at the end of the test."""
    opened: list[AgentConnection] = []

    async def connect(unit: str, url: str | None = None, **kw: object) -> AgentConnection:
        conn = AgentConnection(url or hub.url, keys[unit], **kw)  # type: ignore[arg-type]
        await conn.connect()
        opened.append(conn)
        return conn

    yield connect  # type: ignore[misc]
    for conn in opened:
        await conn.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    """A local CA and a hub certificate for 127.0.0.1 and localhost (opshub/tls.py)."""
    return write_tls_folder(tmp_path / "tls")


@pytest.fixture
async def tls_hub(keys: Keys, db_path: Path, tls_files: TlsFiles
                  ) -> AsyncIterator[RunningHub]:
    """A hub on 127.0.0.1 serving wss:// and https:// with ``tls_files``' certificate."""
    running = RunningHub(keys.config(db_path, tls_cert=tls_files.cert, tls_key=tls_files.key))
    await running.hub.open()
    running.hub.preload([u.signed for u in keys.units.values()])
    async with running:
        yield running


async def create_operation(conn: AgentConnection, keys: Keys, op: str,
                           members: list[str]) -> OperationAdmin:
    admin = OperationAdmin(keys[conn.unit], op, now=time.time)
    await admin.send(conn, admin.create(f"Operation {op}", [keys[m].signed for m in members]))
    return admin


def stored_seqs(db: Path, op: str) -> list[int]:
    """The seqs of op's log as the SQLite file holds them, read straight from the
    segments table (not through the store), in stored order."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT body FROM segments WHERE op = ? ORDER BY last_seq", (op,))
        return [entry[0] for (body,) in rows for entry in msgpack.unpackb(body)]
