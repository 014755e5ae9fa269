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

from collections import Counter

from client.messages import content
from client.replay.plan import BACKGROUND, Plan, make_plan
from client.replay.scenario import Scenario, load, resolve
from opshub.load.spec import MixUnit, RateSpec, ScenarioMix, Shape
from protocol import frames
from protocol.errors import ScenarioError, UsageError

#: Load units are named apart from the hub's real ones: a load run enrolls its units with
#: new credentials, which must never replace a real unit's.
PREFIX = "LOAD-"
MIN_ROLE_SAMPLE = 20


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
