"""``opshub load --scenario``: one operation shaped like a scenario of seeds/ (its
participants, the share of the traffic each sends in a replay of the seed, the sizes of
its messages), opaque and with --e2ee against a real hub on 127.0.0.1; and the options
it refuses."""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

import msgpack
import pytest

from client.messages import content
from client.replay.plan import make_plan as replay_plan
from client.replay.scenario import load, resolve
from opshub.cli import build_parser
from opshub.load.command import options
from opshub.load.plan import make_plan
from opshub.load.runner import run_load
from opshub.load.scenario_shape import PREFIX, load_mix, scenario_shape
from opshub.load.spec import LoadOptions, parse_rate
from protocol.errors import UsageError
from tests.opshub.load.conftest import ServedHub

SEED = 3


def test_scenario_mix_takes_participants_shares_and_sizes_from_a_seed() -> None:
    """The mix of calypso-2 for a seed: every participant once (the OCU first), the
    OCU's planned messages as its count, about the scenario's message budget in all, and
    the encoded sizes of the replay's planned messages to draw from."""
    scenario = load(resolve("calypso-2"))
    plan = replay_plan(scenario, SEED)
    mix = load_mix("calypso-2", SEED)
    assert mix.units[0].unit == PREFIX + scenario.ocu
    assert sorted(u.unit for u in mix.units) == sorted(PREFIX + u for u in scenario.participants)
    assert mix.ocu.role == "ocu"
    assert mix.ocu.messages == Counter(e.sender for e in plan.events)[scenario.ocu]
    budget = int(scenario.background["messages"])
    assert abs(mix.total - budget) <= 0.01 * budget, (mix.total, budget)
    planned = sorted(len(content.encode(e.message)) for e in plan.events if e.message)
    assert sorted(mix.size_for(None).samples) == planned
    assert set(mix.size_for("ocu").samples) <= set(planned)
    assert load_mix("calypso-2", SEED + 1) != mix  # another seed, other traffic


def test_scenario_plan_makes_each_participant_a_publisher_and_a_reader() -> None:
    """Every participant subscribes; each publishes its share of the total rate; with
    --e2ee the scenario's OCU creates the channel and a message is owed to everyone but
    its sender, and a unit that publishes and reads runs in one process."""
    mix = load_mix("trigger-vii", SEED)
    shape = scenario_shape(mix, parse_rate("200"))
    assert shape.offered(200) == 200
    opaque = make_plan([shape], ["OP"])
    assert {s.unit for s in opaque.subscribers} == {u.unit for u in mix.units}
    assert sum(p.share for p in opaque.publishers) == pytest.approx(1.0)
    assert {p.fanout for p in opaque.publishers} == {len(mix.units)}
    assert not opaque.admins
    e2ee = make_plan([shape], ["OP"], e2ee=True)
    assert e2ee.admins == {"OP": mix.ocu.unit}
    assert {p.fanout for p in e2ee.publishers} == {len(mix.units) - 1}
    roles = {u.unit: u.role for u in e2ee.unit_specs()}
    assert len(e2ee.unit_specs()) == len(mix.units) + 1  # and LOAD-OCU
    assert roles[mix.ocu.unit] == "ocu"
    assignments = e2ee.split(1, 2, together=True)
    assert [a.role for a in assignments] == ["subscribers", "subscribers"]
    for a in assignments:
        assert {p.unit for p in a.publishers} <= {s.unit for s in a.subscribers}


def _stored(hub: ServedHub, op: str) -> list[list[Any]]:
    """op's log in the served hub's SQLite file: [seq, sender, kind, header, payload, at]."""
    with sqlite3.connect(hub.keys.parent / "hub.db") as db:
        rows = db.execute("SELECT body FROM segments WHERE op = ? ORDER BY last_seq", (op,))
        return [entry for (body,) in rows for entry in msgpack.unpackb(body)]


def _run(hub: ServedHub, scenario: str, rate: str, **kw: Any) -> dict[str, Any]:
    shape = scenario_shape(load_mix(scenario, SEED), parse_rate(rate))
    settings: dict[str, Any] = {"duration": 1.5, "warmup": 0.5, "drain_timeout": 20.0,
                                "seed": SEED, **kw}
    return run_load(LoadOptions(shapes=(shape,), hub_url=hub.url, metrics=(hub.metrics,),
                                keys=hub.keys, **settings))


def test_scenario_shape_opaque_run_sends_each_share_at_the_scenario_sizes(
        served_hub: ServedHub) -> None:
    """An opaque run of calypso-2 at 150 msg/s in all: every participant gets every
    message; the hub's log holds each publisher's share of the 2 s schedule, each
    payload as long as one of its role's planned messages."""
    mix = load_mix("calypso-2", SEED)
    result = _run(served_hub, "calypso-2", "150")
    d = result["delivery"]
    assert d["complete"], d
    assert d["received"] == d["expected"] > 0, d
    assert result["errors"]["total"] == 0, result["errors"]
    entries = [e for e in _stored(served_hub, result["operations"][0]) if e[2] == 0]
    by_sender = Counter(e[1] for e in entries)
    for u in mix.publishers:
        planned = mix.share(u) * 150 * 2.0  # 2 s: the warm-up and the measured 1.5 s
        assert abs(by_sender[u.unit] - planned) <= 1.5, (u, by_sender[u.unit], planned)
    roles = {u.unit: u.role for u in mix.units}
    for e in entries:
        assert len(e[4]) in mix.size_for(roles[e[1]]).samples, (e[1], len(e[4]))


def test_scenario_shape_with_e2ee_is_cocair_v_encrypted(served_hub: ServedHub) -> None:
    """COCAIR V with --e2ee: its 38 participants as SecureAgents, the OCU rotating keys
    every 60 messages; each message is decrypted and verified by the 37 others."""
    result = _run(served_hub, "cocair-v", "100", duration=1.0, e2ee=True, sub_procs=2,
                  rotate_messages=60)
    d = result["delivery"]
    assert d["complete"], d
    assert d["received"] == d["expected"] > 0, d
    assert (d["gaps"], d["duplicates"]) == (0, 0), d
    assert d["expected"] == result["messages"]["acked"] * 37
    assert result["errors"]["total"] == 0, result["errors"]
    assert "38 participants" in result["shapes"][0]
    assert result["cpu"]["rotations"] >= 1, result["cpu"]
    assert result["cpu"]["crypto"]["decrypt"]["count"] == d["received"]


@pytest.mark.parametrize(("args", "says"), [
    (["--scenario", "cocair-v", "--subscribers", "5"],
     "--scenario takes the operation's participants, traffic and sizes from the scenario "
     "(--rate is the total): drop --subscribers"),
    (["--scenario", "cocair-v", "--window", "4"], "drop --window"),
    (["--scenario", "cocair-v", "--profile", "x.yaml"], "drop --profile"),
    (["--scenario", "no-such-operation"], "--scenario: no scenario 'no-such-operation' in"),
])
def test_scenario_shape_refuses_what_the_scenario_decides(args: list[str], says: str) -> None:
    """Shape options beside --scenario, or a scenario that does not exist, are refused
    naming the option."""
    with pytest.raises(UsageError) as err:
        options(build_parser().parse_args(["load", *args]))
    assert says in err.value.message
