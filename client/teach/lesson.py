"""A lesson's decisions as a sans-I/O state machine: which item is shown, which is carried
out next, and who may read what.

A lesson is a scenario's storylines as a list of *items* in time order: the OCU opening
the channel, then each storyline message as written, with the membership changes the
instructor makes inserted where they happen. The instructor moves a cursor over it:
forward, back, jump (to a storyline, a day, any item), play at a pace. Moving past what
has been carried out asks the runtime (client/teach/runtime.py) to carry out the next
item over the hub (``Carry``), one at a time and in order; moving back only moves the
cursor, since what the hub stored stays stored.

Events in (``handle``), actions out, as in the exercise engine (client/exercise/engine.py):
no asyncio, no sockets, no clock; the instructor's mistakes come back as ``Refused`` and
change nothing. The runtime reports each item carried out (``Carried``) or failed
(``Failed``).

It also holds the pure rules a lesson teaches: whom a message is for (``recipients``),
which workflow step it is (``step_key``), and why a member can or cannot read a message
(``reading``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

from client.replay.scenario import Participant, Scenario
from protocol.errors import UsageError
from protocol.store import LogEntry

#: Seconds between items when playing, unless the instructor sets another pace.
DEFAULT_PACE = 4.0
MIN_PACE = 0.5
MAX_PACE = 600.0


# --- items ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageItem:
    """A storyline's message, sent by ``sender`` as written."""

    storyline: str
    at: float  # virtual seconds since the operation's first day
    sender: str
    message: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipItem:
    """The OCU opens the channel (``create``: ``units`` are its first members), removes a
    unit or adds one."""

    action: Literal["create", "remove", "add"]
    at: float
    units: tuple[str, ...]


Item = MessageItem | MembershipItem


def lesson_items(scenario: Scenario, *, late: Iterable[str] = ()) -> list[Item]:
    """The opening of the channel (every participant but ``late`` ones and the OCU), then
    every storyline step in time order (ties in the scenario's order). Raises UsageError
    for a late unit that is not a participant, or is the OCU."""
    late = set(late)
    unknown = sorted(late - set(scenario.participants))
    if unknown:
        raise UsageError(f"no participant {', '.join(unknown)} in {scenario.code}")
    if scenario.ocu in late:
        raise UsageError(f"{scenario.ocu} is the OCU: it opens the channel, it cannot join "
                         f"late")
    first = tuple(u for u in scenario.participants if u != scenario.ocu and u not in late)
    items: list[Item] = [MembershipItem(action="create", at=0.0, units=first)]
    steps = sorted(enumerate(scenario.steps), key=lambda p: (p[1].at, p[0]))
    items += [MessageItem(storyline=s.storyline, at=s.at, sender=s.sender, message=s.message)
              for _, s in steps]
    return items


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """Show the next item (carrying it out first if it has not been)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Back:
    """Show the previous item; the hub keeps what it stored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Jump:
    """Show item ``index``, carrying out every item before it that has not been."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    """Move forward one item every ``pace`` seconds from ``now`` (wall seconds)."""

    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPace:
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Follow:
    """Forward, back and play move through ``storyline``'s messages only (and membership
    changes), carrying out what lies between; None: through every item."""

    storyline: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Remove:
    """The OCU removes ``unit`` from the operation, after the items carried out so far."""

    unit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Add:
    """The OCU adds ``unit`` (a late joiner, or one removed before)."""

    unit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Carried:
    """The runtime carried out item ``index``; ``epoch`` is the operation's epoch after it."""

    index: int
    epoch: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """Carrying out item ``index`` failed for ``reason``: the lesson stops moving forward."""

    index: int
    reason: str


Event = (Forward | Back | Jump | Play | Pause | SetPace | Follow | Tick | Remove | Add
         | Carried | Failed)


# --- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Carry:
    """Carry out item ``index`` (send the message, or commit the membership change)."""

    index: int
    item: Item


@dataclass(frozen=True, slots=True, kw_only=True)
class Changed:
    """What the pages show changed."""


@dataclass(frozen=True, slots=True)
class Refused:
    event: Event
    reason: str


Action = Carry | Changed | Refused


# --- membership -------------------------------------------------------------------------


@dataclass(slots=True)
class Membership:
    """One unit's history in the operation: (joined epoch, removed epoch or None) spans."""

    spans: list[tuple[int, int | None]] = field(default_factory=list)

    @property
    def member(self) -> bool:
        return bool(self.spans) and self.spans[-1][1] is None

    @property
    def removed_at(self) -> int | None:
        return self.spans[-1][1] if self.spans else None

    def member_at(self, epoch: int) -> bool:
        return any(j <= epoch and (r is None or epoch < r) for j, r in self.spans)


@dataclass(slots=True)
class Record:
    """What carrying out one item left: the hub's entries for it and the epoch after."""

    entries: list[LogEntry]
    epoch: int
    #: the log seq of the item's own entry (the message, or the membership commit)
    seq: int | None = None
    #: who held the new epoch's keys once it was carried out (membership items)
    holders: list[str] = field(default_factory=list)


# --- the engine -------------------------------------------------------------------------


class LessonEngine:
    def __init__(self, items: list[Item], ocu: str, units: Iterable[str]) -> None:
        if not items or not isinstance(items[0], MembershipItem):
            raise ValueError("a lesson starts with the opening of its channel")
        self.items = list(items)
        self.ocu = ocu
        self.units = set(units)
        #: items carried out: 0..done-1
        self.done = 0
        #: the item shown (-1: none yet)
        self.cursor = -1
        #: carry items up to this index, one at a time
        self.target = -1
        self.carrying: int | None = None
        self.playing = False
        self.pace = DEFAULT_PACE
        #: the storyline forward and back keep to (None: every item)
        self.follow: str | None = None
        self.storylines = {i.storyline for i in items if isinstance(i, MessageItem)}
        self._next_at = 0.0
        self.epoch: int | None = None
        #: why the lesson cannot go on, if it cannot
        self.failure: str | None = None
        self.membership: dict[str, Membership] = {u: Membership() for u in self.units}
        #: per item carried out: the epoch after it
        self.epochs: list[int] = []

    def handle(self, event: Event) -> list[Action]:
        match event:
            case Forward():
                return self._go(event, self._next())
            case Back():
                earlier = [i for i in range(self.cursor) if self._followed(i)]
                if not earlier:
                    return [Refused(event, "this is the first item" if self.follow is None
                                    else f"this is the first item of {self.follow}")]
                self.cursor = earlier[-1]
                return [Changed()]
            case Follow(storyline=storyline):
                if storyline is not None and storyline not in self.storylines:
                    return [Refused(event, f"no storyline {storyline!r} (there are: "
                                           f"{', '.join(sorted(self.storylines))})")]
                self.follow = storyline
                return [Changed()]
            case Jump(index=index):
                if not 0 <= index < len(self.items):
                    return [Refused(event, f"no item {index}: the lesson has "
                                           f"{len(self.items)} (0 to {len(self.items) - 1})")]
                return self._go(event, index)
            case Play(now=now):
                if self.playing:
                    return [Refused(event, "already playing")]
                if self._next() >= len(self.items):
                    return [Refused(event, "this is the last item")]
                self.playing = True
                self._next_at = now + self.pace
                return [Changed()]
            case Pause():
                if not self.playing:
                    return [Refused(event, "not playing")]
                self.playing = False
                return [Changed()]
            case SetPace(seconds=s):
                if not (math.isfinite(s) and MIN_PACE <= s <= MAX_PACE):
                    return [Refused(event, f"a pace must be {MIN_PACE} to {MAX_PACE:g} "
                                           f"seconds per item, not {s!r}")]
                self._next_at += s - self.pace
                self.pace = s
                return [Changed()]
            case Tick(now=now):
                if not self.playing or now < self._next_at or self.moving:
                    return []
                self._next_at = now + self.pace
                if self._next() >= len(self.items):
                    self.playing = False
                    return [Changed()]
                actions = self._go(event, self._next())
                if any(isinstance(a, Refused) for a in actions):
                    self.playing = False
                    return [*actions, Changed()]
                return actions
            case Remove(unit=unit) | Add(unit=unit):
                return self._membership(event, unit)
            case Carried(index=index, epoch=epoch):
                return self._carried(index, epoch)
            case Failed(index=index, reason=reason):
                self.carrying = None
                self.target = self.done - 1
                self.playing = False
                self.failure = f"item {index}: {reason}"
                return [Changed()]
            case _:
                assert_never(event)

    # --- moving ---------------------------------------------------------------------------

    def _followed(self, index: int) -> bool:
        item = self.items[index]
        return (self.follow is None or isinstance(item, MembershipItem)
                or item.storyline == self.follow)

    def _next(self) -> int:
        """The next item forward goes to (len(items): none)."""
        return next((i for i in range(self.cursor + 1, len(self.items)) if self._followed(i)),
                    len(self.items))

    @property
    def moving(self) -> bool:
        return self.carrying is not None or self.target >= self.done

    def _go(self, event: Event, index: int) -> list[Action]:
        if index >= len(self.items):
            return [Refused(event, "this is the last item")]
        if index < self.done:
            self.cursor = index
            return [Changed()]
        if self.failure is not None:
            return [Refused(event, f"the lesson cannot go on: {self.failure}")]
        if self.moving:
            return [Refused(event, "still carrying out the previous step")]
        problem = self._blocked(index)
        if problem is not None:
            return [Refused(event, problem)]
        self.target = index
        return [*self._next_carry(), Changed()]

    def _blocked(self, index: int) -> str | None:
        """Why items done..index cannot be carried out (a sender that is not a member)."""
        members = {u for u, m in self.membership.items() if m.member}
        for i in range(self.done, index + 1):
            item = self.items[i]
            if isinstance(item, MembershipItem):
                if item.action == "remove":
                    members -= set(item.units)
                else:
                    members |= set(item.units)
            elif item.sender != self.ocu and item.sender not in members:
                return (f"{item.sender} sends item {i} ({item.message['id']}) but is not a "
                        f"member now: add it back first")
        return None

    def _next_carry(self) -> list[Action]:
        if self.carrying is not None or self.done > self.target:
            return []
        self.carrying = self.done
        return [Carry(index=self.done, item=self.items[self.done])]

    def _carried(self, index: int, epoch: int) -> list[Action]:
        if index != self.carrying:
            raise ValueError(f"item {index} was carried out, but {self.carrying} was asked")
        item = self.items[index]
        if isinstance(item, MembershipItem):
            units = (self.ocu, *item.units) if item.action == "create" else item.units
            for u in units:
                m = self.membership.setdefault(u, Membership())
                if item.action == "remove":
                    m.spans[-1] = (m.spans[-1][0], epoch)
                else:
                    m.spans.append((epoch, None))
        self.epoch = epoch
        self.epochs.append(epoch)
        self.carrying = None
        self.done = index + 1
        self.cursor = index
        return [*self._next_carry(), Changed()]

    # --- membership -----------------------------------------------------------------------

    def _membership(self, event: Remove | Add, unit: str) -> list[Action]:
        if unit not in self.units:
            return [Refused(event, f"no participant {unit!r} in this lesson")]
        if unit == self.ocu:
            return [Refused(event, f"{unit} is the OCU: it runs the channel")]
        if self.failure is not None:
            return [Refused(event, f"the lesson cannot go on: {self.failure}")]
        if self.done == 0 or self.moving:
            return [Refused(event, "wait until the channel is open and the step carried out")]
        member = self.membership[unit].member
        if isinstance(event, Remove) and not member:
            return [Refused(event, f"{unit} is not a member")]
        if isinstance(event, Add) and member:
            return [Refused(event, f"{unit} is already a member")]
        action: Literal["remove", "add"] = "remove" if isinstance(event, Remove) else "add"
        at = self.items[self.done - 1].at
        self.items.insert(self.done, MembershipItem(action=action, at=at, units=(unit,)))
        self.target = self.done
        return [*self._next_carry(), Changed()]


# --- what a lesson teaches --------------------------------------------------------------


def recipients(message: Mapping[str, Any], participants: Mapping[str, Participant],
               ocu: str, earlier: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], bool]:
    """Whom ``message`` is for: (units, to everyone). Every member of the channel can
    read it; this is who it addresses: a warning's addressees (a country means its every
    unit), a request's desks, a notification's units and countries, the sender of the
    message an answer refers to; else the OCU, or everyone when the OCU sends it."""
    sender = message["sender"]["unit"]
    by_country: dict[str, list[str]] = {}
    for p in participants.values():
        by_country.setdefault(p.country, []).append(p.unit)

    def units_of(name: str) -> list[str]:
        return [name] if name in participants else by_country.get(name, [])

    kind = message.get("type")
    found: list[str] = []
    if kind == "warning":
        for a in message.get("addressees", []):
            found += units_of(a)  # a country code or a unit id (warning.schema.json)
    elif kind == "request_for_information":
        found = [p["unit"] for p in message.get("to", []) if p.get("unit") in participants]
    elif kind == "hit_notification":
        for r in message.get("recipients", []):
            if r.get("kind") == "unit":
                found += units_of(r.get("unit", ""))
            elif r.get("kind") == "ncb":
                found += units_of(r.get("country", ""))
    if not found and isinstance(ref := message.get("refers_to"), str) and ref in earlier:
        found = [earlier[ref]["sender"]["unit"]]
    found = [u for u in dict.fromkeys(found) if u != sender]
    if found:
        return found, False
    if sender == ocu:
        return [], True
    return [ocu], False


def step_key(message: Mapping[str, Any], earlier: Iterable[Mapping[str, Any]]) -> str:
    """The workflow step ``message`` is, as a key of the explanations' ``steps``:
    the type, or ``type.variant`` (an answer's result, a controlled delivery's phase, a
    seizure reported by a unit that ``earlier`` messages (of its storyline) warned)."""
    kind = str(message.get("type"))
    if kind == "rfi_response" and message.get("result"):
        return f"rfi_response.{message['result']}"
    if kind == "controlled_delivery" and message.get("phase"):
        return f"controlled_delivery.{message['phase']}"
    if kind == "seizure_report":
        sender = message["sender"]
        mine = {sender.get("unit"), sender.get("country")}
        for m in earlier:
            if m.get("type") == "warning" and mine & set(m.get("addressees", [])):
                return "seizure_report.after_warning"
    return kind


@dataclass(frozen=True, slots=True)
class Reading:
    """Why one unit can or cannot read one message: ``reason`` is a key of the
    explanations' ``reading`` (read, sender, removed, not_yet, not_member, no_record)."""

    unit: str
    can: bool
    reason: str
    joined: int | None = None
    removed: int | None = None


def reading(unit: str, *, sender: str, epoch: int, read: bool,
            history: Membership | None) -> Reading:
    """Why ``unit`` can or cannot read a message of ``epoch`` sent by ``sender``; ``read``:
    its agent did decrypt it."""
    if unit == sender:
        return Reading(unit, True, "sender")
    if read:
        return Reading(unit, True, "read")
    if history is None or not history.spans:
        return Reading(unit, False, "not_member")
    if history.member_at(epoch):
        return Reading(unit, False, "no_record")  # a member that did not read it: a fault
    before = [r for _, r in history.spans if r is not None and r <= epoch]
    if before:  # it was a member once, and removed before this epoch
        return Reading(unit, False, "removed", removed=max(before))
    return Reading(unit, False, "not_yet", joined=min(j for j, _ in history.spans))
