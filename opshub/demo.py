"""``opshub demo``: an embedded hub, a handful of agents, one encrypted operation.

A short tour of the hub and the encryption: start a hub on 127.0.0.1 with a SQLite
file; the OCU creates an operation whose epoch keys it seals to each member
(end-to-end encryption: the hub stores and relays ciphertext only); units exchange a
short warning -> query -> hit -> seizure -> feedback storyline; one unit joins late
(and cannot read what came before), one drops and resumes, one is removed (and cannot
read what comes after); then the hub's view, and a check that its database holds none
of the plaintexts.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import msgpack

from client.identity import KeyFolder, UnitIdentity, generate
from client.secure import Message, SecureAgent
from hub.app import RunningHub
from hub.config import HubConfig
from opshub.identities import DEFAULT_ROSTER

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


def _decode(content: bytes) -> tuple[str, str]:
    m = msgpack.unpackb(content)
    return str(m["type"]), str(m["text"])


async def run_demo(workdir: Path | None = None, messages: int = len(SCRIPT)) -> int:
    with tempfile.TemporaryDirectory(prefix="opshub-demo-") as tmp:
        root = workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        return await _demo(root, max(2, min(messages, len(SCRIPT))))


LATE = "DM-CUSTOMS"  # joins half-way, removed at the end


async def _demo(root: Path, n_messages: int) -> int:
    keys_dir = root / "keys"
    _, identities = generate(keys_dir, DEFAULT_ROSTER, now=int(time.time()) - 60)
    ids = {i.unit: i for i in identities}
    keys = KeyFolder(keys_dir)
    config = HubConfig(host="127.0.0.1", port=0, db=root / "hub.db",
                       authorities=(keys.authority_public(),))
    _say("opshub demo: one end-to-end encrypted operation, a real hub on 127.0.0.1\n")
    _say(f"keys     authority and {len(identities)} unit credentials in {keys_dir}/")
    for ident in identities:
        c = ident.credential
        _say(f"         {c.unit:<12} {c.country} {c.agency:<9} {c.role:<8} {ident.fingerprint}")
    running = RunningHub(config)
    running.hub.preload(keys.roster())
    async with running, AsyncExitStack() as stack:
        _say(f"hub      listening on {running.url}, metrics {running.metrics_http}/metrics, "
             f"database {config.db}\n")
        agents: dict[str, SecureAgent] = {}
        for unit, ident in ids.items():
            agent = SecureAgent(running.url, ident, [keys.authority_public()])
            agents[unit] = await stack.enter_async_context(agent)
        _say("packages every agent published 16 one-time key packages (ML-KEM-768 + X25519)")
        received: dict[str, list[Message]] = {u: [] for u in agents}
        async with asyncio.TaskGroup() as tasks:
            readers = [tasks.create_task(_collect(a, received[u])) for u, a in agents.items()]
            try:
                sent = await _exchange(agents, received, n_messages, ids)
            finally:
                for task in readers:
                    task.cancel()
        await _summary(running, agents, received, ids["OCU"])
    _check_database(config.db, sent)
    _say("\nhub      stopped cleanly; every acknowledged message is in the database")
    return 0


async def _collect(agent: SecureAgent, into: list[Message]) -> None:
    async for message in agent.messages():
        into.append(message)


async def _wait_for(received: dict[str, list[Message]], counts: dict[str, int]) -> None:
    """Until each unit in ``counts`` has decrypted at least that many messages."""
    async with asyncio.timeout(10):
        # polls several readers' lists under a timeout
        while any(len(received[u]) < n for u, n in counts.items()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _exchange(agents: dict[str, SecureAgent], received: dict[str, list[Message]],
                    n_messages: int, ids: dict[str, UnitIdentity]) -> list[bytes]:
    ocu = agents["OCU"]
    first = [u for u in agents if u not in ("OCU", LATE)]
    await ocu.create_operation(OP, "Demo operation, Caribbean", [ids[u].signed for u in first])
    for u in first:
        await agents[u].wait_for_epoch(OP, 0)
    _say(f"commit   OCU creates {OP}, epoch 0: {len(first) + 1} members; each got a welcome "
         f"(its epoch secret sealed to one of its key packages)")
    script = SCRIPT[:n_messages]
    half = len(script) // 2
    sent: list[bytes] = []
    counts = {u: 0 for u in agents}

    async def say(sender: str, kind: str, text: str, note: str = "") -> None:
        content = _encode(kind, text)
        seq = await agents[sender].publish(OP, content)
        sent.append(content)
        for u in agents:
            if u != sender and agents[u].epoch(OP) is not None and \
                    not agents[u].member.channels[OP].removed:
                counts[u] += 1
        _say(f"seq {seq:<4} {sender:<12} {kind:<10} {text}{note}")

    for sender, kind, text in script[:half]:
        if sender != LATE:
            await say(sender, kind, text)
    await _wait_for(received, {u: counts[u] for u in first})
    _say("         every member decrypted every message, signatures checked\n")

    epoch = await ocu.change(OP, add=[ids[LATE].signed])
    await agents[LATE].wait_for_epoch(OP, epoch)
    _say(f"commit   OCU adds {LATE}: epoch {epoch}, new keys for all; {LATE} verifies the "
         f"chain from epoch 0 but holds no key of epoch 0 "
         f"({agents[LATE].skipped_before_join} earlier messages stay unreadable to it)")

    _say("drop     TT-POLICE loses its connection")
    tt = agents["TT-POLICE"]
    await tt.conn.drop()
    for sender, kind, text in script[half:]:
        offline = "" if agents[sender].conn.connected else "  (sent on reconnect)"
        await say(sender, kind, text, offline)
    await _wait_for(received, counts)
    _say(f"resume   TT-POLICE reconnected ({tt.conn.connects} connections) and caught up: "
         f"nothing missed, nothing twice\n")

    epoch = await ocu.change(OP, remove=[LATE])
    await agents["JM-CUSTOMS"].wait_for_epoch(OP, epoch)
    _say(f"commit   OCU removes {LATE}: epoch {epoch}; the new epoch secret is sealed to the "
         f"remaining members only")
    await say("OCU", "situation", "Closing note for the remaining members only.")
    dm = agents[LATE]
    _say(f"         {LATE} holds keys up to epoch {dm.epoch(OP)} and is removed: "
         f"{dm.member.channels[OP].removed}")
    await _wait_for(received, {u: n for u, n in counts.items() if u != LATE})
    return sent


async def _summary(running: RunningHub, agents: dict[str, SecureAgent],
                   received: dict[str, list[Message]], ocu: UnitIdentity) -> None:
    _say("\nsummary")
    for unit, items in received.items():
        agent = agents[unit]
        _say(f"         {unit:<12} decrypted {len(items):>3} messages, epoch {agent.epoch(OP)}, "
             f"rejected {len(agent.rejected)}, unreadable from before joining "
             f"{agent.skipped_before_join}")
    # The API answers signed requests only (docs/protocol.md 15): the OCU signs with its
    # identity key. /metrics has a listener of its own, for operators, unsigned.
    path = f"/v1/operations/{OP}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{running.http}{path}",
                            headers=ocu.sign_request("GET", path, at=int(time.time()))) as resp:
            resp.raise_for_status()
            op = await resp.json()
        async with http.get(f"{running.metrics_http}/metrics") as resp:
            resp.raise_for_status()
            metrics = await resp.text()
    _say(f"         hub view of {OP}: epoch {op['epoch']}, head seq {op['head']}, "
         f"members {', '.join(op['members'])}")
    wanted = ("opshub_messages_in_total", "opshub_deliveries_total", "opshub_errors_total",
              "opshub_store_transactions")
    for line in metrics.splitlines():
        if line.startswith(wanted):
            _say(f"         {line}")


def _check_database(db: Path, sent: list[bytes]) -> None:
    """Read the hub's SQLite file and WAL as raw bytes: none of the texts may be there."""
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    texts = [msgpack.unpackb(c)["text"].encode() for c in sent]
    found = [t for t in texts if t in raw]
    _say(f"\ncheck    {len(raw) // 1024} KiB of database and WAL scanned: "
         f"{len(found)} of {len(texts)} message texts found in plaintext")
    if found:
        raise SystemExit(f"plaintext found in the hub's database: {found[0]!r}")
