"""The replay: every participant of a scenario as an agent over a real WebSocket to a
hub, the planned traffic sent on a virtual clock, the agents' reactions, and the OCU's
after-action report.

Roles:
- the OCU creates the operation's channel (one commit sealing the epoch keys to every
  member), decrypts and checks everything, tallies it, sends a situation report each
  evening built from its tally, and hands each request for information to the desk it is
  addressed to (the desks sit in the coordination unit, as in the documented
  operations);
- a liaison desk answers those requests from its simulated databases;
- a national unit sends its reports and requests, reads what the OCU and the desks send,
  and answers each warning addressed to it with a feedback.

Agents improvise only for background traffic (ids with ``-B``); storylines are played as
written. The clock is virtual: at ``speed=None`` (max) it jumps from one window of
``WINDOW`` virtual seconds to the next as soon as every agent has read everything; with
a factor it waits window / factor real seconds per window.

The operation runs on the hub under its own id (``operation_id``, by default the
scenario's code), so that one scenario can be replayed any number of times on one hub;
every message carries that id. The traffic depends on the scenario and the seed only.
Every task has an owner: the agents' readers and the pipelined sends run in task groups
of ``Replay.run``, so a failing agent ends the run with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import heapq
import itertools
import random
import resource
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from ssl import SSLContext
from typing import Any

from client.connection import HubUrls, rotated
from client.identity import Authority, UnitIdentity, UnitSpec
from client.messages import default_catalog
from client.messages.summary import summarise
from client.messages.values import enum_words
from client.replay.plan import (
    BACKGROUND,
    FEEDBACK_ACTIONS,
    FEEDBACK_SPREAD,
    NOTIFY_AFTER,
    REACTION_DELAY,
    Event,
    Plan,
    make_plan,
)
from client.replay.progress import ProgressView, message_line
from client.replay.scenario import Participant, Scenario, envelope
from client.replay.tally import Tally
from client.secure import Message, SecureAgent
from protocol.errors import UsageError
from protocol.signatures import SignatureMemo

WINDOW = 3600.0  # virtual seconds per step of the clock
ROTATE_EVERY = 2000  # the OCU commits new epoch keys after this many messages
#: Seconds a message may wait for its ack before the replay gives up: over several hub
#: nodes a stream leader's election or a node's failover holds acks for seconds (the
#: message stays queued and is re-sent meanwhile); a hub silent for a minute fails the run.
SEND_WITHIN = 60.0
MIN_REACTION = REACTION_DELAY  # reactions land in a later window than what caused them
assert MIN_REACTION >= WINDOW
TICK = 1.0  # real seconds between progress updates while waiting for the virtual clock
#: Garbage-collection thresholds while a replay runs, the hub's (hub/app.py). With the
#: defaults (700, 10, 10) the 300-agency replay spent a third of its time in ~120 full
#: collections of a heap that grows to 1 GB, as every unit's ledger keeps each message
#: it read (docs/performance.md, "Scale: 300 agencies").
GC_THRESHOLDS = (50_000, 20, 20)


class Clock:
    """Virtual seconds since the operation's first day, 00:00 UTC."""

    def __init__(self, scenario: Scenario) -> None:
        self.t0 = scenario.t0
        self.now = 0.0

    def seconds(self, rfc3339: str) -> float:
        t = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
        return (t - self.t0).total_seconds()


class ReplayAgent:
    """One participant: its SecureAgent and what it does with what it reads."""

    def __init__(self, replay: Replay, who: Participant, agent: SecureAgent) -> None:
        self.replay = replay
        self.who = who
        self.agent = agent
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Read and react in a task of the replay's task group (see ``Replay.run``)."""
        self.task = self.replay.tasks.create_task(self._run(), name=f"replay-{self.who.unit}")

    async def _run(self) -> None:
        async for m in self.agent.messages():
            self.busy = True
            try:
                if m.body is not None:
                    self.on_message(m, m.body)
            finally:
                self.busy = False

    def idle(self) -> bool:
        """Has read everything sent to the operation that it reads, and handled it."""
        reads = self.agent.reads
        last = self.replay.last_seq
        need = (max(last.values(), default=0) if reads is None
                else max((last.get(u, 0) for u in reads), default=0))
        return (self.agent.read_up_to.get(self.replay.op, 0) >= need
                and self.agent.unread == 0 and not self.busy)

    def on_message(self, m: Message, body: dict[str, Any]) -> None:
        if (body["type"] == "warning" and self.replay.improvises(body)
                and self.who.unit in body["addressees"]):
            rng = self.replay.rng_for(body["id"], self.who.unit)
            at = self.replay.clock.seconds(body["sent_at"]) + MIN_REACTION + rng.randrange(
                int(FEEDBACK_SPREAD))
            self.replay.schedule(at, self.who.unit, {
                "type": "feedback", "refers_to": body["id"],
                "action_taken": rng.choice(FEEDBACK_ACTIONS),
                "result": "Handled at the control point; nothing further to report."})


class HeldAgent(ReplayAgent):
    """A unit a person holds (an exercise seat): it reacts to nothing and sends nothing
    planned; what it reads goes to ``Replay.on_held`` (the seat's inbox)."""

    def on_message(self, m: Message, body: dict[str, Any]) -> None:
        if self.replay.on_held is not None:
            self.replay.on_held(self.who.unit, m, body)


class DeskAgent(ReplayAgent):
    def answer(self, request: dict[str, Any]) -> None:
        """Look the request up in this desk's databases and schedule the answer. (The
        OCU hands the request over in the room: the desk has not decrypted it itself.)"""
        self.agent.ledger(self.replay.op).record(request)
        q = request["query"]
        key = ((q.get("vehicle") or {}).get("registration")
               or (q.get("firearm") or {}).get("serial_number")
               or (q.get("document") or {}).get("number")
               or next((p.get("given_names") for p in q.get("persons", [])), None))
        record = self.replay.plan.databases.get(self.who.unit, {}).get(key or "")
        rng = self.replay.rng_for(request["id"], self.who.unit)
        lo, hi = self.replay.scenario.background.get("response_minutes") or [20, 120]
        at = self.replay.clock.seconds(request["sent_at"]) + max(
            MIN_REACTION, rng.randint(lo, hi) * 60.0)
        body: dict[str, Any] = {"type": "rfi_response", "refers_to": request["id"],
                                "result": "hit" if record else "no_hit",
                                "responded_by": self.who.party()}
        if record:
            body["hits"] = [{k: record[k] for k in ("database", "reference", "summary")}]
        self.replay.schedule(at, self.who.unit, body)
        if record and record["database"] == "interpol_iarms":
            # iARMS: a match is notified to the INTERPOL General Secretariat, the WCO
            # Secretariat and the NCB of the country that recorded the firearm
            country = record["recording_country"]
            self.replay.schedule(at + NOTIFY_AFTER, self.who.unit, {
                "type": "hit_notification", "refers_to": request["id"],
                "database": "interpol_iarms",
                "record": {"reference": record["reference"], "recording_country": country,
                           "recorded_as": record["recorded_as"]},
                "firearm": q.get("firearm") or {},
                "recipients": [{"kind": "interpol_general_secretariat"},
                               {"kind": "wco_secretariat"},
                               {"kind": "ncb", "country": country},
                               {"kind": "unit", "unit": request["sender"]["unit"]}]})


class OcuAgent(ReplayAgent):
    def on_message(self, m: Message, body: dict[str, Any]) -> None:
        self.replay.record(body)
        if body["type"] == "request_for_information" and self.replay.improvises(body):
            for to in body["to"]:
                desk = self.replay.agents.get(to["unit"])
                if isinstance(desk, DeskAgent):
                    desk.answer(body)


class Replay:
    def __init__(self, scenario: Scenario, *, seed: int = 1, speed: float | None = None,
                 progress: Callable[[str], None] | None = None,
                 operation_id: str | None = None,
                 pace: Callable[[float], Awaitable[None]] | None = None,
                 held: frozenset[str] = frozenset()) -> None:
        """Plan the replay. ``pace(t)``, if given, returns once virtual time ``t`` may be
        played (an exercise's clock: paused, stepped, any speed) and replaces ``speed``.
        ``held``: units people play (exercise seats): their planned messages are not sent
        and they react to nothing; what they read goes to ``on_held``. Raises
        ScenarioError when the scenario's figures cannot be generated."""
        self.scenario = scenario
        #: the operation's id on the hub, carried by every message
        self.op = operation_id or scenario.code
        self.seed = seed
        self.speed = speed
        self.pace = pace
        self.held = held
        #: (unit, message, body) for each message a held unit reads
        self.on_held: Callable[[str, Message, dict[str, Any]], None] | None = None
        #: planned messages of held units, not sent (people play those units)
        self.not_sent = 0
        #: answers to people's messages beyond the plan (an exercise's seats), at most
        self.reaction_allowance = 0
        #: called with each message the OCU has read or sent, as it tallies it
        self.on_record: Callable[[dict[str, Any]], None] | None = None
        self.progress = progress or (lambda _line: None)
        #: where the progress line goes on a terminal (rewritten in place); None: to
        #: ``progress``, as a line every few seconds
        self.status: Callable[[str], None] | None = None
        self.clock = Clock(scenario)
        self.plan: Plan = make_plan(scenario, seed)
        last = max((e.at for e in self.plan.events), default=0.0)
        #: what is printed as the replay goes (a line per message or per day, progress)
        self.view = ProgressView(planned=self.plan.expected_messages, speed=speed,
                                 end=(last // WINDOW + 1) * WINDOW)
        self._shown = 0  # messages of ``log`` past the per-message lines
        self.tally = Tally(scenario.participants)
        self.agents: dict[str, ReplayAgent] = {}
        #: signatures verified by one agent, not verified again by the next: every unit
        #: reads each message the OCU sends (docs/performance.md, "Scale: 300 agencies")
        self.signatures = SignatureMemo()
        #: what is to be sent, in time order; bounded: the plan counts every message the
        #: run sends, reactions included, so more is a bug (``schedule`` refuses it)
        self._agenda: list[tuple[float, int, str, dict[str, Any] | None, int]] = []
        self._scheduled = 0
        self._order = itertools.count()
        self._tasks: asyncio.TaskGroup | None = None
        self._started: float | None = None
        self.wall_seconds = 0.0
        #: per sender, the log seq of its latest message (what readers wait for)
        self.last_seq: dict[str, int] = {}
        self.sent = 0
        self.log: list[dict[str, Any]] = []  # what the OCU read or sent, for the report
        self.reactions: dict[str, int] = {}  # per sender, for message ids
        #: storyline message id -> storyline, and what the OCU read of them since the
        #: last progress line (shown as the day's events)
        self._story_ids = {st.message["id"]: st.storyline for st in scenario.steps}
        self._story_seen: list[tuple[float, dict[str, Any]]] = []
        self._words = enum_words(default_catalog())
        #: called after each window with its number (tests inject faults here)
        self.on_window: Callable[[int], Awaitable[None]] | None = None

    # --- bookkeeping ---------------------------------------------------------------------

    def rng_for(self, *parts: str) -> random.Random:
        # the scenario's code, not the operation id: every run of a seed is the same
        return random.Random(":".join(["opshub", self.scenario.code, str(self.seed), *parts]))

    def improvises(self, body: dict[str, Any]) -> bool:
        """Whether agents answer ``body`` on their own: background traffic, and what
        people at held seats send (storylines are played as written)."""
        return BACKGROUND in body["id"] or body["sender"]["unit"] in self.held

    def schedule(self, at: float, sender: str, body: dict[str, Any] | None, day: int = 0
                 ) -> None:
        """Put a message on the agenda. Raises UsageError past the plan's message count
        plus ``reaction_allowance`` (an agent reacting more than planned: a bug, and an
        agenda without bound)."""
        if self._scheduled >= self.plan.expected_messages + self.reaction_allowance:
            raise UsageError(f"{sender} would send more than the {self.plan.expected_messages}"
                             f" messages planned")
        self._scheduled += 1
        heapq.heappush(self._agenda, (at, next(self._order), sender, body, day))

    @property
    def tasks(self) -> asyncio.TaskGroup:
        """The task group of the running replay (agents' readers belong to it)."""
        if self._tasks is None:
            raise UsageError("the replay is not running")
        return self._tasks

    def record(self, message: dict[str, Any]) -> None:
        """The OCU has read (or sent) ``message``: tally it."""
        at = self.clock.seconds(message["sent_at"])
        self.tally.add(message, at=at)
        self.log.append(message)
        if message["id"] in self._story_ids:
            self._story_seen.append((at, message))
        if self.on_record is not None:
            self.on_record(message)

    # --- running -------------------------------------------------------------------------

    async def run(self, url: HubUrls, identities: dict[str, UnitIdentity],
                  authority: Authority, *, ssl: SSLContext | None = None) -> dict[str, Any]:
        """Replay over the hub at ``url`` (which must trust ``authority``), or over the
        nodes of one cluster at several URLs: the agents are spread over them round robin
        in the scenario's order of participants (``rotated``), each falling back on the
        others. ``ssl``: for wss:// URLs, what verifies the hub's certificate (see
        AgentConnection). Returns what the run itself measured (``outcome``). Cancelled,
        it closes every agent first: ``outcome`` and the tally then hold what happened so
        far."""
        self._started = time.perf_counter()
        try:
            with fewer_collections():
                async with asyncio.TaskGroup() as tasks:
                    self._tasks = tasks
                    try:
                        await self._start_agents(url, identities, authority, ssl)
                        await self._create_channel(identities)
                        for e in self.plan.events:
                            self.schedule(e.at, e.sender, e.message, e.day)
                        await self._drive()
                        epoch = self.agents[self.scenario.ocu].agent.epoch(self.op)
                        self.progress(f"keys     final epoch {epoch} (the OCU commits new "
                                      f"keys every {ROTATE_EVERY} messages)")
                    finally:
                        await self._stop_agents()
        finally:
            self._tasks = None
            self.wall_seconds = time.perf_counter() - self._started
        return self.outcome()

    def outcome(self) -> dict[str, Any]:
        """What the run measured so far: wall time, messages sent, the OCU's epoch and
        what each agent rejected."""
        ocu = self.agents.get(self.scenario.ocu)
        return {"operation_id": self.op, "wall_seconds": round(self.wall_seconds, 2),
                "sent": self.sent,
                "decrypted": sum(a.agent.decrypted for a in self.agents.values()),
                "agents_max_rss_mb": round(max_rss_mb()),
                "final_epoch": ocu.agent.epoch(self.op) if ocu is not None else None,
                "rejected": {u: len(a.agent.rejected) for u, a in self.agents.items()}}

    async def _stop_agents(self) -> None:
        """Stop the readers, then close every agent's connection, together."""
        for a in self.agents.values():
            if a.task is not None:
                a.task.cancel()
        async with asyncio.TaskGroup() as closing:
            for a in self.agents.values():
                closing.create_task(a.agent.close())

    async def _start_agents(self, url: HubUrls, identities: dict[str, UnitIdentity],
                            authority: Authority, ssl: SSLContext | None) -> None:
        s = self.scenario
        partners: dict[str, set[str]] = defaultdict(set)
        for story in s.storylines:
            members = {step["from"] for step in story["steps"]}
            for u in members:
                partners[u] |= members
        for index, (unit, who) in enumerate(s.participants.items()):
            if who.role == "ocu":
                reads = None
            else:
                # a unit reads the OCU (tasking, warnings) and its storylines' partners; a
                # desk its storylines' partners (requests reach it in the OCU's room)
                reads = frozenset(partners[unit] | ({s.ocu} if who.role == "unit"
                                                    else set()))
            if unit in self.held:
                reads = None  # a person sees the whole room; the seat's view filters it
            elif reads is not None:
                reads |= self.held  # agents answer what people send
            secure = SecureAgent(rotated(url, index), identities[unit],
                                 [authority.public_key], reads=reads,
                                 packages=4, rotate_messages=ROTATE_EVERY,
                                 signatures=self.signatures, ssl=ssl)
            cls: type[ReplayAgent] = (
                HeldAgent if unit in self.held
                else {"ocu": OcuAgent, "liaison": DeskAgent}.get(who.role, ReplayAgent))
            agent = cls(self, who, secure)
            # listed before it connects: a start that fails or is cancelled half-way
            # leaves a connection that _stop_agents must close
            self.agents[unit] = agent
            await secure.start()
            agent.start()

    async def _create_channel(self, identities: dict[str, UnitIdentity]) -> None:
        ocu = self.agents[self.scenario.ocu].agent
        members = [identities[u].signed for u in self.agents if u != self.scenario.ocu]
        await ocu.create_operation(self.op, self.scenario.name, members)
        for u, a in self.agents.items():
            if u != self.scenario.ocu:
                await a.agent.wait_for_epoch(self.op, 0)
        self.progress(f"channel  {self.op}: epoch 0, {len(self.agents)} members, keys "
                      f"sealed to each")

    async def _drive(self) -> None:
        day_seen = 0
        real0 = time.perf_counter()
        window = 0
        window_end = 0.0
        while self._agenda:
            window += 1
            window_end = (self._agenda[0][0] // WINDOW + 1) * WINDOW
            batch = []
            while self._agenda and self._agenda[0][0] < window_end:
                batch.append(heapq.heappop(self._agenda))
            if self.pace is not None:
                await self.pace(window_end)
            elif self.speed is not None:
                due = real0 + window_end / self.speed
                while (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(min(delay, TICK))
                    self._show_progress(real0)
            async with asyncio.TaskGroup() as senders:
                for sender, items in _by_sender(batch).items():
                    if sender in self.held:
                        self.not_sent += len(items)
                        continue
                    senders.create_task(self._send_all(sender, items))
            await self._quiesce()
            if self.on_window is not None:
                await self.on_window(window)
            self._message_progress()
            day = int(window_end // 86400) + 1
            if day != day_seen and day_seen:
                self._day_progress(day_seen)
            day_seen = day
            self._show_progress(real0, window_end)
        self._day_progress(day_seen, final=True)
        self._show_progress(real0, window_end, final=True)

    async def _send_all(self, sender: str, items: list[tuple[float, int, str, Any, int]]
                        ) -> None:
        """A sender's messages of one window, pipelined: each is checked, encrypted and
        queued in order at once; the acks come back together."""
        agent = self.agents[sender].agent
        async with asyncio.TaskGroup() as sends:
            for at, _, _, body, day in items:
                if body is None:
                    body = self._sitrep(at, day)
                elif "sent_at" not in body:
                    body = _with_envelope(self, sender, at, body)
                elif body["operation"] != self.op:  # planned under the scenario's code
                    body = {**body, "operation": self.op}
                # the task runs up to its publish now, in order (ratchet and ledger order)
                sends.create_task(self._send_one(agent, sender, body))
                await asyncio.sleep(0)
                if sender == self.scenario.ocu:
                    self.record(body)

    async def _send_one(self, agent: SecureAgent, sender: str, body: dict[str, Any]) -> None:
        seq = await agent.send(self.op, body, within=SEND_WITHIN)
        self.sent += 1
        self.last_seq[sender] = max(self.last_seq.get(sender, 0), seq)

    async def _quiesce(self, within: float = 120.0) -> None:
        async with asyncio.timeout(within):
            # polls many agents' positions; an Event per agent and window would be noise
            while not all(a.idle() for a in self.agents.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.0005)

    def _day_progress(self, day: int, final: bool = False) -> None:
        t = self.tally.totals()
        date = self.scenario.start + dt.timedelta(days=day - 1)
        label = f"{'end':<18}" if final else f"day {day:<3} {date}"
        self.progress(f"{label}  messages {int(t.get('messages', 0)):>6}  "
                      f"seizure reports {int(t.get('reports', 0)):>4}  arrests "
                      f"{int(t.get('arrests', 0)):>4}  hits {int(t.get('hits', 0)):>3}")
        # the documented cases of the day, as the OCU read them (each already has its
        # line when messages are shown one by one)
        if not self.view.per_message:
            for at, m in sorted(self._story_seen, key=lambda e: e[0]):
                self.progress(self._message_line(at, m, dated=False))
        self._story_seen.clear()

    def _message_progress(self) -> None:
        """A line for each message the OCU read or sent in the window, in virtual time
        order, when the view shows messages one by one."""
        new, self._shown = self.log[self._shown:], len(self.log)
        if self.view.per_message:
            timed = [(self.clock.seconds(m["sent_at"]), m) for m in new]
            for at, m in sorted(timed, key=lambda e: e[0]):
                self.progress(self._message_line(at, m, dated=True))

    def _message_line(self, at: float, m: dict[str, Any], *, dated: bool) -> str:
        what = summarise(m, self._words) or m["type"].replace("_", " ")
        return message_line(at, m["sender"]["unit"], m["type"], what, dated=dated)

    def _show_progress(self, real0: float, virtual: float | None = None,
                       final: bool = False) -> None:
        """The progress line, if due; ``virtual`` defaults to the clock at the speed
        factor while waiting for it."""
        real = time.perf_counter() - real0
        if virtual is None:
            virtual = real * (self.speed or 0.0)
        line = self.view.status(sent=self.sent, virtual=virtual, real=real,
                                tty=self.status is not None, final=final)
        if line is not None:
            (self.status or self.progress)(line)

    def _sitrep(self, at: float, day: int) -> dict[str, Any]:
        t = self.tally.totals()
        by_country: Counter[str] = Counter()
        for r in self.tally.live_reports():
            by_country[r["sender"]["country"]] += 1
        body = {"type": "situation_report",
                "period": {"from": self.scenario.when(0), "to": self.scenario.when(at)},
                "day": day,
                "totals": {"messages": int(t.get("messages", 0)),
                           "seizures": int(t.get("reports", 0)),
                           "arrests": int(t.get("arrests", 0)),
                           "database_hits": int(t.get("hits", 0)),
                           "by_country": [{"country": c, "seizures": n}
                                          for c, n in sorted(by_country.items())][:50]}}
        return _with_envelope(self, self.scenario.ocu, at, body)


def _with_envelope(replay: Replay, sender: str, at: float, body: dict[str, Any]
                   ) -> dict[str, Any]:
    replay.reactions[sender] = replay.reactions.get(sender, 0) + 1
    message_id = f"{sender}.R{replay.reactions[sender]:04d}".upper()
    return envelope(replay.op, replay.scenario.participants[sender], message_id, at,
                    dict(body), start_of=replay.scenario.data)


def _by_sender(batch: list[tuple[float, int, str, Any, int]]
               ) -> dict[str, list[tuple[float, int, str, Any, int]]]:
    out: dict[str, list[tuple[float, int, str, Any, int]]] = defaultdict(list)
    for item in batch:
        out[item[2]].append(item)
    return out


def identities_for(scenario: Scenario, *, now: int) -> tuple[Authority, dict[str, UnitIdentity]]:
    authority = Authority.generate()
    ids = {u: authority.enroll(UnitSpec(u, p.country, p.agency, p.role), now=now - 60)
           for u, p in scenario.participants.items()}
    return authority, ids


def max_rss_mb() -> float:
    """The peak resident memory of this process so far, in MiB (Linux counts KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


class _Collections:
    """GC_THRESHOLDS while at least one replay runs in this process (an exercise server
    may run several at once); the thresholds found before the first, after the last."""

    running = 0
    before = gc.get_threshold()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect garbage at GC_THRESHOLDS inside the block (see ``_Collections``)."""
    if _Collections.running == 0:
        _Collections.before = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
    _Collections.running += 1
    try:
        yield
    finally:
        _Collections.running -= 1
        if _Collections.running == 0:
            gc.set_threshold(*_Collections.before)


__all__ = ["Event", "Replay", "identities_for"]
