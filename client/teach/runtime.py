"""LessonRun: a lesson over a real hub. Every participant is a SecureAgent that reads the
whole operation; the engine (client/teach/lesson.py) decides what is carried out next,
and this runs it: the OCU opens the channel, each storyline message is encrypted and
sent by its own sender, the OCU commits the membership changes the instructor asks for.

After each item it waits until every member has read it, then keeps three views of it
for the lesson page (client/teach/web.py): the message as written; the entries the hub
stored for it, read back from the hub's own database (``stored``, given by whoever
started the hub: client/ never reads the hub's files itself); and what each member's
agent made of it. For a member that cannot read a message, the page shows what its own
keys do with the stored bytes: the decryption is tried, and its error shown.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from client.e2ee.message import Header
from client.identity import Authority, UnitIdentity
from client.messages import default_catalog
from client.messages.values import enum_words
from client.replay.scenario import Scenario
from client.secure import SecureAgent
from client.teach import lesson as le
from client.teach.explanations import Explanations
from client.teach.view import lesson_state
from protocol import frames as f
from protocol.errors import CryptoError, OpshubError, UsageError
from protocol.store import LogEntry

log = logging.getLogger("opshub.teach")

#: Seconds between the engine's ticks (the play pace is checked this often).
TICK = 0.1
#: Seconds every member gets to read an item before the lesson says it failed.
READ_WITHIN = 30.0

#: Entries of ``op`` after a seq, from the hub's database (blocking: run in a thread).
Stored = Callable[[str, int], list[LogEntry]]


class LessonRun:
    def __init__(self, scenario: Scenario, *, url: str, identities: dict[str, UnitIdentity],
                 authority: Authority, op: str, stored: Stored, explanations: Explanations,
                 items: list[le.Item] | None = None, hub_label: str = "",
                 wall: Callable[[], float] = time.monotonic,
                 token: Callable[[], str] = lambda: secrets.token_urlsafe(12)) -> None:
        """``stored(op, after)``: the hub's entries of ``op`` after a seq, from its
        database. ``items``: the lesson (default: ``lesson_items(scenario)``)."""
        self.scenario = scenario
        self.url = url
        self.identities = identities
        self.authority = authority
        self.op = op
        self.stored = stored
        self.explanations = explanations
        self.hub_label = hub_label or url
        self.wall = wall
        #: the lesson page's link is /lesson/<token>
        self.token = token()
        self.catalog = default_catalog()
        self.words = enum_words(self.catalog)
        self.engine = le.LessonEngine(items or le.lesson_items(scenario), scenario.ocu,
                                      scenario.participants)
        self.agents: dict[str, SecureAgent] = {}
        #: log seq -> unit -> (epoch, the decrypted message equals what was sent)
        self.reads: dict[int, dict[str, tuple[int, bool]]] = {}
        #: per item carried out, in item order
        self.records: list[le.Record] = []
        #: message id -> the message as sent (for references)
        self.sent: dict[str, dict[str, Any]] = {}
        self._last_seq = 0
        #: (seq, unit) -> what that unit's keys did with the stored entry
        self._tried: dict[tuple[int, str], str] = {}
        self._listeners: set[asyncio.Queue[str]] = set()
        self._carry: asyncio.Queue[le.Carry] = asyncio.Queue()
        self._stopped = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Start every agent, open the channel (the first item), then carry out what the
        engine asks until ``stop``. Closes every agent on the way out."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            try:
                for unit in self.scenario.participants:
                    agent = SecureAgent(self.url, self.identities[unit],
                                        [self.authority.public_key], packages=4,
                                        rotate_messages=1 << 30, rotate_seconds=1e9)
                    self.agents[unit] = agent
                    await agent.start()
                    tasks.create_task(self._read(unit, agent), name=f"lesson-read-{unit}")
                carrier = tasks.create_task(self._carrier(), name="lesson-carrier")
                ticker = tasks.create_task(self._ticker(), name="lesson-ticker")
                self._apply(self.engine.handle(le.Jump(index=0)))
                await self._stopped.wait()
                carrier.cancel()
                ticker.cancel()
            finally:
                self._tasks = None
                async with asyncio.TaskGroup() as closing:
                    for agent in self.agents.values():
                        closing.create_task(agent.close())

    def stop(self) -> None:
        self._stopped.set()

    async def _read(self, unit: str, agent: SecureAgent) -> None:
        async for m in agent.messages():
            if m.op != self.op:
                continue
            sent = self.sent.get(m.body["id"]) if m.body is not None else None
            self.reads.setdefault(m.seq, {})[unit] = (m.epoch, m.body == sent)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self._apply(self.engine.handle(le.Tick(now=self.wall())))

    async def _carrier(self) -> None:
        while True:
            carry = await self._carry.get()
            try:
                record = await self._carry_out(carry.item)
            except (OpshubError, TimeoutError) as exc:
                reason = str(exc) or "timed out waiting for the members"
                log.warning("lesson item %d failed: %s", carry.index, reason)
                self._apply(self.engine.handle(le.Failed(index=carry.index, reason=reason)))
                continue
            self.records.append(record)
            self._apply(self.engine.handle(le.Carried(index=carry.index, epoch=record.epoch)))

    def _apply(self, actions: list[le.Action]) -> None:
        for a in actions:
            match a:
                case le.Carry():
                    self._carry.put_nowait(a)
                case le.Changed():
                    self._notify()
                case le.Refused(reason=reason):
                    raise UsageError(reason)

    async def _carry_out(self, item: le.Item) -> le.Record:
        ocu = self.agents[self.scenario.ocu]
        if isinstance(item, le.MessageItem):
            body = {**item.message, "operation": self.op}
            self.sent[body["id"]] = body
            seq = await self.agents[item.sender].send(self.op, body)
            await self._members_read(seq, skip=item.sender)
            entries = await self._new_entries()
            epoch = Header.from_bytes(_entry(entries, seq).header).epoch
            return le.Record(entries, epoch, seq)
        if item.action == "create":
            await ocu.create_operation(self.op, self.scenario.name,
                                       [self.identities[u].signed for u in item.units])
            epoch = 0
        elif item.action == "remove":
            epoch = await ocu.change(self.op, remove=list(item.units))
        else:
            epoch = await ocu.change(self.op, add=[self.identities[u].signed for u in item.units])
        current = {u for u, m in self.engine.membership.items() if m.member}
        changed = set(item.units)
        members: set[str] = (current - changed if item.action == "remove" else current | changed
                   ) - {self.scenario.ocu}
        async with asyncio.timeout(READ_WITHIN):
            for u in members:
                await self.agents[u].wait_for_epoch(self.op, epoch)
            await self._members_read(ocu.read_up_to.get(self.op, 0), skip="",
                                     among=members)
        entries = await self._new_entries()
        commits = [e for e in entries if e.kind == f.KIND_COMMIT]
        holders = sorted(u for u, a in self.agents.items() if a.epoch(self.op) == epoch)
        return le.Record(entries, epoch, commits[-1].seq if commits else None, holders)

    async def _members_read(self, seq: int, *, skip: str, among: set[str] | None = None
                            ) -> None:
        """Wait until every member but ``skip`` has handled the log up to ``seq``."""
        readers = [a for u, a in self.agents.items()
                   if u != skip and self.engine.membership[u].member
                   and (among is None or u in among)]
        async with asyncio.timeout(READ_WITHIN):
            # a handful of agents, polled: an Event per agent and item would be noise
            while not all(a.read_up_to.get(self.op, 0) >= seq and a.unread == 0  # noqa: ASYNC110
                          for a in readers):
                await asyncio.sleep(0.005)

    async def _new_entries(self) -> list[LogEntry]:
        entries = await asyncio.to_thread(self.stored, self.op, self._last_seq)
        if entries:
            self._last_seq = entries[-1].seq
        return entries

    # --- the instructor --------------------------------------------------------------------

    async def control(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """An instructor's action: forward, back, jump (``index``), play, pause, pace
        (``seconds``), follow (``storyline``, or null for all), remove or add (``unit``).
        Raises UsageError naming what is
        wrong (an unknown action, a bad argument, or the engine's refusal)."""
        event: le.Event
        match action:
            case "forward":
                event = le.Forward()
            case "back":
                event = le.Back()
            case "jump":
                event = le.Jump(index=_int(args, "index"))
            case "play":
                event = le.Play(now=self.wall())
            case "pause":
                event = le.Pause()
            case "pace":
                event = le.SetPace(seconds=_number(args, "seconds"))
            case "follow":
                storyline = args.get("storyline")
                event = le.Follow(storyline=None if storyline in (None, "") else
                                  _text(args, "storyline"))
            case "remove":
                event = le.Remove(unit=_text(args, "unit"))
            case "add":
                event = le.Add(unit=_text(args, "unit"))
            case _:
                raise UsageError(f"unknown action {action!r} (forward, back, jump, play, "
                                 f"pause, pace, follow, remove, add)")
        self._apply(self.engine.handle(event))
        return {"cursor": self.engine.cursor, "done": self.engine.done}

    # --- pages -----------------------------------------------------------------------------

    def changes(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=64)
        self._listeners.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[str]) -> None:
        self._listeners.discard(queue)

    def _notify(self) -> None:
        for queue in self._listeners:
            if not queue.full():
                queue.put_nowait("lesson")

    def state(self) -> dict[str, Any]:
        """The lesson page's view: where the lesson is, every item in brief, the
        participants and countries, and the shown item in full (three panes)."""
        return lesson_state(self)

    def epoch_of(self, unit: str) -> int | None:
        agent = self.agents.get(unit)
        return None if agent is None else agent.epoch(self.op)

    def tried(self, seq: int, unit: str, entry: LogEntry) -> str:
        """What ``unit``'s own keys do with the stored ``entry``: the error they raise,
        or "decrypted" (which the page shows as a fault: it should not)."""
        key = (seq, unit)
        if key not in self._tried:
            member = self.agents[unit].member
            try:
                got = member.decrypt_batch(self.op, [(entry.header, entry.payload)],
                                           now=time.time())[0]
            except CryptoError as exc:
                got = exc
            self._tried[key] = (f"{got.code}: {got.message}" if isinstance(got, CryptoError)
                                else "decrypted")
        return self._tried[key]


def _entry(entries: list[LogEntry], seq: int) -> LogEntry:
    for e in entries:
        if e.seq == seq:
            return e
    raise UsageError(f"the hub's database has no entry {seq} (it acknowledged it)")


def _int(args: dict[str, Any], name: str) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"{name!r} must be a whole number, not {value!r}")
    return value


def _number(args: dict[str, Any], name: str) -> float:
    value = args.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise UsageError(f"{name!r} must be a number, not {value!r}")
    return float(value)


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name!r} must be a name, not {value!r}")
    return value

