"""``opshub load --e2ee``: the run's units as real SecureAgents (client/secure.py), so that
the figures are what agents see: every message signed and encrypted by its publisher,
decrypted and verified by each reader, and keys rotated by each operation's OCU.

One SecureAgent per unit of a load process (a unit that publishes and reads is one agent:
two would replace each other's key packages). The OCU of each operation creates its
channel once every member's key packages are on the hub (``join``), reads the whole
operation and rotates its keys every ``rotate_messages`` messages it has encrypted or
decrypted in the epoch (client/secure_admin.py), as in a replay (client/replay/engine.py).
Readers are SecureAgents that read everything (``reads=None``); publishers that do not
read ask the hub for the commits only (``reads=frozenset()``).

A SecurePublisher encrypts with the agent's Member and queues the ciphertext on the
agent's connection, as ``SecureAgent.send`` does for schema messages, without the task
per message that ``SecureAgent.publish`` awaits: open loop sends thousands a second. An
OCU that publishes rotates from its reads (each message it decrypts checks the count).
A SecureReader takes each message when the agent hands it over decrypted and verified;
its latency is measured then. Rejections (a message that failed a check) and an agent
that stopped count as errors; an agent that stops fails the load process.

Must not reach into the agents' private state: it uses their public attributes (member,
conn, clock, rejected, failure) and calls. CryptoMeter wraps the Member's crypto calls
(passing everything through) to time them.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

import aiohttp

from client.connection import HubUrls
from client.e2ee.channel import Member
from client.identity import UnitIdentity
from client.secure import Message, SecureAgent
from opshub.identities import Cast
from opshub.load import messages as m
from opshub.load.e2ee_traffic import Order, SenderOrder, content, read_content
from opshub.load.plan import Assignment, Plan, PublisherSpec, SubscriberSpec
from opshub.load.publisher import Publisher
from opshub.load.recorder import Recorder
from protocol.credentials import SignedCredential
from protocol.errors import OpshubError

#: Key packages per agent, as a replay's agents have (client/replay/engine.py): each is a
#: hybrid-KEM key pair made at start, and a rotation takes one per member.
PACKAGES = 4


@dataclass(frozen=True, slots=True)
class E2eeConfig:
    """What a load process needs for --e2ee beyond its units' identities."""

    authority_key: bytes
    rotate_messages: int | None
    #: op -> (its OCU, the other members' credentials), for the OCUs of this process
    channels: dict[str, tuple[str, tuple[SignedCredential, ...]]]

    def for_units(self, units: Collection[str]) -> E2eeConfig:
        """This config for a process running ``units``: only their OCUs' channels."""
        return E2eeConfig(self.authority_key, self.rotate_messages,
                          {op: c for op, c in self.channels.items() if c[0] in units})


#: Member calls timed, by kind: per message (encrypt, decrypt) or per call (keys:
#: commits proposed or applied, welcomes opened).
CRYPTO_CALLS = {"encrypt": "encrypt", "decrypt_batch": "decrypt", "decrypt": "decrypt",
                "on_commit": "keys", "on_welcome": "keys", "propose_create": "keys",
                "propose_change": "keys"}


class CryptoMeter:
    """Seconds spent in the agents' crypto calls of one process, by kind, and how many
    messages (encrypt, decrypt) or calls (keys) they took. The calls never yield, so
    their wall time is CPU time (perf_counter: a vDSO read, unlike process_time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.count: Counter[str] = Counter()
        self._inside = False  # decrypt_batch falls back to decrypt: count the outer call

    def attach(self, member: Member) -> None:
        for name, kind in CRYPTO_CALLS.items():
            call = getattr(member, name, None)
            if call is not None:
                setattr(member, name, self._timed(call, kind, batch=name == "decrypt_batch"))

    def _timed(self, call: Callable[..., Any], kind: str, *, batch: bool) -> Callable[..., Any]:
        @functools.wraps(call)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._inside:
                return call(*args, **kwargs)
            self._inside = True
            t = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - t
                self.count[kind] += len(args[1]) if batch else 1  # (op, items)
                self._inside = False

        return timed

    def snapshot(self) -> dict[str, tuple[float, int]]:
        return {k: (round(self.seconds[k], 6), self.count[k]) for k in sorted(self.seconds)}


class SecureUnit:
    """One unit's SecureAgent in a load process, and the operations it is a member of."""

    def __init__(self, url: HubUrls, identity: UnitIdentity, config: E2eeConfig,
                 meter: CryptoMeter, *, reads: frozenset[str] | None,
                 ssl: SSLContext | None = None) -> None:
        make = functools.partial(SecureAgent, url, identity, [config.authority_key],
                                 packages=PACKAGES, reads=reads, ssl=ssl)
        rotate = config.rotate_messages
        self.agent = make() if rotate is None else make(rotate_messages=rotate)
        meter.attach(self.agent.member)
        self.ops: set[str] = set()
        self._noted = 0  # rejections counted as errors so far

    async def start(self) -> None:
        await self.agent.start()

    async def close(self) -> None:
        await self.agent.close()

    def note_errors(self, rec: Recorder) -> None:
        """Count the agent's new rejections as errors, by code."""
        rejected = self.agent.rejected
        for r in rejected[self._noted:]:
            rec.error(f"rejected: {r.code}")
        self._noted = len(rejected)


class SecurePublisher(Publisher):
    """A Publisher whose messages its unit's agent signs and encrypts (see the module
    docstring); the worker starts and closes the agent."""

    def __init__(self, spec: PublisherSpec, unit: SecureUnit, rec: Recorder, *,
                 max_inflight: int) -> None:
        super().__init__(spec, unit.agent.conn, rec, max_inflight=max_inflight)
        self.unit = unit
        self.counter = 0

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _publish(self, size: int, intended: int, now: int) -> asyncio.Future[int]:
        """Raises CryptoError (no keys for the operation), and what
        AgentConnection.publish_nowait raises."""
        agent, op = self.unit.agent, self.spec.op
        body = content(size, intended, now, self.counter)
        header, ciphertext = agent.member.encrypt(op, body, now=agent.clock())
        fut = agent.conn.publish_nowait(op, ciphertext, header=header)
        self.counter += 1  # only once queued: a counter never sent would read as a gap
        return fut


class SecureReader:
    """A reading unit: checks that every sender's messages arrive once each, in order
    (their counters), and records each one's latency once decrypted and verified."""

    def __init__(self, spec: SubscriberSpec, unit: SecureUnit, rec: Recorder) -> None:
        self.spec = spec
        self.unit = unit
        self.rec = rec
        self.order = SenderOrder()
        self.done = asyncio.Event()
        self.owed: dict[str, int] | None = None  # sender -> messages, once Drain says
        self._seq = 0

    async def connect(self, http: aiohttp.ClientSession) -> None:
        """Nothing: the worker starts the unit's agent."""

    async def run(self, http: aiohttp.ClientSession, link: object) -> None:
        """Take the agent's messages until cancelled. Raises AgentStopped if it stops."""
        async for msg in self.unit.agent.messages():
            self._take(msg, time.monotonic_ns())

    def _take(self, msg: Message, now: int) -> None:
        rec = self.rec
        got = read_content(msg.content) if msg.op == self.spec.op else None
        if got is None:
            rec.error("e2ee: not a load message")
            return
        if msg.seq <= self._seq:
            rec.count(m.DUPLICATES)
            return
        self._seq = msg.seq
        intended, sent, counter = got
        order = self.order.take(msg.sender, counter)
        if order is Order.DUPLICATE:
            rec.count(m.DUPLICATES)
            return
        if order is Order.GAP:
            rec.count(m.GAPS)
        rec.count(m.DELIVERED)
        rec.delivery(intended, sent, now)
        self.unit.note_errors(rec)
        if self.owed is not None:
            self._check()

    def _check(self) -> None:
        received = self.order.received
        if self.owed is not None and all(received.get(s, 0) >= n
                                         for s, n in self.owed.items()):
            self.done.set()

    def drain(self, msg: m.Drain) -> None:
        """From now on, ``done`` is set once every other sender's acknowledged messages
        are in."""
        self.owed = {s: n for s, n in msg.senders.get(self.spec.op, {}).items()
                     if s != self.spec.unit}
        self.unit.note_errors(self.rec)
        self._check()

    async def close(self) -> None:
        """Nothing: the worker closes the unit's agent."""

    @property
    def missing(self) -> tuple[int, int]:
        """(messages, directed messages) still owed by the Drain targets."""
        return self.order.missing(self.owed or {}), 0


def channels(plan: Plan, cast: Cast, rotate_messages: int | None) -> E2eeConfig:
    """The run's E2eeConfig: each operation's OCU and its other members' credentials."""
    ids = cast.identities
    return E2eeConfig(cast.authority.public_key, rotate_messages, {
        op: (admin, tuple(ids[u].signed for u in plan.operations[op] if u != admin))
        for op, admin in plan.admins.items()})


def secure_parts(urls: Mapping[str, HubUrls], assignment: Assignment,
                 identities: Mapping[str, UnitIdentity], config: E2eeConfig, rec: Recorder, *,
                 max_inflight: int, meter: CryptoMeter, ssl: SSLContext | None = None
                 ) -> tuple[dict[str, SecureUnit], list[Publisher], list[SecureReader]]:
    """One SecureUnit per unit of ``assignment`` (on its hub URLs in ``urls``; ``ssl``
    for wss:// ones), its publishers and its readers."""
    readers = {s.unit for s in assignment.subscribers}
    units: dict[str, SecureUnit] = {}
    specs: list[PublisherSpec | SubscriberSpec] = [*assignment.publishers,
                                                   *assignment.subscribers]
    for spec in specs:
        unit = units.get(spec.unit)
        if unit is None:
            unit = units[spec.unit] = SecureUnit(
                urls[spec.unit], identities[spec.unit], config, meter,
                reads=None if spec.unit in readers else frozenset(), ssl=ssl)
        unit.ops.add(spec.op)
    pubs: list[Publisher] = [SecurePublisher(p, units[p.unit], rec, max_inflight=max_inflight)
                             for p in assignment.publishers]
    subs = [SecureReader(s, units[s.unit], rec) for s in assignment.subscribers]
    return units, pubs, subs


async def join(units: Mapping[str, SecureUnit], config: E2eeConfig, within: float) -> None:
    """The OCUs among ``units`` create their operations' channels (every member's key
    packages are on the hub: each load process said Ready once its agents had started),
    and every unit waits for its operation's first epoch. Raises OpshubError naming the
    units still without keys after ``within`` seconds; CryptoError, RequestError (the hub
    refused a commit) and AgentStopped as the agents raise them."""
    try:
        async with asyncio.timeout(within), asyncio.TaskGroup() as tg:
            for op, (admin, members) in config.channels.items():
                tg.create_task(units[admin].agent.create_operation(op, f"load {op}",
                                                                   list(members)))
            for unit in units.values():
                for op in unit.ops:
                    tg.create_task(unit.agent.wait_for_epoch(op, 0, within))
    except TimeoutError:
        waiting = sorted(u for u, unit in units.items()
                         if any(unit.agent.epoch(op) is None for op in unit.ops))
        raise OpshubError(f"{len(waiting)} unit(s) had no keys for their operation after "
                          f"{within:g} s: {', '.join(waiting[:5])}") from None


def epochs(units: Mapping[str, SecureUnit], config: E2eeConfig) -> dict[str, int]:
    """op -> the epoch its OCU holds now, for the OCUs of this process."""
    out = {}
    for op, (admin, _) in config.channels.items():
        epoch = units[admin].agent.epoch(op)
        if epoch is not None:
            out[op] = epoch
    return out
