"""``opshub demo``: an embedded hub, a handful of agents, one operation, told as it happens.

Until the replay issue lands this is the main job: start a hub on 127.0.0.1 with a
SQLite file, create an operation with signed membership, exchange a short
warning -> query -> hit -> seizure -> feedback exchange, drop and resume one
agent, remove a member, send a directed message, then print what the hub holds and stop.
Payloads are opaque bytes to the hub; end-to-end encryption arrives with its own
issue, so this demo's payloads are not yet encrypted.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import msgpack

from client.connection import AgentConnection, Delivered, SubscriptionEnded
from client.identity import KeyFolder, UnitIdentity, generate
from client.membership import OperationAdmin
from hub.app import RunningHub
from hub.config import HubConfig

OP = "DEMO-CARIB"

#: (sender, type, text) - a small storyline in the style of a regional operation.
SCRIPT = [
    ("OCU", "situation", "Operation open. All units report through this channel."),
    ("JM-CUSTOMS", "warning", "Container from a South American port flagged by risk profile."),
    ("JM-CUSTOMS", "query", "Consignee company: any record in international databases?"),
    ("INTERPOL-LO", "hit", "Consignee linked to an earlier cocaine seizure; notice issued."),
    ("BB-CUSTOMS", "warning", "Passenger on an inbound flight matches courier profile."),
    ("TT-POLICE", "seizure", "Vessel search: 40 kg cocaine in a hidden compartment, 2 arrests."),
    ("BB-CUSTOMS", "seizure", "Courier stopped at the airport: 3 kg cocaine in luggage lining."),
    ("JM-CUSTOMS", "feedback", "Container examined: 120 kg cocaine found among fruit boxes."),
    ("DM-CUSTOMS", "seizure", "Parcel x-rayed at the post office: 2 pistols, 150 rounds."),
    ("OCU", "situation", "Day 1 summary: 4 seizures reported, follow-ups assigned."),
    ("TT-POLICE", "feedback", "Arrested crew members linked to the vessel owner."),
    ("OCU", "situation", "Thank you all. Keep the channel open for follow-ups."),
]


def _say(text: str) -> None:
    print(text, flush=True)


def _encode(kind: str, text: str) -> bytes:
    return msgpack.packb({"type": kind, "text": text})  # type: ignore[no-any-return]


def _decode(payload: bytes) -> tuple[str, str]:
    m = msgpack.unpackb(payload)
    return str(m["type"]), str(m["text"])


async def run_demo(workdir: Path | None = None, messages: int = len(SCRIPT)) -> int:
    with tempfile.TemporaryDirectory(prefix="opshub-demo-") as tmp:
        root = workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        return await _demo(root, max(1, min(messages, len(SCRIPT))))


async def _demo(root: Path, n_messages: int) -> int:
    from opshub.cli import DEFAULT_ROSTER

    keys_dir = root / "keys"
    _, identities = generate(keys_dir, DEFAULT_ROSTER, now=int(time.time()) - 60)
    ids = {i.unit: i for i in identities}
    keys = KeyFolder(keys_dir)
    config = HubConfig(host="127.0.0.1", port=0, db=root / "hub.db",
                       authorities=(keys.authority_public(),))
    _say("opshub demo: one operation, six agents, a real hub on 127.0.0.1\n")
    _say(f"keys     authority and {len(identities)} unit credentials in {keys_dir}/")
    for ident in identities:
        c = ident.credential
        _say(f"         {c.unit:<12} {c.country} {c.agency:<9} {c.role:<8} {ident.fingerprint}")
    running = RunningHub(config)
    running.hub.preload(keys.roster())
    async with running, AsyncExitStack() as stack:
        _say(f"hub      listening on {running.url}, database {config.db}\n")
        conns: dict[str, AgentConnection] = {}
        for unit, ident in ids.items():
            conns[unit] = await stack.enter_async_context(_agent(running.url, ident))
        ocu = conns["OCU"]
        admin = OperationAdmin(ids["OCU"], OP, now=time.time)
        members = [ids[u].signed for u in ids if u != "OCU"]
        info = await admin.send(ocu, admin.create("Demo operation, Caribbean", members))
        _say(f"commit   OCU creates {OP}: epoch {info['epoch']}, {len(ids)} members "
             f"(signed by the OCU, checked by the hub), log seq {info['seq']}")
        for conn in conns.values():
            await conn.subscribe(OP, after=0)

        received: dict[str, list[Delivered]] = {u: [] for u in conns}
        readers = {u: asyncio.create_task(_collect(c, received[u])) for u, c in conns.items()}
        try:
            await _exchange(conns, received, n_messages, admin, ids)
        finally:
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)

        await _summary(running, received)
    _say("\nhub      stopped cleanly; every acknowledged message is in the database")
    return 0


class _agent:
    """Connect an agent as an async context manager (keeps AsyncExitStack tidy)."""

    def __init__(self, url: str, ident: UnitIdentity) -> None:
        self.conn = AgentConnection(url, ident)

    async def __aenter__(self) -> AgentConnection:
        await self.conn.connect()
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()


async def _collect(conn: AgentConnection, into: list[Delivered]) -> None:
    async for item in conn.deliveries():
        if isinstance(item, SubscriptionEnded):
            _say(f"ended    {conn.unit}: subscription to {item.op} ended ({item.reason})")
        else:
            into.append(item)


async def _wait_for(received: dict[str, list[Delivered]], units: list[str], seq: int) -> None:
    async with asyncio.timeout(10):
        # polls several readers' lists under a timeout
        while any(not received[u] or received[u][-1].seq < seq for u in units):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _exchange(conns: dict[str, AgentConnection], received: dict[str, list[Delivered]],
                    n_messages: int, admin: OperationAdmin,
                    ids: dict[str, UnitIdentity]) -> None:
    script = SCRIPT[:n_messages]
    half = len(script) // 2
    for sender, kind, text in script[:half]:
        seq = await conns[sender].publish(OP, _encode(kind, text))
        _say(f"seq {seq:<4} {sender:<12} {kind:<10} {text}")
    await _wait_for(received, list(conns), seq)
    _say(f"         every member has received seq 1..{seq} in order\n")

    _say("drop     TT-POLICE loses its connection")
    tt = conns["TT-POLICE"]
    await tt.drop()
    for sender, kind, text in script[half:]:
        conn = conns[sender]
        offline = "" if conn.connected else "  (written offline, sent on reconnect)"
        seq = await conn.publish(OP, _encode(kind, text))
        _say(f"seq {seq:<4} {conn.unit:<12} {kind:<10} {text}{offline}")
    await _wait_for(received, list(conns), seq)
    _say(f"resume   TT-POLICE reconnected ({tt.connects} connections) and caught up to seq "
         f"{received['TT-POLICE'][-1].seq}: nothing missed, nothing twice\n")

    dm = ids["DM-CUSTOMS"].unit
    info = await admin.send(conns["OCU"], admin.change(remove=[dm]))
    _say(f"commit   OCU removes {dm}: epoch {info['epoch']}, log seq {info['seq']}")
    try:
        await conns[dm].publish(OP, _encode("seizure", "late report"))
    except Exception as exc:
        _say(f"refused  {dm} publishes after removal: {exc}")

    item_id = await conns["OCU"].send_directed(OP, "INTERPOL-LO",
                                               _encode("tasking", "Trace the two pistols."))
    got = await conns["INTERPOL-LO"].next_directed()
    conns["INTERPOL-LO"].ack_directed(got.id)
    _say(f"directed OCU -> INTERPOL-LO (id {item_id}), kept by the hub until acknowledged: "
         f"{_decode(got.payload)[1]!r}")
    await asyncio.sleep(0.2)


async def _summary(running: RunningHub, received: dict[str, list[Delivered]]) -> None:
    _say("\nsummary")
    for unit, items in received.items():
        kinds = sum(1 for d in items if d.kind == 0)
        _say(f"         {unit:<12} received {len(items):>3} log entries "
             f"({kinds} messages, {len(items) - kinds} membership commits)")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.http}/v1/operations/{OP}") as resp:
            op = await resp.json()
        async with http.get(f"{running.http}/metrics") as resp:
            metrics = await resp.text()
    _say(f"         hub view of {OP}: epoch {op['epoch']}, head seq {op['head']}, "
         f"members {', '.join(op['members'])}")
    wanted = ("opshub_messages_in_total", "opshub_deliveries_total", "opshub_errors_total",
              "opshub_store_transactions")
    for line in metrics.splitlines():
        if line.startswith(wanted):
            _say(f"         {line}")
