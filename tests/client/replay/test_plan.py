"""The traffic generator refuses a scenario it cannot generate with a ScenarioError that
names the file and the figure, before anything runs."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from client.replay.plan import BACKGROUND, _split, make_plan, reaction_within
from client.replay.scenario import load
from protocol.errors import ScenarioError

MINI = Path(__file__).parents[2] / "data" / "mini-scenario.yaml"


def _scenario(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = yaml.safe_load(MINI.read_text())
    change(data)
    path = tmp_path / "ungenerable.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _no_desk_databases(d: dict[str, Any]) -> None:
    d["participants"][1]["databases"] = []


@pytest.mark.parametrize(("change", "says"), [
    (lambda d: d["results"].append({"metric": "person.count", "rule": "exact", "value": 5,
                                    "published": "5 people"}),
     "cannot fill metric 'person.count'"),
    (_no_desk_databases, "hits.interpol needs a liaison desk"),
    (lambda d: d["results"].__setitem__(1, {"metric": "reports", "rule": "exact", "value": 1,
                                            "published": "one seizure"}),
     "leaves no report"),
    (lambda d: d["background"].update(messages=3), "background.messages (3) is fewer"),
])
def test_plan_figure_it_cannot_generate_raises_scenario_error(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], says: str) -> None:
    """Each figure the generator cannot produce is a ScenarioError naming the file and
    the reason (never a bare ValueError)."""
    scenario = load(_scenario(tmp_path, change))
    with pytest.raises(ScenarioError) as info:
        make_plan(scenario, 1)
    assert says in info.value.message
    assert info.value.message.startswith(f"{scenario.path}: cannot generate the traffic: ")


def test_plan_mini_scenario_generates() -> None:
    """The unchanged small scenario plans its full message budget."""
    plan = make_plan(load(MINI), 1)
    assert plan.expected_messages == 120
    assert plan.events


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, 1_000_000), parts=st.integers(1, 600), seed=st.integers(0, 99))
def test_split_whole_amounts_are_each_near_their_share(total: int, parts: int,
                                                       seed: int) -> None:
    """Splitting a whole figure (arrests, counts) over many filler reports gives each part
    at least 1 and about its weighted share (weights 0.3 to 1.7): the rounding does not
    all fall on the last report (it took ~180 of Liberterra II's 2,000 filler arrests,
    where the others had at most 11)."""
    out = _split(total, parts, random.Random(seed), integer=True)
    used = min(parts, total)
    assert len(out) == used
    assert sum(out) == total
    assert min(out) >= 1
    assert max(out) <= math.ceil(total * 1.7 / (0.3 * used)) + 1


@pytest.mark.parametrize("name", sorted(p.stem for p in (MINI.parents[2] / "seeds").glob("*.yaml")))
def test_plan_leaves_time_for_the_answers_before_the_operation_ends(name: str) -> None:
    """A request or a warning the agents react to is planned early enough that the answer
    or the feedback (at most reaction_within after it) falls inside the operation:
    the report gains no day after the last (30 Days at Sea 3.0 had a 1 April)."""
    scenario = load(MINI.parents[2] / "seeds" / f"{name}.yaml")
    plan = make_plan(scenario, 1)
    end = scenario.days * 86400.0
    late = [(e.message["type"], e.at) for e in plan.events if e.message is not None
            and BACKGROUND in e.message["id"]
            and e.at + reaction_within(scenario, e.message["type"]) > end]
    assert late == []
