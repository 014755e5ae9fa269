"""A load process: runs the publishers or the subscribers of its Assignment (opaque, or as
SecureAgents with --e2ee: e2ee.py) and answers the parent's messages (see messages.py for
the order), with a Tick every second from t_measure, and its CPU time in its Result.
Started by the runner with the ``spawn`` method, so it shares nothing with the parent but
its pipe and CLOCK_MONOTONIC.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol, assert_never

import aiohttp

from client.connection import AgentConnection
from client.identity import UnitIdentity
from client.tls import client_context
from hub.app import tune_gc
from opshub.load import messages as m
from opshub.load.channel import Channel, ChannelClosed
from opshub.load.e2ee import CryptoMeter, E2eeConfig, SecureUnit, epochs, join, secure_parts
from opshub.load.plan import Assignment, SubscriberSpec
from opshub.load.publisher import Publisher
from opshub.load.recorder import Recorder
from opshub.load.subscriber import Subscriber
from opshub.loops import run

log = logging.getLogger("opshub.load")

#: Connections opened at once while a process starts.
CONNECT_AT_ONCE = 32
#: Subscribers named in a Result as ending short, at most.
NAMED_SHORT = 20


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    #: unit -> the hub URLs it connects to, in the order it tries them
    urls: dict[str, tuple[str, ...]]
    assignment: Assignment
    identities: dict[str, dict[str, Any]]
    max_inflight: int
    #: --e2ee: the units are SecureAgents (e2ee.py)
    e2ee: E2eeConfig | None = None
    #: wss:// URLs: the CA file their certificate is checked against (None: the system's
    #: CAs). A file, not an SSLContext: the config crosses to a spawned process (pickled).
    tls_ca: Path | None = None


class Reader(Protocol):
    """A subscribed unit, as the worker drives it: Subscriber, or e2ee.SecureReader."""

    spec: SubscriberSpec
    done: asyncio.Event

    async def connect(self, http: aiohttp.ClientSession) -> Any: ...
    async def run(self, http: aiohttp.ClientSession, link: Any) -> None: ...
    def drain(self, msg: m.Drain) -> None: ...
    async def close(self) -> None: ...
    @property
    def missing(self) -> tuple[int, int]: ...


def worker_main(config: WorkerConfig, conn: Connection) -> None:
    """The entry point of a load process."""
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Ctrl-C reaches the whole process group: the parent decides, and when it has gone
    # its end of the pipe closes, which ends this process too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not run(_main(config, conn)):
        raise SystemExit(1)


async def _main(config: WorkerConfig, conn: Connection) -> bool:
    """Run the worker; False if it failed (the parent has been told why)."""
    chan = Channel(conn)
    chan.start()
    index = config.assignment.index
    try:
        await Worker(config, chan).run()
    except ChannelClosed as exc:
        # the parent has gone: nobody to report to. Said on stderr all the same: a parent
        # that is still there reports "load process N exited (status 0)", seen once in a
        # saturated --find-max run and not explained yet (docs/load-testing.md 7)
        log.warning("load process %d: its channel to the parent closed: %s", index, exc)
        return True
    except Exception as exc:  # whatever stops this process goes to the parent, which says it
        leaf: BaseException = exc
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        chan.send(m.Failed(index, f"{type(leaf).__name__}: {leaf}\n"
                                  f"{''.join(traceback.format_exception(exc))}"))
        return False
    finally:
        chan.close()
    return True


async def _bounded(aws: list[Awaitable[Any]], limit: int) -> list[Any]:
    """Await ``aws`` with at most ``limit`` running at once, results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(aw: Awaitable[Any]) -> Any:
        async with gate:
            return await aw

    return list(await asyncio.gather(*(one(a) for a in aws)))


class Worker:
    def __init__(self, config: WorkerConfig, chan: Channel) -> None:
        self.config = config
        self.chan = chan
        self.rec = Recorder(config.assignment.index)
        ident = {u: UnitIdentity.from_json(d) for u, d in config.identities.items()}
        a = config.assignment
        self.units: dict[str, SecureUnit] = {}
        self.meter = CryptoMeter()
        self.pubs: list[Publisher]
        self.subs: list[Reader]
        self.ssl = None if config.tls_ca is None else client_context(config.tls_ca)
        if config.e2ee is None:
            self.pubs = [Publisher(p, AgentConnection(config.urls[p.unit], ident[p.unit],
                                                      ssl=self.ssl),
                                   self.rec, max_inflight=config.max_inflight)
                         for p in a.publishers]
            self.subs = [Subscriber(s, ident[s.unit], config.urls[s.unit], self.rec)
                         for s in a.subscribers]
        else:
            self.units, self.pubs, readers = secure_parts(
                config.urls, a, ident, config.e2ee, self.rec, max_inflight=config.max_inflight,
                meter=self.meter, ssl=self.ssl)
            self.subs = list(readers)
        self.cpu_at_start = 0.0
        self.wall_at_start = 0.0
        self.phases: list[m.Phase] = []
        self.more = asyncio.Event()  # a phase was added, or Finish came
        self.finishing = False

    async def run(self) -> None:
        tune_gc()
        # limit=0: the connector's default pool (100) would cap the subscribers; the raw
        # subscribers' wss:// sockets check the hub's certificate with the connector's ssl
        connector = aiohttp.TCPConnector(limit=0, ssl=True if self.ssl is None else self.ssl)
        async with (aiohttp.ClientSession(connector=connector) as http,
                    asyncio.TaskGroup() as tg):
            await _bounded([u.start() for u in self.units.values()], CONNECT_AT_ONCE)
            await _bounded([p.connect() for p in self.pubs], CONNECT_AT_ONCE)
            sockets = await _bounded([s.connect(http) for s in self.subs], CONNECT_AT_ONCE)
            readers = [tg.create_task(s.run(http, ws)) for s, ws in zip(self.subs, sockets,
                                                                         strict=True)]
            self.chan.send(m.Ready(self.config.assignment.index, os.getpid()))
            drivers: list[asyncio.Task[None]] = []
            ticker: asyncio.Task[None] | None = None
            second = [0]
            while True:
                msg: m.ToWorker = await self.chan.recv()
                match msg:
                    case m.Join():
                        if self.config.e2ee is not None:
                            await join(self.units, self.config.e2ee, msg.within)
                        self.chan.send(m.Joined(self.config.assignment.index))
                    case m.Start():
                        self.cpu_at_start = time.process_time()
                        self.wall_at_start = time.monotonic()
                        self.rec.start(msg.t_measure_ns)
                        ticker = tg.create_task(self._ticks(msg.t_measure_ns, second))
                        drivers = [tg.create_task(self._drive(p, tg)) for p in self.pubs]
                    case m.Phase():
                        self.phases.append(msg)
                        self.more.set()
                    case m.Finish():
                        await self._finish(drivers, msg.within)
                    case m.Drain():
                        await self._drain(msg)
                    case m.Stop():
                        break
                    case _:
                        assert_never(msg)
            cpu_s = time.process_time() - self.cpu_at_start
            wall_s = time.monotonic() - self.wall_at_start
            for task in [*readers, *drivers, *([ticker] if ticker else [])]:
                task.cancel()
            await asyncio.gather(*(p.close() for p in self.pubs),
                                 *(s.close() for s in self.subs))
            for unit in self.units.values():
                unit.note_errors(self.rec)
            ops = epochs(self.units, self.config.e2ee) if self.config.e2ee else {}
            await asyncio.gather(*(u.close() for u in self.units.values()))
        self._update_gauges()
        self.chan.send(self.rec.tick(second[0]))  # what the last second had so far
        missing = [(s.spec.unit, *s.missing) for s in self.subs]
        self.chan.send(replace(self.rec.result(
            missing=sum(x[1] for x in missing), missing_directed=sum(x[2] for x in missing),
            short=[u for u, a, b in missing if a or b][:NAMED_SHORT]),
            role=self.config.assignment.role, cpu_s=round(cpu_s, 3), wall_s=round(wall_s, 3),
            crypto=self.meter.snapshot(), epochs=ops))

    async def _drive(self, pub: Publisher, tg: asyncio.TaskGroup) -> None:
        """Run the phases in order as they come, until Finish."""
        done = 0
        while True:
            while done == len(self.phases):
                if self.finishing:
                    return
                self.more.clear()
                await self.more.wait()
            phase = self.phases[done]
            done += 1
            rate = phase.rates.get(pub.spec.shape)
            await pub.run(None if rate is None else rate * pub.spec.share, phase.start_ns,
                          phase.end_ns, tg)

    async def _ticks(self, t_measure_ns: int, second: list[int]) -> None:
        await asyncio.sleep(max(0.0, (t_measure_ns - time.monotonic_ns()) / 1e9))
        self.rec.drop_interval()
        while True:
            boundary = t_measure_ns + (second[0] + 1) * 1_000_000_000
            await asyncio.sleep(max(0.0, (boundary - time.monotonic_ns()) / 1e9))
            self._update_gauges()
            self.chan.send(self.rec.tick(second[0]))
            second[0] += 1

    def _update_gauges(self) -> None:
        self.rec.inflight = sum(p.inflight for p in self.pubs)
        self.rec.lag_ns = max((p.lag_ns for p in self.pubs), default=0)

    async def _finish(self, drivers: list[asyncio.Task[None]], within: float) -> None:
        """Let the publishers end their phases and wait for every answer (``within`` s
        in all), then report what the hub acknowledged."""
        self.finishing = True
        self.more.set()
        deadline = time.monotonic() + within
        if drivers:
            _, late = await asyncio.wait(drivers, timeout=within)
            for task in late:
                task.cancel()
        left = [await p.settle(max(0.0, deadline - time.monotonic())) for p in self.pubs]
        heads: dict[str, int] = {}
        directed: Counter[str] = Counter()
        senders: dict[str, dict[str, int]] = {}
        for p in self.pubs:
            heads[p.spec.op] = max(heads.get(p.spec.op, 0), p.head)
            directed.update(p.directed)
            senders.setdefault(p.spec.op, {})[p.spec.unit] = p.acked
        self.chan.send(m.Finished(self.config.assignment.index, heads, dict(directed),
                                  sum(left), senders))

    async def _drain(self, msg: m.Drain) -> None:
        for s in self.subs:
            s.drain(msg)
        waits: list[Callable[[], Awaitable[Any]]] = [s.done.wait for s in self.subs]
        complete = True
        try:
            async with asyncio.timeout(msg.within):
                await asyncio.gather(*(w() for w in waits))
        except TimeoutError:
            complete = False
        self.chan.send(m.Drained(self.config.assignment.index, complete))
