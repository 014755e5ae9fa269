"""``opshub bench hub``: durable publish throughput and fan-out latency of a real hub.

Shape: one publisher (the OCU) keeps a window of unacknowledged 1 KiB publishes to
one operation; N subscribed agents run in separate processes (never in the hub's);
the hub runs as its own ``opshub serve`` process so its CPU time and peak memory
are its own. Each payload starts with the publish time (CLOCK_MONOTONIC, shared by
all processes), so subscribers measure publish-to-delivery latency per entry.
Only entries published inside the measured window count; the warm-up does not.
Subscribers here are lean load generators (raw msgpack, no dataclasses) so that
on a 2-core machine they leave the CPU to the hub; they still check that every
sequence number arrives once and in order.

Against a running hub (``hub_url``, with its authority's key folder) the bench can run
any number of times: its units (BENCH-PUB, BENCH-SUB-001 ...) act with the folder's
identity if it has one, else with a credential issued after the hub's, and each run
publishes to operations of its own, ``BENCH-<run>-<i>``, numbered after those the hub
has. The hub has no way to delete an operation, so they stay there (and in its
database) after the run.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

from client.connection import AgentConnection, handshake
from client.identity import KeyFolder, UnitIdentity, UnitSpec
from client.membership import OperationAdmin
from client.tls import client_context
from opshub.histogram import LatencyHistogram
from opshub.hubapi import HubApi, registrar
from opshub.hubprocess import HubProcess, process_cpu_seconds
from opshub.identities import Cast, cast, open_folder, own_identities
from opshub.loops import run
from opshub.tls import trust, write_tls_folder
from protocol import codec
from protocol import frames as f
from protocol.errors import UsageError

TS = 8  # bytes of publish timestamp at the start of each payload
ACK_EVERY_NS = 50_000_000
#: Subscribers decode every entry of one frame in this many (the latency sample) and
#: read only the head of the others; see _deliver_head.
SAMPLE_EVERY = 4


@dataclass(frozen=True, slots=True)
class BenchOptions:
    subscribers: int = 30
    size: int = 1024
    duration: float = 10.0
    warmup: float = 2.0
    window: int = 4096
    batch: int = 256
    sub_procs: int = 2
    operations: int = 1
    hub_url: str | None = None
    keys: Path | None = None
    db: Path | None = None
    fanout: str = "coalesced"
    hub_loop: str = "asyncio"
    #: a running wss:// hub: the CA that signed its certificate (None: the system's CAs)
    tls_ca: Path | None = None
    #: the started hub serves TLS with a certificate of a fresh local CA
    tls: bool = False


# --- subscriber processes ----------------------------------------------------------------


def _deliver_head(data: bytes) -> tuple[str, int, int, int, int] | None:
    """(op, first seq, count, kind and timestamp of the first entry) of a deliver frame,
    read without decoding its entries; None for any other frame (decode it in full).

    The hub writes "t", "op", "items" in that order and entries in seq order, so a frame's
    seqs are first .. first + count - 1; every SAMPLE_EVERY-th frame is decoded in full,
    which checks that and gives the latency sample."""
    up = msgpack.Unpacker(raw=True)
    up.feed(data)
    if up.read_map_header() != 3 or up.unpack() != b"t" or up.unpack() != b"deliver":
        return None
    if up.unpack() != b"op":
        return None
    op = up.unpack().decode()
    if up.unpack() != b"items":
        return None
    count = up.read_array_header()
    if count == 0 or up.read_array_header() != 6:
        return None
    first = up.unpack()
    up.skip()  # sender
    kind = up.unpack()
    up.skip()  # header
    ts = int.from_bytes(up.unpack()[:TS], "big")
    return op, first, count, kind, ts


def _subscriber_main(url: str, identities: list[dict[str, Any]], ops: list[str],
                     pipe: Connection, tls_ca: Path | None = None) -> None:
    try:
        import uvloop
        uvloop.run(_subscribers(url, identities, ops, pipe, tls_ca))
    except ImportError:  # pragma: no cover
        asyncio.run(_subscribers(url, identities, ops, pipe, tls_ca))


async def _subscribers(url: str, identities: list[dict[str, Any]], ops: list[str],
                       pipe: Connection, tls_ca: Path | None) -> None:
    loop = asyncio.get_running_loop()
    hist = LatencyHistogram()
    stats = {"received": 0, "in_window": 0, "gaps": 0, "errors": 0}
    window = [0, 2**63]
    last: dict[tuple[int, str], int] = {}
    acked_at: dict[tuple[int, str], int] = {}
    done = asyncio.Event()
    targets: dict[str, int] = {}

    async def run_one(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        frames = 0
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                stats["errors"] += 1
                return
            now = time.monotonic_ns()
            frames += 1
            head = None if frames % SAMPLE_EVERY == 0 else _deliver_head(msg.data)
            if head is not None:
                op, first, count, kind, ts = head
                final = first + count - 1
                if kind == f.KIND_MESSAGE and window[0] <= ts < window[1]:
                    stats["in_window"] += count
            else:
                # raw: keys and strings stay bytes (no UTF-8 decoding of every sender id)
                obj = msgpack.unpackb(msg.data, raw=True)
                if obj[b"t"] != b"deliver":
                    if obj[b"t"] == b"error":
                        stats["errors"] += 1
                    continue
                op, items = obj[b"op"].decode(), obj[b"items"]
                first, final, count = items[0][0], items[-1][0], len(items)
                if final - first + 1 != count:
                    stats["gaps"] += 1
                # One timestamp per publisher batch: count them, then record each once.
                lo, hi = window
                for ts_bytes, n in Counter([it[4][:TS] for it in items if it[2] == 0]).items():
                    ts = int.from_bytes(ts_bytes, "big")
                    if lo <= ts < hi:
                        stats["in_window"] += n
                        hist.record_n((now - ts) // 1000, n)
            key = (i, op)
            if first != last.get(key, 0) + 1:
                stats["gaps"] += 1
            last[key] = final
            stats["received"] += count
            if now - acked_at.get(key, 0) > ACK_EVERY_NS:  # cumulative, like AgentConnection
                acked_at[key] = now
                await ws.send_bytes(msgpack.packb({"t": "ack", "op": op, "seq": final}))
            if targets and all(last.get((j, o), 0) >= h for j in range(len(conns))
                               for o, h in targets.items()):
                done.set()

    # Same reasoning as hub.app.tune_gc: a load generator decoding 1M lists a second.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    ssl = True if tls_ca is None else client_context(tls_ca)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl)) as http:
        conns = []
        for data in identities:
            ws = await http.ws_connect(url, compress=0, max_msg_size=64 * 1024 * 1024)
            await handshake(ws, UnitIdentity.from_json(data))
            for rid, op in enumerate(ops):
                await ws.send_bytes(codec.encode(f.Subscribe(rid=rid, op=op, after=0)))
            conns.append(ws)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(run_one(i, ws)) for i, ws in enumerate(conns)]
            pipe.send(("ready",))
            msg = await loop.run_in_executor(None, pipe.recv)
            window[:] = [msg[1], msg[2]]
            msg = await loop.run_in_executor(None, pipe.recv)  # ("drain", heads)
            targets.update(msg[1])
            if all(last.get((j, o), 0) >= h for j in range(len(conns))
                   for o, h in targets.items()):
                done.set()
            try:
                async with asyncio.timeout(60):
                    await done.wait()
            except TimeoutError:
                stats["errors"] += 1
            for t in tasks:
                t.cancel()
        short = sum(max(0, h - last.get((j, o), 0)) for j in range(len(conns))
                    for o, h in targets.items())
        for ws in conns:
            await ws.close()
    pipe.send(("result", stats, dict(hist.counts), hist.max, short))


# --- the publisher -----------------------------------------------------------------------


async def _publish(opts: BenchOptions, url: str, ops: list[str], pub: UnitIdentity,
                   subs: list[UnitIdentity],
                   children: Sequence[tuple[mp.process.BaseProcess, Connection]],
                   hub: HubProcess | None, tls_ca: Path | None) -> dict[str, Any]:
    conn = AgentConnection(url, pub, ssl=None if tls_ca is None else client_context(tls_ca))
    await conn.connect()
    for op in ops:
        admin = OperationAdmin(pub, op, now=time.time)
        await admin.send(conn, admin.create(f"bench {op}", [s.signed for s in subs]))
    loop = asyncio.get_running_loop()
    for _, pipe in children:
        msg = await loop.run_in_executor(None, pipe.recv)
        if msg[0] != "ready":
            raise RuntimeError(f"subscriber process failed: {msg!r}")
    await asyncio.sleep(0.5)  # let subscriptions settle

    start = time.monotonic_ns()
    t0 = start + int(opts.warmup * 1e9)
    t1 = t0 + int(opts.duration * 1e9)
    for _, pipe in children:
        pipe.send(("window", t0, t1))
    pad = b"\0" * max(0, opts.size - TS)
    heads: dict[str, int] = dict.fromkeys(ops, 0)
    cpu0 = cpu1 = 0.0
    pids = [p.pid for p, _ in children if p.pid is not None]
    others0: dict[str, float] = {}
    sent = 0
    acked_at_t0 = acked_at_t1 = 0
    i = 0
    measuring = False
    while (now := time.monotonic_ns()) < t1:
        if not measuring and now >= t0:
            measuring = True
            acked_at_t0 = sent - conn.unacked
            if hub is not None:
                cpu0 = hub.cpu_seconds()
            others0 = {"publisher": time.process_time(),
                       "subscribers": sum(process_cpu_seconds(p) for p in pids)}
        if conn.unacked >= opts.window:
            await conn.wait_unacked_at_most(opts.window // 2)
            continue
        payload = now.to_bytes(TS, "big") + pad
        n = min(opts.batch, opts.window - conn.unacked)
        op = ops[i % len(ops)]
        i += 1
        for _ in range(n):
            conn.publish_nowait(op, payload)
        sent += n
        await asyncio.sleep(0)
    acked_at_t1 = sent - conn.unacked
    if hub is not None:
        cpu1 = hub.cpu_seconds()
    others = {"publisher": time.process_time() - others0.get("publisher", 0.0),
              "subscribers": sum(process_cpu_seconds(p) for p in pids)
              - others0.get("subscribers", 0.0)}
    await conn.wait_unacked_at_most(0)
    acked_in_window = acked_at_t1 - acked_at_t0
    for op in ops:
        heads[op] = (await conn.publish(op, b"\0" * TS))
    for _, pipe in children:
        pipe.send(("drain", heads))
    await conn.close()
    return {"acked_in_window": acked_in_window, "heads": heads, "hub_cpu_s": cpu1 - cpu0,
            "others_cpu_s": others}


def bench_units(subscribers: int) -> list[UnitSpec]:
    """The publisher (an OCU: it creates the operations) and the subscribers."""
    return [UnitSpec("BENCH-PUB", "BE", "bench", "ocu"),
            *(UnitSpec(f"BENCH-SUB-{i + 1:03d}", "BE", "bench") for i in range(subscribers))]


def bench_operations(taken: set[str], count: int) -> list[str]:
    """``count`` operation ids for the next run, ``BENCH-<run>-<i>`` with a run number
    that no operation in ``taken`` uses."""
    run_no = 1
    while any(op.startswith(f"BENCH-{run_no}-") for op in taken):
        run_no += 1
    return [f"BENCH-{run_no}-{i + 1}" for i in range(count)]


async def _join_running_hub(url: str, keys: Path, specs: list[UnitSpec], operations: int,
                            tls_ca: Path | None) -> tuple[str, Cast, list[str]]:
    """Enrol the bench's units with the running hub at ``url`` and pick this run's
    operations. Raises UsageError (key folder, hub not there, credential refused, CA file)
    and TlsError (a wss:// hub's certificate does not verify)."""
    folder = open_folder(keys, authority_key=True)
    own = own_identities(folder, specs)
    signer = registrar(folder.authority(), now=int(time.time()))
    async with HubApi(url, signer, ssl=trust([url], tls_ca)) as api:
        on_file = {u: c.credential.issued_at for u, c in (await api.directory()).items()}
        chosen = cast(specs, now=int(time.time()), folder=folder, own=own, on_file=on_file)
        await api.enroll(chosen.identities.values())
        return api.url, chosen, bench_operations(await api.operations(), operations)


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run one benchmark; returns the result dictionary (see module docstring). Raises
    UsageError for a bad key folder or a hub that is not there."""
    specs = bench_units(opts.subscribers)
    with tempfile.TemporaryDirectory(prefix="opshub-bench-") as tmp:
        hub: HubProcess | None = None
        tls_ca = opts.tls_ca
        if opts.hub_url is None:
            if tls_ca is not None:
                raise UsageError("--tls-ca goes with --hub wss://... (the bench's own hub "
                                 "over TLS: --tls)")
            chosen = cast(specs, now=int(time.time()))
            ops = bench_operations(set(), opts.operations)
            keys = Path(tmp) / "keys"
            KeyFolder(keys).write(chosen.authority, list(chosen.identities.values()))
            files = write_tls_folder(Path(tmp) / "tls") if opts.tls else None
            tls_ca = None if files is None else files.ca
            hub = HubProcess(keys, opts.db or Path(tmp) / "bench.db", fanout=opts.fanout,
                             loop=opts.hub_loop, tls=files)
            url = hub.url
        else:
            if opts.keys is None:
                raise UsageError("--hub needs --keys: the key folder of that hub's authority")
            if opts.tls:
                raise UsageError("--tls starts the bench's own hub over TLS; a running hub's "
                                 "wss:// URL goes with --tls-ca FILE")
            url, chosen, ops = run(_join_running_hub(opts.hub_url, opts.keys, specs,
                                                     opts.operations, tls_ca))
        pub, *subs = (chosen.identities[s.unit] for s in specs)
        children: list[tuple[mp.process.BaseProcess, Connection]] = []
        try:
            ctx = mp.get_context("spawn")
            for k in range(opts.sub_procs):
                mine = [s.to_json() for s in subs[k :: opts.sub_procs]]
                if not mine:
                    continue
                parent, child = ctx.Pipe()
                started = ctx.Process(target=_subscriber_main,
                                      args=(url, mine, ops, child, tls_ca), daemon=True)
                started.start()
                children.append((started, parent))
            pubres = run(_publish(opts, url, ops, pub, subs, children, hub, tls_ca))
            hist = LatencyHistogram()
            stats = {"received": 0, "in_window": 0, "gaps": 0, "errors": 0, "short": 0}
            for sub_proc, pipe in children:
                if not pipe.poll(90):
                    raise RuntimeError("a subscriber process did not report")
                _, s, counts, mx, short = pipe.recv()
                for k2, v in s.items():
                    stats[k2] += v
                stats["short"] += short
                hist.merge(counts)
                hist.max = max(hist.max, mx)
                sub_proc.join(10)
            peak = hub.peak_rss_mb() if hub is not None else None
        finally:
            for sub_proc, _ in children:
                if sub_proc.is_alive():
                    sub_proc.kill()
            hub_rc = hub.stop() if hub is not None else None
    expected = sum(pubres["heads"].values()) * opts.subscribers
    lost = stats["short"]
    result = {
        "ok": lost == 0 and stats["gaps"] == 0 and stats["errors"] == 0 and hub_rc in (0, None),
        "msgs_in_per_s": round(pubres["acked_in_window"] / opts.duration),
        "deliveries_per_s": round(stats["in_window"] / opts.duration),
        "latency_ms": {
            "p50": round(hist.percentile(50) / 1000, 3),
            "p90": round(hist.percentile(90) / 1000, 3),
            "p99": round(hist.percentile(99) / 1000, 3),
            "p999": round(hist.percentile(99.9) / 1000, 3),
            "max": round(hist.max / 1000, 3),
        },
        "hub_cpu_s": round(pubres["hub_cpu_s"], 2) if hub is not None else None,
        "hub_cpu_per_s": round(pubres["hub_cpu_s"] / opts.duration, 2) if hub else None,
        "hub_peak_rss_mb": round(peak, 1) if peak is not None else None,
        # where the rest of the machine's CPU went in the measured window
        "load_cpu_per_s": {k: round(v / opts.duration, 2)
                           for k, v in pubres["others_cpu_s"].items()},
        "published": sum(pubres["heads"].values()),
        "deliveries_expected": expected,
        "deliveries_received": stats["received"],
        "lost": lost,
        "gaps": stats["gaps"],
        "errors": stats["errors"],
        "operations": ops,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result whose figures are the medians of ``runs``; every run is kept in "runs"."""
    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    out = dict(runs[0])
    for key in ("msgs_in_per_s", "deliveries_per_s", "hub_cpu_s", "hub_cpu_per_s",
                "hub_peak_rss_mb"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = round(med(values), 2) if values else None
    out["latency_ms"] = {k: round(med([r["latency_ms"][k] for r in runs]), 3)
                         for k in runs[0]["latency_ms"]}
    out["ok"] = all(r["ok"] for r in runs)
    for key in ("lost", "gaps", "errors"):
        out[key] = sum(r[key] for r in runs)
    out["median_of"] = len(runs)
    out["runs"] = [{k: r[k] for k in ("msgs_in_per_s", "deliveries_per_s", "latency_ms",
                                      "hub_cpu_per_s", "hub_peak_rss_mb", "ok")} for r in runs]
    return out
