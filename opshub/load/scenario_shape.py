"""The scenario shape of ``opshub load --scenario``: one operation whose units are a
scenario's participants, each publishing its share of the traffic at the sizes of the
scenario's own messages, every participant reading the whole operation.

Pure apart from reading the scenario file (client.replay.scenario.load). The share of each
participant is what a replay of the scenario for the seed has it send: its planned
messages (client/replay/plan.py make_plan, the OCU's daily situation reports included)
and the reactions the replay's agents add at run time (client/replay/engine.py: a feedback
from each addressee of a background warning, a desk's answer to each background request;
the few notifications of a planted iARMS hit are left out). The sizes are the encoded
sizes (client.messages.content.encode: the bytes a SecureAgent encrypts) of the planned
messages each role sends; a role with fewer than MIN_ROLE_SAMPLE of them (the desks,
whose answers are made at run time) draws from all the planned messages.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from client.messages import content
from client.replay.plan import BACKGROUND, Plan, make_plan
from client.replay.scenario import Scenario, load, resolve
from opshub.load.spec import RateSpec, Shape, SizeSpec
from protocol import frames
from protocol.errors import ScenarioError, UsageError

#: Load units are named apart from the hub's real ones: a load run enrolls its units with
#: new credentials, which must never replace a real unit's.
PREFIX = "LOAD-"
MIN_ROLE_SAMPLE = 20


@dataclass(frozen=True, slots=True)
class MixUnit:
    unit: str  # its name on the hub: PREFIX + the scenario's
    role: str  # "ocu", "unit" or "liaison"
    #: messages it sends in a replay of the seed
    messages: int


@dataclass(frozen=True, slots=True)
class ScenarioMix:
    """Who takes part in a scenario's operation, what share of its messages each sends,
    and how large those messages are."""

    code: str
    source: str
    seed: int
    units: tuple[MixUnit, ...]  # the OCU first
    #: role -> encoded sizes of the planned messages it draws from
    sizes: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def ocu(self) -> MixUnit:
        return self.units[0]

    @property
    def total(self) -> int:
        return sum(u.messages for u in self.units)

    @property
    def publishers(self) -> list[MixUnit]:
        return [u for u in self.units if u.messages]

    def share(self, unit: MixUnit) -> float:
        return unit.messages / self.total

    def size_for(self, role: str | None) -> SizeSpec:
        """The sizes ``role`` draws from (None: every planned message's)."""
        chosen = dict(self.sizes).get(role or "", ()) or dict(self.sizes)[""]
        return SizeSpec(f"{self.code} {role or 'all'} messages", "sample", min(chosen),
                        max(chosen), chosen)

    def describe(self, shape: Shape) -> str:
        rate = (f"{shape.rate.text} msg/s in all" if shape.rate is not None
                else f"window {shape.window}")
        every = self.size_for(None).samples
        return (f"{shape.name}: scenario {self.code} (seed {self.seed}), 1 op x "
                f"{len(self.units)} participants ({len(self.publishers)} publish, the OCU "
                f"{self.share(self.ocu):.1%}; all read), {rate}, sizes of its "
                f"{len(every):,} planned messages (median {statistics.median(every):,.0f} B, "
                f"{min(every):,}-{max(every):,} B)")


def messages_per_unit(scenario: Scenario, plan: Plan) -> Counter[str]:
    """Messages each participant sends in a replay of ``plan``: planned and reactions."""
    sent = Counter(e.sender for e in plan.events)
    roles = {u: p.role for u, p in scenario.participants.items()}
    for e in plan.events:
        body = e.message
        if body is None or BACKGROUND not in body["id"]:
            continue  # storylines are played as written: nobody reacts to them
        if body["type"] == "warning":
            sent.update(u for u in body["addressees"] if roles.get(u) == "unit")
        elif body["type"] == "request_for_information":
            sent.update(to["unit"] for to in body["to"] if roles.get(to["unit"]) == "liaison")
    return sent


def sizes_by_role(scenario: Scenario, plan: Plan) -> dict[str, tuple[int, ...]]:
    """Role -> encoded sizes of its planned messages; "" -> every planned message's."""
    out: dict[str, list[int]] = {"": []}
    for e in plan.events:
        if e.message is None:
            continue  # a situation report, written at run time
        size = len(content.encode(e.message))
        out[""].append(size)
        out.setdefault(scenario.participants[e.sender].role, []).append(size)
    return {role: tuple(sizes) for role, sizes in out.items()
            if role == "" or len(sizes) >= MIN_ROLE_SAMPLE}


def mix_of(scenario: Scenario, plan: Plan, seed: int) -> ScenarioMix:
    """The mix of a loaded scenario and its plan. Raises UsageError for a participant
    whose load name is not a valid unit id."""
    sent = messages_per_unit(scenario, plan)
    order = [scenario.ocu, *(u for u in scenario.participants if u != scenario.ocu)]
    units = []
    for unit in order:
        name = PREFIX + unit
        if not frames.valid_id(name):
            raise UsageError(f"--scenario: participant {unit!r} makes the unit name {name!r}, "
                             f"which is not a valid unit id ([A-Za-z0-9._:-], 1-64)")
        units.append(MixUnit(name, scenario.participants[unit].role, sent[unit]))
    sizes = sizes_by_role(scenario, plan)
    if not sizes[""] or not sent:
        raise UsageError(f"--scenario: {scenario.path} plans no messages to take sizes from")
    return ScenarioMix(scenario.code, str(scenario.path), seed, tuple(units),
                       tuple(sorted(sizes.items())))


def load_mix(name_or_path: str, seed: int) -> ScenarioMix:
    """The mix of a scenario by name in seeds/ or by path, for ``seed``. Raises UsageError
    (the scenario's problems, prefixed --scenario)."""
    try:
        scenario = load(resolve(name_or_path))
        plan = make_plan(scenario, seed)
    except ScenarioError as exc:
        raise UsageError(f"--scenario: {exc.message}") from None
    return mix_of(scenario, plan, seed)


def scenario_shape(mix: ScenarioMix, rate: RateSpec) -> Shape:
    """The shape: one operation, the participants as publishers and subscribers, ``rate``
    messages/s in all (each publisher at its share)."""
    return Shape(name=mix.code.lower(), operations=1, publishers=len(mix.publishers),
                 subscribers=len(mix.units), rate=rate, size=mix.size_for(None),
                 scenario=mix, where="--")
